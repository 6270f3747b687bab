"""`onmodel serve`: the HTTP API on Ray Serve."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator import output
from orchestrator.output import user_errors
from orchestrator.settings import load_settings


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


@user_errors
def serve(
    host: Annotated[
        str | None,
        typer.Option(help="Address to listen on (default: ONMODEL_SERVICE_HOST or 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="TCP port (default: ONMODEL_SERVICE_PORT or 8000)."),
    ] = None,
) -> None:
    """Run the HTTP API until Ctrl-C or SIGTERM; generation runs on the same Ray cluster.

    Listening on anything but loopback needs ONMODEL_API_TOKEN.
    """
    # Heavy imports (Ray Serve, FastAPI) only for this command.
    from orchestrator.service.auth import check_listen_address, token_bytes
    from orchestrator.service.deployment import run_service

    settings = load_settings()
    # Actors and replicas run in other processes, maybe in other folders:
    # they get absolute paths.
    settings.home = settings.home.resolve()
    host = host or settings.service_host
    port = port or settings.service_port
    check_listen_address(host, settings.api_token)

    def ready() -> None:
        auth = "on" if token_bytes(settings.api_token) else "off (loopback only)"
        output.line(f"serving on http://{host}:{port} (API docs at /docs, token auth {auth})")

    run_service(settings, host, port, on_ready=ready)
    output.line("service stopped")
