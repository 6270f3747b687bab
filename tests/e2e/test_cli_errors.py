"""Bad input through the CLI: exit code 2, one line naming the problem, nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.cli import app

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "coffee"


@pytest.fixture
def spec_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "spec"
    shutil.copytree(EXAMPLE, folder)
    monkeypatch.setenv("ONMODEL_HOME", str(tmp_path / "home"))
    return folder


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda d: d["characters"][0].update(references=["refs/missing.jpg"]),
            "characters[0].references[0]",
        ),
        (
            lambda d: d["characters"][0].update(references=["../../etc/passwd"]),
            "outside the spec's folder",
        ),
        (
            lambda d: d["scenes"][0].update(characters=["mia"]),
            "scenes[0].characters[0]: unknown character 'mia'",
        ),
        (lambda d: d["scenes"][1].update(id="s01-counter"), "scenes[1].id: duplicate scene id"),
        (lambda d: d["defaults"].update(width=100), "defaults.width"),
        (lambda d: d.update(scenes=[]), "scenes"),
    ],
)
def test_bad_spec_exits_2_without_writing(spec_copy: Path, edit, expected: str) -> None:
    spec = spec_copy / "storyboard.yaml"
    doc = yaml.safe_load(spec.read_text())
    edit(doc)
    spec.write_text(yaml.safe_dump(doc))

    code, out = run_cli("run", str(spec))

    assert code == 2
    assert expected in out
    assert "Traceback" not in out
    assert len(out.strip().splitlines()) == 1
    assert not (spec_copy.parent / "home").exists()


def test_malformed_yaml_exits_2(spec_copy: Path) -> None:
    spec = spec_copy / "storyboard.yaml"
    spec.write_text("name: [unclosed\n")

    code, out = run_cli("run", str(spec))

    assert code == 2
    assert "malformed YAML" in out
    assert not (spec_copy.parent / "home").exists()


def test_missing_spec_file_exits_2(spec_copy: Path) -> None:
    code, out = run_cli("run", str(spec_copy / "nope.yaml"))

    assert code == 2
    assert "spec file not found" in out


def test_schema_prints_json_schema() -> None:
    import json

    code, out = run_cli("schema")

    assert code == 0
    schema = json.loads(out)
    assert "scenes" in schema["properties"]
    assert schema["additionalProperties"] is False
