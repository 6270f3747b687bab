"""Fire schedules: due fire times in each schedule's time zone, each claimed once, each a run.

Fire times come from croniter on time-zone-aware datetimes, with one rule
added for the daylight-saving fall-back:

- A local time that the spring-forward skips fires once, at the end of the
  gap (02:30 in Europe/Berlin fires at 03:00 CEST). Times of an expression
  whose hour field is `*` that fall in the gap are dropped instead, because
  the expression's next time is due at the end of the gap anyway.
- A local time that the fall-back repeats fires once, at its first
  occurrence, unless the expression's hour field is `*`: such an expression
  keeps its real-time rhythm and fires in both passes of the repeated hour.

A fire is claimed by inserting its row (see storage.schedules). The row and
its run are committed together, so a fire starts one run even when several
schedulers tick at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError
from pydantic import ValidationError

from orchestrator.planner import plan
from orchestrator.spec import LoadedSpec
from orchestrator.submit import store_spec
from schemas.errors import OnModelError
from schemas.storyboard import Storyboard
from storage.catalog import Catalog
from storage.models import utcnow
from storage.objects import ObjectStore
from storage.schedules import (
    FireRow,
    FireStatus,
    MissedPolicy,
    OverlapPolicy,
    ScheduleRow,
    ScheduleState,
    ScheduleStore,
)

logger = logging.getLogger(__name__)

# Seconds between two ticks of `onmodel scheduler`. A fire starts at most
# this late, so cron expressions finer than a minute are not supported.
DEFAULT_TICK_INTERVAL_S = 30.0
# Seconds a fire time may be late and still fire under the `skip` missed
# policy. Twice the period of a system cron that runs `scheduler tick`
# every minute, so such a setup never skips a fire for being slow to start.
DEFAULT_GRACE_S = 120.0
# Longest backlog that is scanned for missed fire times. A scheduler that
# was down longer reports the count of missed fires since this horizon only.
MAX_BACKLOG = timedelta(days=35)
# Expressions croniter accepts as shorthand, expanded to check their fields.
CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
CRON_HELP = "use five fields (minute hour day-of-month month day-of-week), e.g. '30 2 * * *'"


class ScheduleError(OnModelError, ValueError):
    """An invalid schedule option: names the option, the value and the fix."""

    def __init__(self, field: str, value: object, message: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field}: {message}")


# Validation


def parse_cron(expression: str, field: str = "cron") -> str:
    """Return the expression with normalised spacing; raise ScheduleError if croniter rejects it."""
    normalised = " ".join(expression.split())
    fields = CRON_ALIASES.get(normalised.lower(), normalised).split()
    if len(fields) != 5:
        raise ScheduleError(
            field,
            expression,
            f"invalid cron expression {expression!r}: {len(fields)} fields; {CRON_HELP}",
        )
    if not croniter.is_valid(normalised):
        raise ScheduleError(
            field, expression, f"invalid cron expression {expression!r}; {CRON_HELP}"
        )
    try:
        croniter(normalised, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterError:
        raise ScheduleError(
            field,
            expression,
            f"cron expression {expression!r} never fires; check its day and month",
        ) from None
    return normalised


def parse_timezone(name: str, field: str = "timezone") -> ZoneInfo:
    """Return the IANA time zone; raise ScheduleError for an unknown name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            field,
            name,
            f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin or UTC",
        ) from None


def parse_missed_policy(value: str, field: str = "missed") -> MissedPolicy:
    try:
        return MissedPolicy(value)
    except ValueError:
        valid = ", ".join(policy.value for policy in MissedPolicy)
        raise ScheduleError(
            field, value, f"invalid policy {value!r}; use one of: {valid}"
        ) from None


def parse_overlap_policy(value: str, field: str = "overlap") -> OverlapPolicy:
    try:
        return OverlapPolicy(value)
    except ValueError:
        valid = ", ".join(policy.value for policy in OverlapPolicy)
        raise ScheduleError(
            field, value, f"invalid policy {value!r}; use one of: {valid}"
        ) from None


# Fire times


