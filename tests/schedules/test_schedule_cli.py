"""`onmodel schedule ...` and `onmodel scheduler tick` through the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from orchestrator.schedule_cli import register
from orchestrator.spec import LoadedSpec

app = typer.Typer()
register(app)
runner = CliRunner()


@pytest.fixture
def spec(tmp_path: Path, loaded: LoadedSpec, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ONMODEL_HOME", str(tmp_path / "home"))
    assert loaded.source is not None
    return str(loaded.source)


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def add(spec: str, *options: str) -> str:
    code, out, err = run(
        "schedule", "add", spec, "--cron", "0 2 * * *", "--timezone", "UTC", *options, "--json"
    )
    assert code == 0, err
    return str(json.loads(out)["id"])


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            ["--cron", "61 * * * *", "--timezone", "UTC"],
            "--cron: invalid cron expression '61 * * * *'",
        ),
        (
            ["--cron", "* * *", "--timezone", "UTC"],
            "--cron: invalid cron expression '* * *': 3 fields",
        ),
        (
            ["--cron", "0 2 * * *", "--timezone", "Mars/Base"],
            "--timezone: unknown time zone 'Mars/Base'",
        ),
        (
            ["--cron", "0 2 * * *", "--timezone", "UTC", "--missed", "later"],
            "--missed: invalid policy 'later'",
        ),
        (
            ["--cron", "0 2 * * *", "--timezone", "UTC", "--overlap", "queue"],
            "--overlap: invalid policy 'queue'",
        ),
    ],
)
def test_add_rejects_invalid_options_in_one_line(
    spec: str, options: list[str], expected: str
) -> None:
    code, out, err = run("schedule", "add", spec, *options)

    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert expected in err


def test_add_rejects_invalid_spec(spec: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\ncharacters: []\nscenes: []\n")

    code, _, err = run("schedule", "add", str(broken), "--cron", "0 2 * * *", "--timezone", "UTC")

    assert code == 2
    assert "characters" in err


def test_add_list_show_and_remove(spec: str) -> None:
    schedule_id = add(spec, "--name", "nightly", "--missed", "run_once", "--overlap", "allow")

    code, out, _ = run("schedule", "list", "--json")
    assert code == 0
    (listed,) = json.loads(out)
    assert listed["id"] == schedule_id
    assert listed["name"] == "nightly"
    assert listed["missed_policy"] == "run_once"
    assert listed["overlap_policy"] == "allow"
    assert listed["next_fire"].endswith("T02:00:00+00:00")

    code, out, _ = run("schedule", "show", schedule_id[:6], "--json")
    assert code == 0
    assert json.loads(out)["fires"] == []

    code, out, _ = run("schedule", "show", schedule_id[:6])
    assert code == 0
    assert "nightly" in out
    assert "recent fires" in out

    code, out, _ = run("schedule", "remove", schedule_id[:6])
    assert code == 0
    assert schedule_id in out
    assert json.loads(run("schedule", "list", "--json")[1]) == []


def test_pause_and_resume_change_state(spec: str) -> None:
    schedule_id = add(spec)

    assert run("schedule", "pause", schedule_id)[0] == 0
    paused = json.loads(run("schedule", "show", schedule_id, "--json")[1])
    assert run("schedule", "resume", schedule_id)[0] == 0
    resumed = json.loads(run("schedule", "show", schedule_id, "--json")[1])

    assert paused["state"] == "paused"
    assert paused["next_fire"] is None
    assert resumed["state"] == "active"
    assert resumed["next_fire"] is not None


def test_update_changes_spec_and_options(spec: str, tmp_path: Path) -> None:
    schedule_id = add(spec)
    before = json.loads(run("schedule", "show", schedule_id, "--json")[1])
    changed = Path(spec)
    changed.write_text(changed.read_text().replace("Ana at the counter", "Ana outside"))

    code, _, err = run("schedule", "update", schedule_id, spec, "--cron", "30 3 * * *")
    after = json.loads(run("schedule", "show", schedule_id, "--json")[1])

    assert code == 0, err
    assert after["cron"] == "30 3 * * *"
    assert after["storyboard_id"] != before["storyboard_id"]


def test_update_without_changes_is_an_error(spec: str) -> None:
    schedule_id = add(spec)

    code, _, err = run("schedule", "update", schedule_id)

    assert code == 2
    assert "nothing to update" in err


def test_update_rejects_invalid_cron(spec: str) -> None:
    schedule_id = add(spec)

    code, _, err = run("schedule", "update", schedule_id, "--cron", "0 25 * * *")

    assert code == 2
    assert "--cron: invalid cron expression '0 25 * * *'" in err


def test_unknown_schedule_id_exits_2(spec: str) -> None:
    add(spec)

    code, _, err = run("schedule", "show", "ffffffff")

    assert code == 2
    assert "schedule 'ffffffff' not found" in err


def test_tick_no_run_records_fire_once(spec: str) -> None:
    schedule_id = add(spec)
    show = json.loads(run("schedule", "show", schedule_id, "--json")[1])
    fire_time = show["next_fire"]

    code, out, err = run(
        "scheduler", "tick", "--now", fire_time.replace("+00:00", "Z"), "--no-run", "--json"
    )
    again = json.loads(run("scheduler", "tick", "--now", fire_time, "--no-run", "--json")[1])

    assert code == 0, err
    result = json.loads(out)
    assert [f["status"] for f in result["fires"]] == ["started"]
    assert result["fires"][0]["fire_time"] == fire_time
    assert result["runs"] == []
    assert again == {"fires": [], "runs": []}


def test_tick_rejects_invalid_now(spec: str) -> None:
    code, _, err = run("scheduler", "tick", "--now", "tomorrow", "--no-run")

    assert code == 2
    assert "--now: invalid ISO-8601 time 'tomorrow'" in err


def test_cli_entry_point_lists_schedule_commands(tmp_path: Path) -> None:
    env = {**os.environ, "ONMODEL_HOME": str(tmp_path / "home")}

    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "schedule", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
