"""`onmodel schedule` (manage schedules) and `onmodel scheduler` (fire them).

User errors (an invalid cron expression, an unknown time zone, an invalid
spec, an unknown schedule id) exit with code 2 and one line on stderr that
names the option and the value.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from orchestrator import output
from orchestrator.app_state import open_backends
from orchestrator.output import user_errors
from orchestrator.scheduler import (
    DEFAULT_GRACE_S,
    DEFAULT_TICK_INTERVAL_S,
    FireOutcome,
    ScheduleError,
    create_schedule,
    next_fire_time,
    parse_cron,
    parse_missed_policy,
    parse_overlap_policy,
    parse_timezone,
    tick,
    update_schedule,
)
from storage.schedules import FireRow, ScheduleRow, ScheduleStore

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

schedule_app = typer.Typer(
    help="Store storyboards with cron schedules for bulk generation.", no_args_is_help=True
)
scheduler_app = typer.Typer(
    help="Fire due schedules: run continuously, or `tick` once (for cron or a CronJob).",
    invoke_without_command=True,
)

SpecArgument = Annotated[Path, typer.Argument(help="Storyboard spec, YAML or JSON.")]
IdArgument = Annotated[str, typer.Argument(help="Schedule id (or a unique prefix).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
MissedHelp = "Missed-fire policy: skip (drop late fires) or run_once (one run for the backlog)."
OverlapHelp = "Overlap policy: skip (no new run while one is going) or allow."


# Output


def _schedule_json(schedule: ScheduleRow, now: datetime) -> dict[str, Any]:
    data = schedule.model_dump(mode="json", exclude={"options"})
    upcoming = _next_fire(schedule, now)
    data["next_fire"] = upcoming.isoformat() if upcoming else None
    return data


def _next_fire(schedule: ScheduleRow, now: datetime) -> datetime | None:
    if schedule.state != "active":
        return None
    tz = parse_timezone(schedule.timezone)
    upcoming = next_fire_time(schedule.cron, tz, max(schedule.evaluated_until, now))
    return upcoming.astimezone(tz) if upcoming else None


def _print_schedules(schedules: list[ScheduleRow], now: datetime) -> None:
    table = Table()
    for name in ("schedule", "name", "cron", "timezone", "state", "missed", "overlap", "next fire"):
        table.add_column(name)
    for schedule in schedules:
        upcoming = _next_fire(schedule, now)
        table.add_row(
            schedule.id,
            schedule.name,
            schedule.cron,
            schedule.timezone,
            schedule.state.value,
            schedule.missed_policy.value,
            schedule.overlap_policy.value,
            upcoming.strftime("%Y-%m-%d %H:%M %Z") if upcoming else "-",
        )
    output.stdout.print(table)


def _print_schedule(schedule: ScheduleRow, fires: list[FireRow], now: datetime) -> None:
    details = Table(title=f"schedule {schedule.id}", show_header=False)
    details.add_column("field")
    details.add_column("value")
    upcoming = _next_fire(schedule, now)
    for field, value in (
        ("name", schedule.name),
        ("cron", f"{schedule.cron} ({schedule.timezone})"),
        ("state", schedule.state.value),
        ("missed", schedule.missed_policy.value),
        ("overlap", schedule.overlap_policy.value),
        ("storyboard", f"{schedule.storyboard_name} ({schedule.storyboard_id})"),
        ("source", schedule.source or "-"),
        ("next fire", upcoming.isoformat() if upcoming else "-"),
        ("updated", schedule.updated_at.isoformat()),
    ):
        details.add_row(field, value)
    output.stdout.print(details)

    history = Table(title="recent fires")
    for name in ("fire time (UTC)", "status", "run", "detail"):
        history.add_column(name)
    for fire in fires:
        history.add_row(
            fire.fire_time.strftime("%Y-%m-%d %H:%M"),
            fire.status.value,
            fire.run_id or "-",
            fire.detail or "",
        )
    output.stdout.print(history)


def _outcome_line(outcome: FireOutcome) -> str:
    text = f"{outcome.fire_time.isoformat()} {outcome.schedule_name} ({outcome.schedule_id[:8]}): "
    text += outcome.status.value
    if outcome.run_id:
        text += f" run {outcome.run_id}"
    if outcome.detail:
        text += f" ({outcome.detail})"
    return text


def _outcome_json(outcome: FireOutcome) -> dict[str, Any]:
    return {
        "schedule_id": outcome.schedule_id,
        "schedule_name": outcome.schedule_name,
        "fire_time": outcome.fire_time.isoformat(),
        "status": outcome.status.value,
        "run_id": outcome.run_id,
        "detail": outcome.detail,
    }


# onmodel schedule ...


@schedule_app.command("add")
@user_errors
def schedule_add(
    spec: SpecArgument,
    cron: Annotated[str, typer.Option("--cron", help="Cron expression, e.g. '0 2 * * *'.")],
    timezone: Annotated[
        str, typer.Option("--timezone", help="IANA time zone of the cron expression, e.g. UTC.")
    ],
    missed: Annotated[str, typer.Option("--missed", help=MissedHelp)] = "skip",
    overlap: Annotated[str, typer.Option("--overlap", help=OverlapHelp)] = "skip",
    name: Annotated[
        str | None, typer.Option("--name", help="Schedule name (default: the storyboard's).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Store a storyboard and fire it on a cron schedule."""
    from orchestrator.spec import load_spec

    # Options first: they are cheap to check and name the flag in the error.
    parse_cron(cron, "--cron")
    parse_timezone(timezone, "--timezone")
    parse_missed_policy(missed, "--missed")
    parse_overlap_policy(overlap, "--overlap")
    loaded = load_spec(spec)

    backends = open_backends()
    schedule = create_schedule(
        backends.catalog,
        backends.store,
        loaded,
        cron=cron,
        timezone=timezone,
        missed_policy=missed,
        overlap_policy=overlap,
        name=name,
    )
    now = datetime.now(UTC)
    if as_json:
        output.json_line(_schedule_json(schedule, now))
        return
    upcoming = _next_fire(schedule, now)
    output.line(schedule.id)
    if upcoming is not None:
        output.line(f"next fire: {upcoming.isoformat()}")


