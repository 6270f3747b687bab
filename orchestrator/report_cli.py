"""`onmodel report`: write a run's contact sheet and review page.

`onmodel run` and `onmodel resume` call `write_run_report` when a run ends,
so every finished run has its report without a second command.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator import output
from orchestrator.app_state import Backends, open_backends
from orchestrator.report import DEFAULT_COLUMNS, ReportFiles, default_report_dir, write_report
from orchestrator.report.layout import MAX_COLUMNS
from schemas.errors import OnModelError

logger = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder to write into (default: <ONMODEL_HOME>/reports/<run id>)."
        ),
    ] = None,
    columns: Annotated[
        int, typer.Option(help="Tiles per row of the contact sheet.", min=1, max=MAX_COLUMNS)
    ] = DEFAULT_COLUMNS,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Write a run's contact sheet (PNG) and review page (self-contained HTML)."""
    backends = open_backends()
    try:
        run = backends.catalog.get_run(run_id)
        folder = out if out is not None else default_report_dir(backends.settings, run.id)
        files = write_report(backends.catalog, backends.store, run.id, folder, columns=columns)
    except OnModelError as exc:
        output.error(str(exc))
        raise typer.Exit(2) from None
    except OSError as exc:
        output.error(
            f"--out: cannot write the report to {str(exc.filename or out)!r}: {exc.strerror}; "
            "choose a writable folder"
        )
        raise typer.Exit(2) from None

    if as_json:
        output.json_line({"run_id": files.run_id, **report_json(files)})
    else:
        print_report_paths(files)


def write_run_report(backends: Backends, run_id: str) -> ReportFiles | None:
    """Write the report of a run that just ended into its default folder.

    Returns None when the report could not be written. The error is printed
    and logged, but it does not change the run's outcome or exit code.
    """
    folder = default_report_dir(backends.settings, run_id)
    try:
        return write_report(backends.catalog, backends.store, run_id, folder)
    except (OnModelError, OSError) as exc:
        logger.error("run %s: report not written to %s: %s", run_id, folder, exc)
        output.error(
            f"run {run_id}: report not written to {str(folder)!r}: {exc}; "
            f"retry with `onmodel report {run_id} --out DIR`"
        )
        return None


def print_report_paths(files: ReportFiles) -> None:
    output.line(f"contact sheet: {files.contact_sheet}")
    output.line(f"review page: {files.page}")


def report_json(files: ReportFiles) -> dict[str, Any]:
    return {"contact_sheet": str(files.contact_sheet), "page": str(files.page)}
