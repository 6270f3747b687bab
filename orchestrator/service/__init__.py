"""The HTTP service: a FastAPI application on Ray Serve over the catalog and object store.

`create_app` builds the API, which tests call through a TestClient.
`run_service` in `orchestrator.service.deployment` serves it on Ray Serve
and executes the submitted runs in a RunManager actor on the same cluster.
"""

from orchestrator.service.app import create_app
from orchestrator.service.state import RunLauncher, ServiceState

__all__ = ["RunLauncher", "ServiceState", "create_app"]
