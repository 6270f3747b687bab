"""State the HTTP routes share: settings, catalog, object store, token check, run launcher."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fastapi import Request

from orchestrator.app_state import open_backends
from orchestrator.service.auth import TokenAuth
from orchestrator.settings import Settings
from storage.catalog import Catalog
from storage.objects import ObjectStore

# The `origin` of the runs that the service submits. A restarted service
# queues its runs that never started again.
SERVICE_ORIGIN = "service"


class RunLauncher(Protocol):
    """Starts submitted runs somewhere that is not the HTTP replica."""

    def start(self, run_id: str) -> None: ...


@dataclass
class ServiceState:
    settings: Settings
    catalog: Catalog
    store: ObjectStore
    launcher: RunLauncher
    auth: TokenAuth

    @classmethod
    def open(cls, settings: Settings, launcher: RunLauncher) -> ServiceState:
        """Open (and migrate) the catalog and the object store that `settings` name."""
        backends = open_backends(settings)
        return cls(
            settings=settings,
            catalog=backends.catalog,
            store=backends.store,
            launcher=launcher,
            auth=TokenAuth(settings.api_token),
        )


def service_state(request: Request) -> ServiceState:
    """FastAPI dependency: the state that `create_app` stored on the app."""
    state: ServiceState = request.app.state.service
    return state
