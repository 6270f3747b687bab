"""`onmodel report`, and the report paths that `onmodel run` prints at its end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import ReportRun
from typer.testing import CliRunner

from orchestrator.cli import app

ROOT = Path(__file__).resolve().parents[2]


def invoke(home: Path, *args: str) -> tuple[int, list[str], str]:
    result = CliRunner().invoke(app, list(args), env={"ONMODEL_HOME": str(home)})
    return result.exit_code, result.stdout.strip().splitlines(), result.stderr


def one_scene_spec(folder: Path) -> Path:
    """The coffee example cut to one 64 px scene, so a run takes seconds."""
    shutil.copytree(ROOT / "examples" / "coffee", folder)
    spec = folder / "storyboard.yaml"
    doc = yaml.safe_load(spec.read_text())
    doc["defaults"].update({"width": 64, "height": 64, "steps": 2})
    doc["scenes"] = doc["scenes"][:1]
    spec.write_text(yaml.safe_dump(doc))
    return spec


def test_report_command_writes_default_folder(report_run: ReportRun) -> None:
    home = report_run.backends.settings.home
    folder = (home / "reports" / report_run.run_id).resolve()

    code, lines, stderr = invoke(home, "report", report_run.run_id[:8])

    assert code == 0, stderr
    assert lines == [
        f"contact sheet: {folder / 'contact_sheet.png'}",
        f"review page: {folder / 'report.html'}",
    ]
    assert (folder / "contact_sheet.png").stat().st_size > 0
    assert (folder / "report.html").stat().st_size > 0
    assert not list(folder.glob(".*.tmp"))


def test_report_command_json_with_out(report_run: ReportRun, tmp_path: Path) -> None:
    out = tmp_path / "nested" / "report"

    code, lines, stderr = invoke(
        report_run.backends.settings.home,
        "report",
        report_run.run_id,
        "--out",
        str(out),
        "--columns",
        "2",
        "--json",
    )

    assert code == 0, stderr
    data = json.loads(lines[-1])
    assert data == {
        "run_id": report_run.run_id,
        "contact_sheet": str(out / "contact_sheet.png"),
        "page": str(out / "report.html"),
    }
    assert Path(data["page"]).read_text(encoding="utf-8").startswith("<!doctype html>")


def test_report_command_unknown_run_exits_2(report_run: ReportRun) -> None:
    code, lines, stderr = invoke(report_run.backends.settings.home, "report", "ffffffffff")

    assert code == 2
    assert lines == []
    assert "run 'ffffffffff' not found" in stderr


def test_report_command_unwritable_out_exits_2(report_run: ReportRun, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")

    code, _, stderr = invoke(
        report_run.backends.settings.home, "report", report_run.run_id, "--out", str(blocker)
    )

    assert code == 2
    assert "--out: cannot write the report to" in stderr
    assert "choose a writable folder" in stderr


def test_run_prints_report_paths(tmp_path: Path, ray_session: None) -> None:
    home = tmp_path / "home"

    code, lines, stderr = invoke(home, "run", str(one_scene_spec(tmp_path / "spec")))

    assert code == 0, stderr
    run_id = lines[0]
    folder = (home / "reports" / run_id).resolve()
    assert lines[-2:] == [
        f"contact sheet: {folder / 'contact_sheet.png'}",
        f"review page: {folder / 'report.html'}",
    ]
    assert (folder / "contact_sheet.png").is_file()
    assert (folder / "report.html").is_file()


def test_run_json_includes_report_paths(tmp_path: Path, ray_session: None) -> None:
    home = tmp_path / "home"

    code, lines, stderr = invoke(home, "run", str(one_scene_spec(tmp_path / "spec")), "--json")

    assert code == 0, stderr
    data = json.loads(lines[-1])
    folder = (home / "reports" / data["run_id"]).resolve()
    assert data["frames"] == 1
    assert data["report"] == {
        "contact_sheet": str(folder / "contact_sheet.png"),
        "page": str(folder / "report.html"),
    }
    assert Path(data["report"]["contact_sheet"]).is_file()


@pytest.mark.parametrize("columns", ["0", "33"])
def test_report_command_rejects_invalid_columns(report_run: ReportRun, columns: str) -> None:
    code, _, stderr = invoke(
        report_run.backends.settings.home, "report", report_run.run_id, "--columns", columns
    )

    assert code == 2
    assert "--columns" in stderr