@schedule_app.command("list")
@user_errors
def schedule_list(as_json: JsonOption = False) -> None:
    """List schedules, oldest first, with their next fire time."""
    schedules = ScheduleStore(open_backends().catalog).list_schedules()
    now = datetime.now(UTC)
    if as_json:
        output.json_line([_schedule_json(schedule, now) for schedule in schedules])
    else:
        _print_schedules(schedules, now)


@schedule_app.command("show")
@user_errors
def schedule_show(
    schedule_id: IdArgument,
    fires: Annotated[int, typer.Option("--fires", min=1, help="Recent fires to list.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Show a schedule and its recent fires with the runs they started."""
    store = ScheduleStore(open_backends().catalog)
    schedule = store.get(schedule_id)
    history = store.list_fires(schedule.id, limit=fires)
    now = datetime.now(UTC)
    if as_json:
        data = _schedule_json(schedule, now)
        data["fires"] = [fire.model_dump(mode="json") for fire in history]
        output.json_line(data)
    else:
        _print_schedule(schedule, history, now)


@schedule_app.command("pause")
@user_errors
def schedule_pause(schedule_id: IdArgument) -> None:
    """Stop firing a schedule; fire times while paused are not caught up."""
    schedule = ScheduleStore(open_backends().catalog).pause(schedule_id)
    output.line(f"schedule {schedule.id} paused")


@schedule_app.command("resume")
@user_errors
def schedule_resume(schedule_id: IdArgument) -> None:
    """Fire a paused schedule again from now on."""
    schedule = ScheduleStore(open_backends().catalog).resume(schedule_id)
    output.line(f"schedule {schedule.id} resumed")


@schedule_app.command("remove")
@user_errors
def schedule_remove(schedule_id: IdArgument) -> None:
    """Delete a schedule and its fire history; the runs it started stay in the catalog."""
    full_id = ScheduleStore(open_backends().catalog).delete(schedule_id)
    output.line(f"schedule {full_id} removed")


@schedule_app.command("update")
@user_errors
def schedule_update(
    schedule_id: IdArgument,
    spec: Annotated[
        Path | None, typer.Argument(help="New storyboard spec; later fires use it.")
    ] = None,
    cron: Annotated[str | None, typer.Option("--cron", help="New cron expression.")] = None,
    timezone: Annotated[str | None, typer.Option("--timezone", help="New time zone.")] = None,
    missed: Annotated[str | None, typer.Option("--missed", help=MissedHelp)] = None,
    overlap: Annotated[str | None, typer.Option("--overlap", help=OverlapHelp)] = None,
    name: Annotated[str | None, typer.Option("--name", help="New schedule name.")] = None,
) -> None:
    """Store a new version of the spec and/or change the schedule's options."""
    from orchestrator.spec import load_spec

    if spec is None and all(v is None for v in (cron, timezone, missed, overlap, name)):
        raise ScheduleError("SPEC", None, "nothing to update; give a spec or an option to change")
    if cron is not None:
        parse_cron(cron, "--cron")
    if timezone is not None:
        parse_timezone(timezone, "--timezone")
    if missed is not None:
        parse_missed_policy(missed, "--missed")
    if overlap is not None:
        parse_overlap_policy(overlap, "--overlap")
    loaded = load_spec(spec) if spec is not None else None

    backends = open_backends()
    schedule = update_schedule(
        backends.catalog,
        backends.store,
        schedule_id,
        loaded=loaded,
        cron=cron,
        timezone=timezone,
        missed_policy=missed,
        overlap_policy=overlap,
        name=name,
    )
    output.line(f"schedule {schedule.id} updated")


# onmodel scheduler ...


@scheduler_app.callback()
@user_errors
def scheduler_main(
    context: typer.Context,
    interval: Annotated[
        float, typer.Option("--interval", min=1.0, help="Seconds between two ticks.")
    ] = DEFAULT_TICK_INTERVAL_S,
    grace: Annotated[
        float,
        typer.Option("--grace", min=0.0, help="Seconds a fire may be late under --missed skip."),
    ] = DEFAULT_GRACE_S,
    max_runs: Annotated[
        int, typer.Option("--max-runs", min=1, help="Runs driven at the same time.")
    ] = 1,
) -> None:
    """Fire due schedules every --interval seconds and drive their runs until stopped.

    The first SIGINT or SIGTERM stops firing and waits for the runs in
    progress; a second one marks them interrupted and exits.
    """
    if context.invoked_subcommand is not None:
        return
    from orchestrator.scheduler_loop import SchedulerLoop

    backends = open_backends()
    loop = SchedulerLoop(
        backends.settings,
        backends.catalog,
        backends.store,
        interval_s=interval,
        grace_s=grace,
        max_runs=max_runs,
    )
    signals = 0

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal signals
        signals += 1
        loop.stop_event.set()
        if signals > 1:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    loop.start()
    loop.run_forever()
    try:
        if loop.active_runs():
            output.error(
                f"waiting for {len(loop.active_runs())} runs to finish; "
                "signal again to interrupt them"
            )
        while not loop.wait_idle(1.0):
            pass
    except KeyboardInterrupt:
        for run_id in loop.interrupt_active():
            output.error(f"run {run_id} interrupted; continue it with `onmodel resume {run_id}`")
        raise typer.Exit(130) from None


def _parse_now(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ScheduleError(
            "--now", value, f"invalid ISO-8601 time {value!r}; use e.g. 2025-03-30T01:00:00Z"
        ) from None
    # A time without an offset is read as UTC.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@scheduler_app.command("tick")
@user_errors
def scheduler_tick(
    now: Annotated[
        str | None,
        typer.Option("--now", help="Evaluate as of this ISO-8601 time (no offset: UTC)."),
    ] = None,
    no_run: Annotated[
        bool, typer.Option("--no-run", help="Record fires and create runs without running them.")
    ] = False,
    grace: Annotated[
        float,
        typer.Option("--grace", min=0.0, help="Seconds a fire may be late under --missed skip."),
    ] = DEFAULT_GRACE_S,
    as_json: JsonOption = False,
) -> None:
    """Fire whatever is due once, run the new runs to the end, and exit."""
    when = _parse_now(now)
    backends = open_backends()
    outcomes = tick(backends.catalog, now=when, grace_s=grace)
    if not as_json:
        for outcome in outcomes:
            output.line(_outcome_line(outcome))

    summaries = []
    run_ids = [outcome.run_id for outcome in outcomes if outcome.run_id]
    if run_ids and not no_run:
        from orchestrator.scheduler_loop import run_fired

        with output.RunProgress(enabled=not as_json) as progress:
            summaries = run_fired(
                backends.settings, backends.catalog, backends.store, run_ids, listener=progress
            )
        if not as_json:
            for summary in summaries:
                output.summary_table(summary)
    if as_json:
        output.json_line(
            {
                "fires": [_outcome_json(outcome) for outcome in outcomes],
                "runs": [summary.model_dump(mode="json") for summary in summaries],
            }
        )
    if any(summary.failed for summary in summaries):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the `schedule` and `scheduler` command groups."""
    app.add_typer(schedule_app, name="schedule")
    app.add_typer(scheduler_app, name="scheduler")
