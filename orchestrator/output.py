"""The CLI's output layer: tables and JSON on stdout, progress and errors on stderr."""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from schemas.catalog import AssetRow, FrameRow
from schemas.records import FrameState, RunSummary, Verdict
from storage.objects import ObjectStore

# Width of tables written to a pipe or a file. Rich would use 80 columns
# there, which cuts every column of an asset table but the id to one or two
# characters. COLUMNS, when set, still wins.
PIPE_WIDTH = 200


def _stdout_width() -> int | None:
    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return None
    return PIPE_WIDTH


stdout = Console(highlight=False, soft_wrap=True, width=_stdout_width())
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def line(text: str) -> None:
    stdout.print(text, markup=False)


def json_line(data: Any) -> None:
    # Plain print: rich would wrap long lines and break the JSON.
    print(json.dumps(data, default=str))


def error(text: str) -> None:
    # One line, so scripts can show it as is.
    stderr.print(f"error: {' '.join(text.split())}", markup=False)


F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Turn OnModel's own errors into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from orchestrator.runner import UserFacingRunError
        from schemas.errors import OnModelError

        try:
            return func(*args, **kwargs)
        except (OnModelError, UserFacingRunError) as exc:
            error(str(exc))
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def redact_url(url: str) -> str:
    """Hide the password in a database URL."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


class RunProgress:
    """A rich progress bar on stderr fed by the runner's listener callbacks."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=stderr,
            disable=not enabled,
        )
        self._task: Any = None
        self._counts: dict[str, int] = {}

    def __enter__(self) -> RunProgress:
        self._progress.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.__exit__(kind, value, traceback)

    def started(self, run_id: str, total: int, done: int) -> None:
        self._task = self._progress.add_task(
            f"run {run_id[:8]}", total=total, completed=done, detail=""
        )

    def frame_finished(self, frame: FrameRow, state: FrameState, verdict: Verdict | None) -> None:
        label = verdict.value if state == FrameState.ACCEPTED and verdict else state.value
        self._counts[label] = self._counts.get(label, 0) + 1
        detail = " ".join(f"{k}={v}" for k, v in sorted(self._counts.items()))
        if self._task is not None:
            self._progress.update(self._task, advance=1, detail=detail)


def summary_table(summary: RunSummary) -> None:
    table = Table(title=f"run {summary.run_id} ({summary.storyboard}): {summary.state.value}")
    for name in ("frames", "accepted", "unscored", "needs_review", "failed", "pending"):
        table.add_column(name, justify="right")
    table.add_row(
        *(
            str(getattr(summary, n))
            for n in ("frames", "accepted", "unscored", "needs_review", "failed", "pending")
        )
    )
    stdout.print(table)


def runs_table(summaries: list[RunSummary]) -> None:
    table = Table()
    for name in ("run", "storyboard", "state", "frames", "accepted", "review", "failed", "created"):
        # Ids are copied into other commands, so they must never be shortened.
        table.add_column(name, no_wrap=name == "run", min_width=32 if name == "run" else None)
    for s in summaries:
        created = s.created_at.strftime("%Y-%m-%d %H:%M") if s.created_at else ""
        table.add_row(
            s.run_id,
            s.storyboard,
            s.state.value,
            str(s.frames),
            str(s.accepted),
            str(s.needs_review),
            str(s.failed),
            created,
        )
    stdout.print(table)


def assets_table(assets: list[AssetRow]) -> None:
    table = Table()
    for name in (
        "asset",
        "scene",
        "variant",
        "step",
        "attempt",
        "state",
        "verdict",
        "score",
        "seed",
    ):
        # Ids are copied into other commands, so they must never be shortened.
        table.add_column(name, no_wrap=name == "asset", min_width=32 if name == "asset" else None)
    for a in assets:
        score = f"{a.score:.3f}" if a.score is not None else "-"
        table.add_row(
            a.id,
            a.scene_id,
            str(a.variant),
            str(a.edit_step),
            str(a.attempt),
            a.state.value,
            a.verdict.value,
            score,
            str(a.seed),
        )
    stdout.print(table)


def asset_json(asset: AssetRow, store: ObjectStore) -> dict[str, Any]:
    data = asset.model_dump(mode="json")
    path = store.local_path(asset.object_key)
    if path is not None:
        data["path"] = path
    data["uri"] = store.uri(asset.object_key)
    return data
