"""Catalog behaviour on SQLite and PostgreSQL: every method, uniqueness, idempotency, recovery."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from schemas.errors import NotFoundError, StorageError
from schemas.records import (
    AttemptState,
    CharacterScore,
    FrameScore,
    FrameState,
    FrameTask,
    GenerationResult,
    RunState,
    Verdict,
)
from schemas.storyboard import Backend
from storage import catalog as catalog_module
from storage.catalog import Catalog
from storage.errors import AmbiguousIdError, DuplicateRowError
from storage.objects import key_for

MakeTasks = Callable[..., list[FrameTask]]

SPEC = {"name": "campaign", "characters": [{"id": "ana"}, {"id": "leo"}], "scenes": []}
SPEC_SHA = "a" * 64
REFERENCE_HASHES = {"ana": ["1" * 64, "2" * 64], "leo": ["3" * 64]}


def new_run(catalog: Catalog, make_tasks: MakeTasks, count: int = 3) -> tuple[str, list[FrameTask]]:
    storyboard_id = catalog.put_storyboard("campaign", SPEC, SPEC_SHA)
    tasks = make_tasks(storyboard_id, count)
    return catalog.create_run(storyboard_id, tasks, {"actors": 2}), tasks


def frame_score(verdict: Verdict, ana: float | None, leo: float | None) -> FrameScore:
    characters = [
        CharacterScore(
            character_id="ana",
            verdict=Verdict.ON_MODEL if ana is not None and ana >= 0.5 else verdict,
            score=ana,
            threshold=0.5,
            box=(1, 2, 30, 40),
        ),
        CharacterScore(character_id="leo", verdict=verdict, score=leo, threshold=0.5),
    ]
    return FrameScore(
        verdict=verdict, scorer="dlib", characters=characters, faces_found=2, seconds=0.25
    )


def record_attempt(
    catalog: Catalog,
    run_id: str,
    task: FrameTask,
    number: int,
    score: FrameScore | None,
) -> int:
    """Start and finish one attempt with an image and an optional score; return its id."""
    attempt_id = catalog.start_attempt(run_id, task.key, number, task.seed + number)
    png = f"{task.key}/{number}".encode()
    object_key, digest = key_for(png)
    result = GenerationResult(
        frame_key=task.key,
        attempt=number,
        png=png,
        width=task.width,
        height=task.height,
        seconds=1.5,
        node="node-1",
        device="cpu",
        backend=Backend.TINY,
        model=task.model,
    )
    catalog.finish_attempt(
        attempt_id,
        AttemptState.DONE,
        result=result,
        object_key=object_key,
        sha256=digest,
        score=score,
    )
    return attempt_id


def assert_utc(value: datetime | None) -> None:
    assert value is not None
    assert value.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - value) < timedelta(minutes=1)


# Storyboards


def test_storyboard_round_trip(catalog: Catalog) -> None:
    storyboard_id = catalog.put_storyboard("campaign", SPEC, SPEC_SHA)

    row = catalog.get_storyboard(storyboard_id)

    assert row.id == storyboard_id
    assert row.name == "campaign"
    assert row.spec == SPEC
    assert row.spec_sha256 == SPEC_SHA
    assert_utc(row.created_at)


def test_storyboard_stored_once_per_hash(catalog: Catalog) -> None:
    first = catalog.put_storyboard("campaign", SPEC, SPEC_SHA)
    again = catalog.put_storyboard("renamed", SPEC, SPEC_SHA)
    other = catalog.put_storyboard("campaign", {**SPEC, "name": "b"}, "b" * 64)

    assert again == first
    assert other != first
    assert catalog.get_storyboard(first).name == "campaign"


def test_storyboard_unknown_id(catalog: Catalog) -> None:
    with pytest.raises(NotFoundError, match="storyboard 'feedbeef' not found"):
        catalog.get_storyboard("feedbeef")


def test_storyboard_spec_must_be_json(catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="spec: value is not JSON-serializable"):
        catalog.put_storyboard("bad", {"when": datetime.now(UTC)}, "c" * 64)


# Runs


def test_create_run_stores_frames(catalog: Catalog, make_tasks: MakeTasks) -> None:
    run_id, tasks = new_run(catalog, make_tasks, count=4)

    run = catalog.get_run(run_id)
    assert run.id == run_id
    assert run.state is RunState.PENDING
    assert run.storyboard_name == "campaign"
    assert run.options == {"actors": 2}
    assert run.frames_total == 4
    assert run.started_at is None
    assert run.finished_at is None
    assert_utc(run.created_at)

    frames = catalog.list_frames(run_id)
    assert [frame.key for frame in frames] == [task.key for task in tasks]
    first, task = frames[0], tasks[0]
    assert first.run_id == run_id
    assert first.scene_id == task.scene_id
    assert first.variant == task.variant
    assert first.edit_step == 0
    assert first.parent_key is None
    assert first.prompt == task.prompt
    assert first.characters == ["ana", "leo"]
    assert first.backend == "tiny"
    assert first.model == "tiny-kontext"
    assert (first.width, first.height, first.steps) == (64, 48, 2)
    assert first.guidance == 2.5
    assert first.seed == task.seed
    assert first.state is FrameState.PENDING
    assert first.attempts == 0
    assert first.asset_id is None


def test_frames_keep_plan_order(catalog: Catalog, make_tasks: MakeTasks) -> None:
    storyboard_id = catalog.put_storyboard("campaign", SPEC, SPEC_SHA)
    tasks = list(reversed(make_tasks(storyboard_id, 5)))
    run_id = catalog.create_run(storyboard_id, iter(tasks), {})

    assert [frame.key for frame in catalog.list_frames(run_id)] == [task.key for task in tasks]


def test_create_run_edit_chain(catalog: Catalog, make_tasks: MakeTasks) -> None:
    storyboard_id = catalog.put_storyboard("campaign", SPEC, SPEC_SHA)
    base = make_tasks(storyboard_id, 1)[0]
    edit = base.model_copy(update={"key": "s1-edit", "edit_step": 1, "parent_key": base.key})
    run_id = catalog.create_run(storyboard_id, [base, edit], {})

    frames = catalog.list_frames(run_id)
    assert frames[1].edit_step == 1
    assert frames[1].parent_key == base.key


def test_create_run_rejects_duplicate_keys(catalog: Catalog, make_tasks: MakeTasks) -> None:
    storyboard_id = catalog.put_storyboard("campaign", SPEC, SPEC_SHA)
    task = make_tasks(storyboard_id, 1)[0]

    with pytest.raises(ValueError, match=r"frames\[1\].key: duplicate frame key 's1-0000'"):
        catalog.create_run(storyboard_id, [task, task], {})
    assert catalog.list_runs() == []


def test_create_run_rejects_foreign_frames(catalog: Catalog, make_tasks: MakeTasks) -> None:
    storyboard_id = catalog.put_storyboard("campaign", SPEC, SPEC_SHA)

    with pytest.raises(ValueError, match=r"frames\[0\].storyboard_id"):
        catalog.create_run(storyboard_id, make_tasks("other", 1), {})


def test_create_run_unknown_storyboard(catalog: Catalog, make_tasks: MakeTasks) -> None:
    with pytest.raises(NotFoundError, match="storyboard 'nope' not found"):
        catalog.create_run("nope", make_tasks("nope", 1), {})


def test_largest_seed_round_trips(catalog: Catalog, make_tasks: MakeTasks) -> None:
    storyboard_id = catalog.put_storyboard("campaign", SPEC, SPEC_SHA)
    task = make_tasks(storyboard_id, 1)[0].model_copy(update={"seed": 2**63 - 1})
    run_id = catalog.create_run(storyboard_id, [task], {})

    assert catalog.list_frames(run_id)[0].seed == 2**63 - 1
    attempt_id = catalog.start_attempt(run_id, task.key, 1, 2**63 - 1)
    assert catalog.list_attempts(run_id)[0].id == attempt_id
    assert catalog.list_attempts(run_id)[0].seed == 2**63 - 1
    with pytest.raises(ValueError, match="seed"):
        catalog.start_attempt(run_id, task.key, 2, 2**63)


def test_get_run_unknown_id(catalog: Catalog) -> None:
    with pytest.raises(NotFoundError) as raised:
        catalog.get_run("abc")
    assert str(raised.value) == "run 'abc' not found; list runs with `onmodel runs list`"


def test_get_run_by_prefix(catalog: Catalog, make_tasks: MakeTasks) -> None:
    run_id, _ = new_run(catalog, make_tasks)

    assert catalog.get_run(run_id[:4]).id == run_id
    assert catalog.get_run(run_id[:10].upper()).id == run_id
    with pytest.raises(NotFoundError, match="not found"):
        catalog.get_run(run_id[:3])


def test_get_run_ambiguous_prefix(
    catalog: Catalog, make_tasks: MakeTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    storyboard_id = catalog.put_storyboard("campaign", SPEC, SPEC_SHA)
    ids = iter(["abcd" + "0" * 28, "abcd" + "1" * 28])
    monkeypatch.setattr(catalog_module, "_new_id", lambda: next(ids))
    first = catalog.create_run(storyboard_id, make_tasks(storyboard_id, 1), {})
    second = catalog.create_run(storyboard_id, make_tasks(storyboard_id, 1), {})

    with pytest.raises(AmbiguousIdError, match="matches several runs") as raised:
        catalog.get_run("abcd")
    assert isinstance(raised.value, NotFoundError)
    assert first in str(raised.value)
    assert catalog.get_run("abcd1").id == second


@pytest.mark.parametrize("hostile", ["' OR '1'='1", "%", "____", "abc%", "x'; DROP TABLE runs; --"])
def test_hostile_ids_match_nothing(catalog: Catalog, make_tasks: MakeTasks, hostile: str) -> None:
    run_id, _ = new_run(catalog, make_tasks)

    with pytest.raises(NotFoundError):
        catalog.get_run(hostile)
    with pytest.raises(NotFoundError):
        catalog.get_asset(hostile)
    assert catalog.list_assets(character=hostile) == []
    assert catalog.get_run(run_id).id == run_id


def test_list_runs_newest_first(catalog: Catalog, make_tasks: MakeTasks) -> None:
    run_ids = [new_run(catalog, make_tasks, count=1)[0] for _ in range(3)]

    assert [run.id for run in catalog.list_runs()] == list(reversed(run_ids))
    assert [run.id for run in catalog.list_runs(limit=2)] == list(reversed(run_ids))[:2]
    with pytest.raises(ValueError, match="limit"):
        catalog.list_runs(limit=0)


def test_run_state_timestamps(catalog: Catalog, make_tasks: MakeTasks) -> None:
    run_id, _ = new_run(catalog, make_tasks)

    catalog.set_run_state(run_id, RunState.RUNNING, driver="host-a:123")
    running = catalog.get_run(run_id)
    assert running.state is RunState.RUNNING
    assert_utc(running.started_at)
    assert running.finished_at is None
    assert running.driver == "host-a:123"

    catalog.set_run_state(run_id, RunState.FAILED, error="actor died")
    failed = catalog.get_run(run_id)
    assert failed.state is RunState.FAILED
    assert failed.error == "actor died"
    assert_utc(failed.finished_at)
    assert failed.driver == "host-a:123"

    catalog.set_run_state(run_id, RunState.INTERRUPTED, error="driver interrupted")
    interrupted = catalog.get_run(run_id)
    assert interrupted.state is RunState.INTERRUPTED
    assert interrupted.finished_at is None

    catalog.set_run_state(run_id, RunState.RUNNING, driver="host-b:7")
    resumed = catalog.get_run(run_id)
    assert resumed.started_at == running.started_at
    assert resumed.finished_at is None
    assert resumed.error is None
    assert resumed.driver == "host-b:7"

    catalog.set_run_state(run_id, RunState.COMPLETED)
    assert catalog.get_run(run_id).state is RunState.COMPLETED
    assert catalog.get_run(run_id).finished_at is not None


def test_run_state_errors(catalog: Catalog) -> None:
    with pytest.raises(NotFoundError, match="run 'missing' not found"):
        catalog.set_run_state("missing", RunState.RUNNING)
    with pytest.raises(ValueError, match="valid values are: pending, running"):
        catalog.set_run_state("missing", "paused")  # type: ignore[arg-type]


def test_run_summary_counts(catalog: Catalog, make_tasks: MakeTasks) -> None:
    run_id, tasks = new_run(catalog, make_tasks, count=7)
    on_model = frame_score(Verdict.ON_MODEL, 0.9, 0.8)
    drifted = frame_score(Verdict.DRIFTED, 0.9, 0.2)

    accepted = record_attempt(catalog, run_id, tasks[0], 1, on_model)
    catalog.accept_frame(run_id, tasks[0].key, accepted, FrameState.ACCEPTED, REFERENCE_HASHES)
    unscored = record_attempt(catalog, run_id, tasks[1], 1, None)
    catalog.accept_frame(run_id, tasks[1].key, unscored, FrameState.ACCEPTED, REFERENCE_HASHES)
    review = record_attempt(catalog, run_id, tasks[2], 1, drifted)
    catalog.accept_frame(run_id, tasks[2].key, review, FrameState.NEEDS_REVIEW, REFERENCE_HASHES)
    catalog.set_frame_state(run_id, tasks[3].key, FrameState.FAILED, error="generator crashed")
    catalog.set_frame_state(run_id, tasks[4].key, FrameState.MODERATED, error="refused")
    catalog.start_attempt(run_id, tasks[5].key, 1, 5)

    summary = catalog.run_summary(run_id[:6])

    assert summary.run_id == run_id
    assert summary.storyboard == "campaign"
    assert summary.state is RunState.PENDING
    assert summary.frames == 7
    assert summary.accepted == 2
    assert summary.needs_review == 1
    assert summary.failed == 2
    assert summary.pending == 2
    assert summary.unscored == 1
    assert summary.created_at == catalog.get_run(run_id).created_at
    assert summary.finished_at is None


# Frames and attempts


def test_list_frames_filters_states(catalog: Catalog, make_tasks: MakeTasks) -> None:
    run_id, tasks = new_run(catalog, make_tasks, count=4)
    catalog.set_frame_state(run_id, tasks[1].key, FrameState.FAILED, error="boom")
    catalog.set_frame_state(run_id, tasks[3].key, FrameState.CANCELLED)

    failed = catalog.list_frames(run_id, states=[FrameState.FAILED])
    assert [frame.key for frame in failed] == [tasks[1].key]
    assert failed[0].error == "boom"
    open_frames = catalog.list_frames(run_id, states={FrameState.PENDING, FrameState.CANCELLED})
    assert [frame.key for frame in open_frames] == [tasks[0].key, tasks[2].key, tasks[3].key]
    assert catalog.list_frames(run_id, states=[]) == []


def test_list_frames_unknown_run(catalog: Catalog) -> None:
    with pytest.raises(NotFoundError, match="run 'nothing' not found"):
        catalog.list_frames("nothing")


def test_set_frame_state_unknown_frame(catalog: Catalog, make_tasks: MakeTasks) -> None:
    run_id, _ = new_run(catalog, make_tasks)

    with pytest.raises(NotFoundError, match="frame 'nope' not found in run"):
        catalog.set_frame_state(run_id, "nope", FrameState.FAILED)


def test_start_attempt_marks_frame_running(catalog: Catalog, make_tasks: MakeTasks) -> None:
    run_id, tasks = new_run(catalog, make_tasks)

    attempt_id = catalog.start_attempt(run_id, tasks[0].key, 1, 42)

    frame = catalog.list_frames(run_id)[0]
    assert frame.state is FrameState.RUNNING
    assert frame.attempts == 1
    (attempt,) = catalog.list_attempts(run_id)
    assert attempt.id == attempt_id
    assert attempt.run_id == run_id
    assert attempt.frame_key == tasks[0].key
    assert attempt.number == 1
    assert attempt.seed == 42
    assert attempt.state is AttemptState.RUNNING
    assert attempt.finished_at is None
    assert_utc(attempt.started_at)


def test_duplicate_attempt_number_rejected(catalog: Catalog, make_tasks: MakeTasks) -> None:
    run_id, tasks = new_run(catalog, make_tasks)
    catalog.start_attempt(run_id, tasks[0].key, 1, 42)

    with pytest.raises(DuplicateRowError, match="attempt 1 of frame 's1-0000' .* already exists"):
        catalog.start_attempt(run_id, tasks[0].key, 1, 43)

    # The failed insert rolled back cleanly: the catalog keeps working.
    catalog.start_attempt(run_id, tasks[0].key, 2, 43)
    catalog.start_attempt(run_id, tasks[1].key, 1, 44)
    assert [(a.frame_key, a.number) for a in catalog.list_attempts(run_id)] == [
        (tasks[0].key, 1),
        (tasks[0].key, 2),
        (tasks[1].key, 1),
    ]


def test_finish_attempt_records_outcome(catalog: Catalog, make_tasks: MakeTasks) -> None:
    run_id, tasks = new_run(catalog, make_tasks)
    score = frame_score(Verdict.DRIFTED, 0.9, 0.3)

    attempt_id = record_attempt(catalog, run_id, tasks[0], 1, score)

    (attempt,) = catalog.list_attempts(run_id, tasks[0].key)
    assert attempt.id == attempt_id
    assert attempt.state is AttemptState.DONE
    assert attempt.verdict is Verdict.DRIFTED
    assert attempt.score == pytest.approx(0.3)
    assert attempt.scores == score.characters
    assert attempt.object_key == key_for(f"{tasks[0].key}/1".encode())[0]
    assert attempt.seconds_generate == 1.5
    assert attempt.seconds_score == 0.25
    assert attempt.node == "node-1"
    assert attempt.device == "cpu"
    assert attempt.error is None
    assert_utc(attempt.finished_at)


def test_finish_attempt_keeps_earlier_fields(catalog: Catalog, make_tasks: MakeTasks) -> None:
    run_id, tasks = new_run(catalog, make_tasks)
    attempt_id = record_attempt(catalog, run_id, tasks[0], 1, None)

    catalog.finish_attempt(
        attempt_id, AttemptState.DONE, score=frame_score(Verdict.ON_MODEL, 0.8, 0.7)
    )

    (attempt,) = catalog.list_attempts(run_id)
    assert attempt.verdict is Verdict.ON_MODEL
    assert attempt.score == pytest.approx(0.7)
    assert attempt.object_key is not None
    assert attempt.node == "node-1"


def test_finish_attempt_failure(catalog: Catalog, make_tasks: MakeTasks) -> None:
    run_id, tasks = new_run(catalog, make_tasks)
    attempt_id = catalog.start_attempt(run_id, tasks[0].key, 1, 1)

    catalog.finish_attempt(attempt_id, AttemptState.FAILED, error="CUDA out of memory")

    (attempt,) = catalog.list_attempts(run_id)
    assert attempt.state is AttemptState.FAILED
    assert attempt.error == "CUDA out of memory"
    assert attempt.object_key is None
    assert attempt.verdict is None


def test_finish_attempt_checks_arguments(catalog: Catalog, make_tasks: MakeTasks) -> None:
    run_id, tasks = new_run(catalog, make_tasks)
    attempt_id = catalog.start_attempt(run_id, tasks[0].key, 1, 1)
    wrong = GenerationResult(
        frame_key=tasks[1].key,
        attempt=1,
        png=b"x",
        width=64,
        height=48,
        seconds=1.0,
        node="n",
        device="cpu",
        backend=Backend.TINY,
        model="m",
    )

    with pytest.raises(ValueError, match="result is for frame 's1-0001' attempt 1"):
        catalog.finish_attempt(attempt_id, AttemptState.DONE, result=wrong)
    with pytest.raises(ValueError, match="object key '../x' is invalid"):
        catalog.finish_attempt(attempt_id, AttemptState.DONE, object_key="../x")
    with pytest.raises(ValueError, match="not an outcome"):
        catalog.finish_attempt(attempt_id, AttemptState.RUNNING)
    with pytest.raises(NotFoundError, match="attempt id 999999 not found"):
        catalog.finish_attempt(999999, AttemptState.DONE)
    assert catalog.list_attempts(run_id)[0].state is AttemptState.RUNNING


def test_abandon_in_flight(catalog: Catalog, make_tasks: MakeTasks) -> None:
    run_id, tasks = new_run(catalog, make_tasks, count=3)
    other_run, other_tasks = new_run(catalog, make_tasks, count=1)
    done = record_attempt(catalog, run_id, tasks[0], 1, None)
    catalog.accept_frame(run_id, tasks[0].key, done, FrameState.ACCEPTED, {})
    catalog.start_attempt(run_id, tasks[1].key, 1, 1)
    catalog.start_attempt(run_id, tasks[2].key, 1, 1)
    catalog.start_attempt(other_run, other_tasks[0].key, 1, 1)

    assert catalog.abandon_in_flight(run_id) == 2

    states = {frame.key: frame.state for frame in catalog.list_frames(run_id)}
    assert states == {
        tasks[0].key: FrameState.ACCEPTED,
        tasks[1].key: FrameState.PENDING,
        tasks[2].key: FrameState.PENDING,
    }
    attempts = {a.frame_key: a for a in catalog.list_attempts(run_id)}
    assert attempts[tasks[0].key].state is AttemptState.DONE
    assert attempts[tasks[1].key].state is AttemptState.ABANDONED
    assert attempts[tasks[1].key].error is not None
    assert attempts[tasks[1].key].finished_at is not None
    assert catalog.list_attempts(other_run)[0].state is AttemptState.RUNNING
    assert catalog.list_frames(other_run)[0].state is FrameState.RUNNING

    # A resumed frame starts its next attempt number.
    catalog.start_attempt(run_id, tasks[1].key, 2, 2)
    assert catalog.abandon_in_flight(run_id) == 1
    assert catalog.abandon_in_flight(run_id) == 0


# Assets


def test_accept_frame_creates_asset(catalog: Catalog, make_tasks: MakeTasks) -> None:
    run_id, tasks = new_run(catalog, make_tasks)
    task = tasks[0]
    record_attempt(catalog, run_id, task, 1, frame_score(Verdict.DRIFTED, 0.9, 0.2))
    best = record_attempt(catalog, run_id, task, 2, frame_score(Verdict.ON_MODEL, 0.9, 0.7))

    asset_id = catalog.accept_frame(run_id, task.key, best, FrameState.ACCEPTED, REFERENCE_HASHES)

    asset = catalog.get_asset(asset_id)
    frame = catalog.list_frames(run_id)[0]
    assert frame.state is FrameState.ACCEPTED
    assert frame.asset_id == asset_id
    assert frame.attempts == 2
    assert asset.run_id == run_id
    assert asset.storyboard_name == "campaign"
    assert asset.storyboard_id == catalog.get_run(run_id).storyboard_id
    assert asset.frame_key == task.key
    assert asset.scene_id == "s1"
    assert (asset.edit_step, asset.variant) == (0, 0)
    assert asset.attempt == 2
    assert asset.state is FrameState.ACCEPTED
    assert asset.verdict is Verdict.ON_MODEL
    assert asset.score == pytest.approx(0.7)
    assert [score.character_id for score in asset.scores] == ["ana", "leo"]
    assert asset.characters == ["ana", "leo"]
    assert asset.prompt == task.prompt
    assert asset.backend == "tiny"
    assert asset.model == "tiny-kontext"
    assert asset.seed == task.seed + 2
    assert (asset.width, asset.height, asset.steps, asset.guidance) == (64, 48, 2, 2.5)
    assert asset.reference_hashes == REFERENCE_HASHES
    object_key, digest = key_for(f"{task.key}/2".encode())
    assert asset.object_key == object_key
    assert asset.sha256 == digest
    assert asset.seconds_generate == 1.5
    assert asset.seconds_score == 0.25
    assert asset.node == "node-1"
    assert asset.device == "cpu"
    assert asset.parent_asset_id is None
    assert_utc(asset.created_at)


def test_accept_frame_is_idempotent(catalog: Catalog, make_tasks: MakeTasks) -> None:
    run_id, tasks = new_run(catalog, make_tasks)
    first_attempt = record_attempt(catalog, run_id, tasks[0], 1, None)
    second_attempt = record_attempt(catalog, run_id, tasks[0], 2, None)

    first = catalog.accept_frame(run_id, tasks[0].key, first_attempt, FrameState.ACCEPTED, {})
    again = catalog.accept_frame(run_id, tasks[0].key, first_attempt, FrameState.ACCEPTED, {})
    other = catalog.accept_frame(run_id, tasks[0].key, second_attempt, FrameState.ACCEPTED, {})

    assert again == first
    assert other == first
    assert len(catalog.list_assets(run_id=run_id)) == 1
    assert catalog.get_asset(first).attempt == 1


def test_accept_frame_unscored(catalog: Catalog, make_tasks: MakeTasks) -> None:
    run_id, tasks = new_run(catalog, make_tasks)
    attempt_id = record_attempt(catalog, run_id, tasks[0], 1, None)

    asset_id = catalog.accept_frame(run_id, tasks[0].key, attempt_id, FrameState.ACCEPTED, {})

    asset = catalog.get_asset(asset_id)
    assert asset.verdict is Verdict.UNSCORED
    assert asset.score is None
    assert asset.scores == []
    # Unscored characters are still indexed, so a filter by character finds the asset.
    assert [a.id for a in catalog.list_assets(character="leo")] == [asset_id]


def test_accept_frame_checks_attempt(catalog: Catalog, make_tasks: MakeTasks) -> None:
    run_id, tasks = new_run(catalog, make_tasks)
    running = catalog.start_attempt(run_id, tasks[0].key, 1, 1)
    other_frame = record_attempt(catalog, run_id, tasks[1], 1, None)

    with pytest.raises(ValueError, match="has no stored image"):
        catalog.accept_frame(run_id, tasks[0].key, running, FrameState.ACCEPTED, {})
    with pytest.raises(NotFoundError, match=f"attempt id {other_frame} not found for frame"):
        catalog.accept_frame(run_id, tasks[0].key, other_frame, FrameState.ACCEPTED, {})
    with pytest.raises(ValueError, match="invalid for an asset"):
        catalog.accept_frame(run_id, tasks[1].key, other_frame, FrameState.FAILED, {})
    with pytest.raises(NotFoundError, match="parent asset 'nope' not found"):
        catalog.accept_frame(run_id, tasks[1].key, other_frame, FrameState.ACCEPTED, {}, "nope")
    assert catalog.list_assets() == []
    assert catalog.list_frames(run_id)[1].state is FrameState.RUNNING


def test_accept_frame_with_parent_asset(catalog: Catalog, make_tasks: MakeTasks) -> None:
    run_id, tasks = new_run(catalog, make_tasks)
    parent_attempt = record_attempt(catalog, run_id, tasks[0], 1, None)
    parent = catalog.accept_frame(run_id, tasks[0].key, parent_attempt, FrameState.ACCEPTED, {})
    child_attempt = record_attempt(catalog, run_id, tasks[1], 1, None)

    child = catalog.accept_frame(
        run_id, tasks[1].key, child_attempt, FrameState.NEEDS_REVIEW, {}, parent_asset_id=parent
    )

    assert catalog.get_asset(child).parent_asset_id == parent
    assert catalog.get_asset(child).state is FrameState.NEEDS_REVIEW


def test_list_assets_filters(catalog: Catalog, make_tasks: MakeTasks) -> None:
    run_id, tasks = new_run(catalog, make_tasks, count=3)
    other_run, other_tasks = new_run(catalog, make_tasks, count=1)
    on_model = frame_score(Verdict.ON_MODEL, 0.9, 0.8)
    ids = []
    for task in tasks:
        attempt_id = record_attempt(catalog, run_id, task, 1, on_model)
        ids.append(catalog.accept_frame(run_id, task.key, attempt_id, FrameState.ACCEPTED, {}))
    other_attempt = record_attempt(catalog, other_run, other_tasks[0], 1, None)
    other_id = catalog.accept_frame(
        other_run, other_tasks[0].key, other_attempt, FrameState.ACCEPTED, {}
    )

    newest_first = [asset.id for asset in catalog.list_assets()]
    assert newest_first == [other_id, *reversed(ids)]
    assert {asset.id for asset in catalog.list_assets(run_id=run_id)} == set(ids)
    assert {asset.id for asset in catalog.list_assets(run_id=run_id[:5])} == set(ids)
    assert [asset.id for asset in catalog.list_assets(verdict="unscored")] == [other_id]
    assert len(catalog.list_assets(verdict=Verdict.ON_MODEL)) == 3
    assert len(catalog.list_assets(limit=2)) == 2
    assert len(catalog.list_assets(character="ana")) == 4
    assert catalog.list_assets(character="mia") == []
    assert len(catalog.list_assets(scene_id="s1", run_id=run_id)) == 3
    with pytest.raises(ValueError, match="verdict: 'great' is invalid"):
        catalog.list_assets(verdict="great")
    with pytest.raises(ValueError, match="limit"):
        catalog.list_assets(limit=0)


def test_get_asset_by_prefix(catalog: Catalog, make_tasks: MakeTasks) -> None:
    run_id, tasks = new_run(catalog, make_tasks)
    attempt_id = record_attempt(catalog, run_id, tasks[0], 1, None)
    asset_id = catalog.accept_frame(run_id, tasks[0].key, attempt_id, FrameState.ACCEPTED, {})

    assert catalog.get_asset(asset_id[:4]).id == asset_id
    with pytest.raises(NotFoundError) as raised:
        catalog.get_asset("0000zz")
    assert str(raised.value) == "asset '0000zz' not found; list assets with `onmodel assets list`"


def test_referenced_object_keys(catalog: Catalog, make_tasks: MakeTasks) -> None:
    run_id, tasks = new_run(catalog, make_tasks)
    accepted = record_attempt(catalog, run_id, tasks[0], 1, None)
    catalog.accept_frame(run_id, tasks[0].key, accepted, FrameState.ACCEPTED, {})
    record_attempt(catalog, run_id, tasks[1], 1, None)
    catalog.start_attempt(run_id, tasks[2].key, 1, 1)

    assert catalog.referenced_object_keys() == {
        key_for(f"{tasks[0].key}/1".encode())[0],
        key_for(f"{tasks[1].key}/1".encode())[0],
    }


def test_in_memory_sqlite(make_tasks: MakeTasks) -> None:
    with Catalog("sqlite://") as catalog:
        catalog.upgrade()
        run_id, _ = new_run(catalog, make_tasks)
        assert catalog.get_run(run_id).frames_total == 3


def test_invalid_url_rejected() -> None:
    with pytest.raises(ValueError, match="catalog URL 'not a url' is invalid"):
        Catalog("not a url")


def test_missing_tables_explained(catalog_url: str) -> None:
    with Catalog(catalog_url) as catalog, pytest.raises(StorageError, match="Catalog.upgrade"):
        catalog.list_runs()