def fire_times(cron: str, tz: ZoneInfo, after: datetime, until: datetime) -> Iterator[datetime]:
    """Yield the fire times in (after, until] as UTC datetimes, oldest first.

    Applies the daylight-saving rules of this module's docstring.
    """
    hour_is_wildcard = CRON_ALIASES.get(cron.lower(), cron).split()[1] == "*"
    iterator = croniter(cron, after.astimezone(tz))
    last = after
    while True:
        local: datetime = iterator.get_next(datetime)
        instant = local.astimezone(UTC)
        if instant > until:
            return
        # croniter can return one instant twice when two local times map to it.
        if instant <= last:
            continue
        if not hour_is_wildcard and local.fold == 1 and _is_ambiguous(local):
            continue
        last = instant
        yield instant


def _is_ambiguous(local: datetime) -> bool:
    return local.replace(fold=0).utcoffset() != local.replace(fold=1).utcoffset()


def next_fire_time(cron: str, tz: ZoneInfo, after: datetime) -> datetime | None:
    """Return the first fire time after `after` within ten years, or None."""
    return next(fire_times(cron, tz, after, after + timedelta(days=3660)), None)


# Creating and updating schedules


def create_schedule(
    catalog: Catalog,
    store: ObjectStore,
    loaded: LoadedSpec,
    *,
    cron: str,
    timezone: str,
    missed_policy: str = MissedPolicy.SKIP,
    overlap_policy: str = OverlapPolicy.SKIP,
    name: str | None = None,
    now: datetime | None = None,
) -> ScheduleRow:
    """Validate the options, store the spec and create an active schedule.

    Fire times after `now` (default: the current time) are due. Raises
    ScheduleError naming an invalid option before anything is stored.
    """
    cron = parse_cron(cron)
    parse_timezone(timezone)
    missed = parse_missed_policy(missed_policy)
    overlap = parse_overlap_policy(overlap_policy)
    stored = store_spec(catalog, store, loaded)
    return ScheduleStore(catalog).create(
        name=name or loaded.storyboard.name,
        cron=cron,
        timezone=timezone,
        storyboard_id=stored.storyboard_id,
        options=stored.options,
        missed_policy=missed,
        overlap_policy=overlap,
        source=str(loaded.source) if loaded.source else None,
        now=now,
    )


def update_schedule(
    catalog: Catalog,
    store: ObjectStore,
    schedule_id: str,
    *,
    loaded: LoadedSpec | None = None,
    cron: str | None = None,
    timezone: str | None = None,
    missed_policy: str | None = None,
    overlap_policy: str | None = None,
    name: str | None = None,
) -> ScheduleRow:
    """Change a schedule; a new spec applies to later fires only."""
    schedules = ScheduleStore(catalog)
    schedules.get(schedule_id)
    cron = parse_cron(cron) if cron is not None else None
    if timezone is not None:
        parse_timezone(timezone)
    missed = parse_missed_policy(missed_policy) if missed_policy is not None else None
    overlap = parse_overlap_policy(overlap_policy) if overlap_policy is not None else None
    stored = store_spec(catalog, store, loaded) if loaded is not None else None
    return schedules.update(
        schedule_id,
        name=name,
        cron=cron,
        timezone=timezone,
        storyboard_id=stored.storyboard_id if stored else None,
        options=stored.options if stored else None,
        source=str(loaded.source) if loaded is not None and loaded.source else None,
        missed_policy=missed,
        overlap_policy=overlap,
    )


# Ticking


@dataclass(frozen=True)
class FireOutcome:
    """A fire recorded by this tick; fires that another scheduler recorded are not listed."""

    schedule_id: str
    schedule_name: str
    fire_time: datetime
    status: FireStatus
    run_id: str | None
    detail: str | None


def tick(
    catalog: Catalog, *, now: datetime | None = None, grace_s: float = DEFAULT_GRACE_S
) -> list[FireOutcome]:
    """Record every fire that is due at `now` and create its run, without running it.

    A schedule whose fire could not be recorded (a storage error) keeps its
    fire times due, so the next tick retries them.
    """
    now = (now or utcnow()).astimezone(UTC)
    schedules = ScheduleStore(catalog)
    outcomes: list[FireOutcome] = []
    for schedule in schedules.list_schedules(ScheduleState.ACTIVE):
        if schedule.evaluated_until >= now:
            continue
        try:
            outcomes.extend(_tick_schedule(catalog, schedules, schedule, now, grace_s))
        except OnModelError:
            logger.exception(
                "schedule %s: tick failed; its due fires are retried next tick", schedule.id
            )
            continue
        schedules.advance(schedule.id, now)
    return outcomes


