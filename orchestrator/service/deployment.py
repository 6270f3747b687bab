"""Run the HTTP service: Ray Serve with a FastAPI ingress, plus the run manager actor.

`onmodel serve` calls `run_service`. It connects to Ray, or starts a local
Ray on loopback, and starts the RunManager actor and the Serve application.
Then it applies the recovery policy to the runs a stopped service left
behind, and waits for SIGINT or SIGTERM to shut everything down.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from fastapi import FastAPI
from ray import serve

from orchestrator.cluster import ensure_ray
from orchestrator.service.app import create_app
from orchestrator.service.auth import ServiceConfigError, check_listen_address
from orchestrator.service.run_manager import (
    MANAGER_MAX_CONCURRENCY,
    ActorLauncher,
    RunManager,
)
from orchestrator.service.state import ServiceState
from orchestrator.settings import Settings

logger = logging.getLogger(__name__)

APP_NAME = "onmodel"
# Concurrent requests per replica. The routes are synchronous and run in a
# thread pool. Catalog queries take milliseconds, so 32 keeps a client that
# downloads many images at once from queueing behind itself.
MAX_ONGOING_REQUESTS = 32
# Seconds to wait for the run manager to mark its runs interrupted on shutdown.
STOP_TIMEOUT_S = 30.0
# Address prefix that a Ray Serve replica (Ray 2.60) passes when it binds its
# internal gRPC server: every interface, on a port the system picks.
ANY_ADDRESS_PREFIX = "[::]:"
LOOPBACK = "127.0.0.1"


def keep_replica_grpc_on_loopback() -> bool:
    """Bind this Serve replica's internal gRPC server to 127.0.0.1 when Ray runs on loopback.

    A replica opens a gRPC server for calls between deployments on every
    interface, whatever address the Ray node has, so a service that is meant
    to stay on loopback would still accept connections from the network.
    This wraps Ray's helper that binds the port, and must run in the replica
    before the replica finishes initializing, that is, in the ingress's
    constructor. Returns True when the bind was changed. On a Ray node with
    a network address nothing is changed: proxies on other nodes need the
    port there.
    NOTE: this relies on a private Ray function. If a Ray upgrade removes it,
    the service logs a warning and the port listens on every interface again.
    """
    import ray
    from ray.serve._private import replica

    if ray.util.get_node_ip_address() != LOOPBACK:
        return False
    bind = getattr(replica, "add_port_to_grpc_server", None)
    if bind is None:
        logger.warning(
            "ray.serve._private.replica.add_port_to_grpc_server not found in this Ray "
            "version; the Serve replica's internal gRPC port may listen on every interface, "
            "so keep this host's network private"
        )
        return False
    if getattr(bind, "onmodel_loopback", False):
        return True

    def bind_on_loopback(server: Any, address: str) -> Any:
        if address.startswith(ANY_ADDRESS_PREFIX):
            address = f"{LOOPBACK}:{address.removeprefix(ANY_ADDRESS_PREFIX)}"
        return bind(server, address)

    bind_on_loopback.onmodel_loopback = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = bind_on_loopback
    return True


@serve.ingress()
class ApiIngress:
    """The Serve replica: opens the catalog and store, then serves `create_app`."""

    def __init__(self, settings: Settings, manager: Any) -> None:
        keep_replica_grpc_on_loopback()
        self._state = ServiceState.open(settings, ActorLauncher(manager))

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self._state)


ApiDeployment: Any = serve.deployment(
    ApiIngress,
    name="api",
    # The replica waits on the database and on the run manager, never on a CPU.
    ray_actor_options={"num_cpus": 0},
    max_ongoing_requests=MAX_ONGOING_REQUESTS,
)


def check_port_free(host: str, port: int) -> None:
    """Raise ServiceConfigError when this machine cannot listen on (host, port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ServiceConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port "
                "or stop the program that uses it"
            ) from None


def start_service(settings: Settings, host: str, port: int) -> Any:
    """Start the run manager and the Serve application; return the manager's handle."""
    import ray

    check_listen_address(host, settings.api_token)
    if not settings.ray_address:
        # Serve's proxy would retry a busy port forever on a local Ray.
        check_port_free(host, port)
    ensure_ray(settings)

    manager_cls = ray.remote(RunManager)
    manager: Any = manager_cls.options(
        num_cpus=0,
        max_concurrency=MANAGER_MAX_CONCURRENCY,
        # Restarting would lose the queue of run ids; the next service start
        # applies the recovery policy to runs it left instead.
        max_restarts=0,
    ).remote(settings)
    ray.get(manager.ready.remote())

    serve.start(http_options={"host": host, "port": port})
    serve.run(ApiDeployment.bind(settings, manager), name=APP_NAME, route_prefix="/")
    ray.get(manager.recover.remote())
    logger.info("service listening on http://%s:%d", host, port)
    return manager


def stop_service(manager: Any) -> None:
    """Mark running runs interrupted, then delete the Serve application and stop Serve."""
    import ray

    try:
        interrupted = ray.get(manager.stop.remote(), timeout=STOP_TIMEOUT_S)
        if interrupted:
            logger.info("runs interrupted by the stop: %s", ", ".join(interrupted))
    except (ray.exceptions.RayError, TimeoutError) as exc:
        logger.error("the run manager did not stop cleanly: %s", exc)
    serve.shutdown()
    ray.kill(manager)
    logger.info("service stopped")


def wait_for_stop_signal(on_ready: Callable[[], None] | None = None) -> int:
    """Block until SIGINT or SIGTERM arrives; return its number."""
    received: list[int] = []
    stop = threading.Event()

    def handle(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if on_ready is not None:
            on_ready()
        # A timeout keeps the main thread returning to the interpreter, which
        # runs signal handlers only between bytecodes.
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return received[0]


def run_service(settings: Settings, host: str, port: int, on_ready: Callable[[], None]) -> None:
    """Serve until SIGINT or SIGTERM, then shut down.

    A local Ray that this process started stops with it; a cluster given in
    settings.ray_address keeps running and only loses this application.
    """
    import ray

    manager = start_service(settings, host, port)
    try:
        signum = wait_for_stop_signal(on_ready)
        logger.info("signal %s received; stopping", signal.Signals(signum).name)
    finally:
        stop_service(manager)
        ray.shutdown()
