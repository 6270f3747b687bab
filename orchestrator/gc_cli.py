"""`onmodel gc`: remove objects that no catalog row refers to."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator import output
from orchestrator.app_state import open_backends
from orchestrator.gc import GcReport, collect_garbage
from schemas.errors import OnModelError


def gc(
    grace: Annotated[
        float | None,
        typer.Option(
            "--grace",
            min=0,
            help="Keep unreferenced objects younger than this many seconds, because their "
            "rows may still be on the way (default: ONMODEL_GC_GRACE_S, 3600). Use 0 only "
            "when no run is in progress.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Remove objects that no catalog row refers to, and temp files of interrupted writes."""
    try:
        backends = open_backends()
        grace_s = backends.settings.gc_grace_s if grace is None else grace
        report = collect_garbage(backends.catalog, backends.store, grace_s=grace_s, dry_run=dry_run)
    except OnModelError as exc:
        output.error(str(exc))
        raise typer.Exit(2) from None
    if as_json:
        output.json_line(_report_json(report))
    else:
        _print_report(report)
    if report.missing:
        raise typer.Exit(1)


def _report_json(report: GcReport) -> dict[str, object]:
    return {
        "dry_run": report.dry_run,
        "grace_s": report.grace_s,
        "scanned": report.scanned,
        "referenced": report.referenced,
        "recent": report.recent,
        "removed": report.removed,
        "missing": report.missing,
        "temp_files": report.temp_files,
    }


def _print_report(report: GcReport) -> None:
    outcome = "to remove" if report.dry_run else "removed"
    for key in report.removed:
        output.line(f"{'would remove' if report.dry_run else 'removed'} {key}")
    output.line(
        f"{report.scanned} objects scanned: {report.referenced} referenced, "
        f"{report.recent} younger than {report.grace_s:g} s, {len(report.removed)} {outcome}; "
        f"{report.temp_files} temp files {outcome}"
    )
    if report.missing:
        output.error(
            f"{len(report.missing)} objects that the catalog refers to are missing from the "
            f"store, first: {report.missing[0]}; restore them from a backup"
        )


def register(app: typer.Typer) -> None:
    app.command("gc")(gc)