@dataclass
class _Backlog:
    count: int = 0
    first: datetime | None = None
    previous: datetime | None = None
    latest: datetime | None = None


def _due(schedule: ScheduleRow, now: datetime) -> _Backlog:
    after = max(schedule.evaluated_until, now - MAX_BACKLOG)
    backlog = _Backlog()
    for instant in fire_times(schedule.cron, ZoneInfo(schedule.timezone), after, now):
        backlog.count += 1
        backlog.first = backlog.first or instant
        backlog.previous = backlog.latest
        backlog.latest = instant
    return backlog


def _tick_schedule(
    catalog: Catalog, schedules: ScheduleStore, schedule: ScheduleRow, now: datetime, grace_s: float
) -> list[FireOutcome]:
    backlog = _due(schedule, now)
    if backlog.latest is None:
        return []
    latest = backlog.latest
    late_s = (now - latest).total_seconds()
    outcomes: list[FireOutcome] = []

    def record(fire: FireRow | None) -> None:
        if fire is not None:
            outcomes.append(
                FireOutcome(
                    schedule.id,
                    schedule.name,
                    fire.fire_time,
                    fire.status,
                    fire.run_id,
                    fire.detail,
                )
            )

    if schedule.missed_policy is MissedPolicy.SKIP and late_s > grace_s:
        skipped = (
            f"{_span(backlog.count, backlog.first, latest)} missed; the latest was {late_s:.0f} s "
            f"late, more than the {grace_s:.0f} s grace period"
        )
        record(schedules.record_no_run(schedule.id, latest, FireStatus.SKIPPED_MISSED, skipped))
        return outcomes

    detail: str | None = None
    if schedule.missed_policy is MissedPolicy.SKIP and backlog.previous is not None:
        assert backlog.first is not None
        missed = _span(backlog.count - 1, backlog.first, backlog.previous)
        record(
            schedules.record_no_run(
                schedule.id,
                backlog.previous,
                FireStatus.SKIPPED_MISSED,
                f"{missed} skipped: the missed policy skip fires only the latest due time",
            )
        )
    elif schedule.missed_policy is MissedPolicy.RUN_ONCE and late_s > grace_s:
        detail = f"fired {late_s:.0f} s late for {_span(backlog.count, backlog.first, latest)}"
    record(_fire(catalog, schedules, schedule, latest, detail))
    return outcomes


def _span(count: int, first: datetime | None, last: datetime) -> str:
    if count == 1 or first is None:
        return f"fire time {last.isoformat()}"
    return f"{count} fire times from {first.isoformat()} to {last.isoformat()}"


def _fire(
    catalog: Catalog,
    schedules: ScheduleStore,
    schedule: ScheduleRow,
    fire_time: datetime,
    detail: str | None,
) -> FireRow | None:
    row = catalog.get_storyboard(schedule.storyboard_id)
    try:
        storyboard = Storyboard.model_validate(row.spec)
    except ValidationError as exc:
        # Deterministic: retrying would fail the same way on every tick.
        reason = (
            f"stored storyboard is invalid: {exc.errors()[0]['msg']}; update the schedule's spec"
        )
        logger.error("schedule %s fire %s: %s", schedule.id, fire_time.isoformat(), reason)
        return schedules.record_no_run(schedule.id, fire_time, FireStatus.FAILED, reason)
    options = {
        **schedule.options,
        "schedule": {"id": schedule.id, "fire_time": fire_time.isoformat()},
    }
    spec_sha256 = schedule.options.get("spec_sha256", row.spec_sha256)
    return schedules.fire(
        schedule.id,
        fire_time,
        storyboard_id=row.id,
        frames=plan(storyboard, spec_sha256, row.id),
        options=options,
        overlap_policy=schedule.overlap_policy,
        detail=detail,
    )
