"""Open the catalog and object store that the settings point at."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.settings import Settings, load_settings
from storage.catalog import Catalog
from storage.objects import ObjectStore, open_store


@dataclass
class Backends:
    settings: Settings
    catalog: Catalog
    store: ObjectStore

    def close(self) -> None:
        self.catalog.close()


def open_backends(settings: Settings | None = None) -> Backends:
    """Open (and migrate) the catalog and open the object store."""
    settings = settings or load_settings()
    if not settings.database_url:
        settings.home.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(settings.catalog_url)
    catalog.upgrade()
    store = open_store(settings.object_location, s3_endpoint_url=settings.s3_endpoint_url)
    return Backends(settings=settings, catalog=catalog, store=store)
