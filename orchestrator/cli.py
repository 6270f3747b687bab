"""The `onmodel` command line.

This module and `orchestrator.output` are the only places that print. User
errors (bad spec, unknown id, model not found) exit with code 2 and one line
on stderr; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from orchestrator.cluster import prepare_environment

prepare_environment()

from orchestrator import output  # noqa: E402
from orchestrator.app_state import open_backends  # noqa: E402
from orchestrator.output import user_errors  # noqa: E402
from orchestrator.settings import load_settings  # noqa: E402
from schemas.records import RunState  # noqa: E402
from storage.catalog import Catalog  # noqa: E402

app = typer.Typer(
    name="onmodel",
    help="Consistent character images at batch scale with FLUX.1 Kontext on Ray.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
runs_app = typer.Typer(help="List, inspect and cancel runs.", no_args_is_help=True)
db_app = typer.Typer(help="Catalog database maintenance.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(db_app, name="db")

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log progress details to stderr.")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
@user_errors
def run(
    spec: Annotated[Path, typer.Argument(help="Storyboard spec, YAML or JSON.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object at the end instead of tables.")
    ] = False,
    actors: Annotated[
        int | None, typer.Option(help="Generator actors (default: ONMODEL_ACTORS or 1).", min=1)
    ] = None,
) -> None:
    """Generate every frame of a storyboard and catalog the results."""
    from orchestrator.spec import load_spec
    from orchestrator.submit import submit

    # Validate everything before touching the catalog or the object store.
    loaded = load_spec(spec)
    settings = load_settings()
    if actors is not None:
        settings.actors = actors
    backends = open_backends(settings)
    run_id = submit(backends.catalog, backends.store, loaded)
    if not as_json:
        output.line(run_id)
    _run_to_end(backends, run_id, as_json)


@app.command()
@user_errors
def resume(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object at the end.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Take the run over from a driver on another host, which this command cannot "
            "check; use it only when that driver is gone.",
        ),
    ] = False,
) -> None:
    """Continue a run whose driver stopped: accepted frames are kept, the rest requeued.

    A run whose driver is still alive on this host is refused; wait for it,
    or cancel it with `onmodel runs cancel`.
    """
    from orchestrator.recovery import take_over

    backends = open_backends()
    run = backends.catalog.get_run(run_id)
    if run.state in (RunState.COMPLETED, RunState.CANCELLED):
        output.error(f"run {run.id} is already {run.state.value}; nothing to resume")
        raise typer.Exit(2)
    if force:
        run = take_over(backends.catalog, run.id)
    if not as_json:
        output.line(run.id)
    _run_to_end(backends, run.id, as_json)


def _run_to_end(backends: Any, run_id: str, as_json: bool) -> None:
    from orchestrator.report_cli import print_report_paths, report_json, write_run_report
    from orchestrator.runner import Runner

    with output.RunProgress(enabled=not as_json) as progress:
        runner = Runner(backends.settings, backends.catalog, backends.store, listener=progress)
        try:
            summary = runner.run(run_id)
        finally:
            runner.shutdown()
    # A report that cannot be written is printed as an error but keeps the run's exit code.
    report = write_run_report(backends, run_id)
    if as_json:
        data = summary.model_dump(mode="json")
        if report is not None:
            data["report"] = report_json(report)
        output.json_line(data)
    else:
        output.summary_table(summary)
        if report is not None:
            print_report_paths(report)
    if summary.failed:
        raise typer.Exit(1)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the storyboard spec."""
    from schemas.storyboard import Storyboard

    output.line(json.dumps(Storyboard.model_json_schema(), indent=2))


# Runs


@runs_app.command("list")
@user_errors
def runs_list(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """List runs, newest first."""
    backends = open_backends()
    summaries = [backends.catalog.run_summary(r.id) for r in backends.catalog.list_runs(limit)]
    if as_json:
        output.json_line([s.model_dump(mode="json") for s in summaries])
    else:
        output.runs_table(summaries)


@runs_app.command("show")
@user_errors
def runs_show(run_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show a run's state and frame counts."""
    backends = open_backends()
    summary = backends.catalog.run_summary(backends.catalog.get_run(run_id).id)
    if as_json:
        output.json_line(summary.model_dump(mode="json"))
    else:
        output.summary_table(summary)


@runs_app.command("cancel")
@user_errors
def runs_cancel(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
) -> None:
    """Stop a run: no new frames start, frames in flight finish, the run ends cancelled.

    A live driver notices within about a second and stops once its frames in
    flight are done. A run with no live driver is ended at once.
    """
    from orchestrator.recovery import cancel_run

    backends = open_backends()
    outcome = cancel_run(backends.catalog, run_id)
    if outcome.driver_notified:
        output.line(
            f"run {outcome.run_id} cancelled; its driver {outcome.driver} finishes the frames "
            "in flight, then stops"
        )
    else:
        output.line(
            f"run {outcome.run_id} cancelled; {outcome.frames_cancelled} unfinished frames "
            "marked cancelled"
        )


# Database


@db_app.command("upgrade")
@user_errors
def db_upgrade() -> None:
    """Apply catalog migrations up to the newest schema."""
    url = load_settings().catalog_url
    with Catalog(url) as catalog:
        before, after = catalog.upgrade()
    where = f"catalog at {output.redact_url(url)}"
    if before == after:
        output.line(f"{where} is up to date (schema {after})")
    else:
        output.line(f"{where} upgraded from schema {before or '(empty)'} to {after}")


# Feature modules that add their own commands: each defines `register(app)`.
COMMAND_MODULES = (
    "orchestrator.identity_cli",
    "orchestrator.report_cli",
    "orchestrator.schedule_cli",
    "orchestrator.assets_cli",
    "orchestrator.service.command",
    "orchestrator.gc_cli",
    # After assets_cli: it adds `lineage` to the `assets` group when that group exists.
    "orchestrator.edit_cli",
)


def _register_commands() -> None:
    import importlib

    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        register = getattr(module, "register", None)
        if register is not None:
            register(app)
        else:
            app.add_typer(module.app, name=name.rsplit(".", 1)[-1].removesuffix("_cli"))


_register_commands()


if __name__ == "__main__":
    app()
