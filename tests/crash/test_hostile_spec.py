"""Hostile storyboard specs: each is rejected with a SpecError naming the field, never a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from crash_helpers import PHOTOS, write_spec

from orchestrator.spec import load_spec
from schemas.errors import SpecError


def base_doc() -> dict[str, Any]:
    return {
        "name": "hostile",
        "characters": [{"id": "ana", "name": "Ana", "references": ["refs/ana.jpg"]}],
        "defaults": {"backend": "tiny", "width": 64, "height": 64, "steps": 2},
        "scenes": [{"id": "s1", "prompt": "Ana drinks coffee", "characters": ["ana"]}],
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "ana.jpg").write_bytes((PHOTOS / "ana_1.jpg").read_bytes())
    return tmp_path


def spec_error(folder: Path, doc: dict[str, Any] | str | bytes) -> SpecError:
    path = folder / "spec.json"
    if isinstance(doc, dict):
        doc = json.dumps(doc)
    path.write_bytes(doc if isinstance(doc, bytes) else doc.encode())
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return info.value


@pytest.mark.parametrize(
    ("where", "field"),
    [
        (("scenes", 0, "prompt"), "scenes[0].prompt"),
        (("characters", 0, "description"), "characters[0].description"),
        (("name",), "name"),
    ],
)
@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\r"])
def test_control_character_names_field(
    folder: Path, where: tuple[Any, ...], field: str, char: str
) -> None:
    doc = base_doc()
    target: Any = doc
    for part in where[:-1]:
        target = target[part]
    target[where[-1]] = f"Ana{char}drinks"

    error = spec_error(folder, doc)

    assert error.field == field
    assert f"U+{ord(char):04X}" in error.message
    assert "remove it" in error.message


def test_newline_and_tab_are_allowed_in_prompts(folder: Path) -> None:
    doc = base_doc()
    doc["scenes"][0]["prompt"] = "Ana drinks coffee.\n\tShe smiles."
    path = folder / "spec.json"
    path.write_text(json.dumps(doc))

    assert load_spec(path).storyboard.scenes[0].prompt.endswith("She smiles.")


def test_control_character_in_edit_and_reference(folder: Path) -> None:
    doc = base_doc()
    doc["scenes"][0]["edits"] = ["make it night", "add \x1b[2Jrain"]
    assert spec_error(folder, doc).field == "scenes[0].edits[1]"
    doc = base_doc()
    doc["characters"][0]["references"] = ["refs/ana.jpg\n"]
    assert spec_error(folder, doc).field == "characters[0].references[0]"


def test_huge_prompt_names_length_and_limit(folder: Path) -> None:
    doc = base_doc()
    doc["scenes"][0]["prompt"] = "x" * 5000

    error = spec_error(folder, doc)

    assert error.field == "scenes[0].prompt"
    assert "5000 characters long, more than the limit of 4000" in error.message


def test_huge_number_is_rejected(folder: Path) -> None:
    # Python's int() refuses more than 4300 digits, and both parsers call it.
    text = json.dumps(base_doc()).replace('"steps": 2', '"steps": ' + "9" * 5000)

    error = spec_error(folder, text)

    assert "digits" in error.message


def test_too_many_frames_are_rejected(folder: Path) -> None:
    doc = base_doc()
    doc["scenes"] = [
        {"id": f"s{i}", "prompt": "Ana", "characters": ["ana"], "variants": 64, "edits": ["e"] * 32}
        for i in range(50)
    ]

    error = spec_error(folder, doc)

    assert error.field == "scenes"
    assert "plans 105600 frames, more than 100000" in error.message


def test_non_utf8_json_is_rejected(folder: Path) -> None:
    text = json.dumps(base_doc()).replace("Ana drinks", "Ana \xe9 drinks")
    error = spec_error(folder, text.encode("latin-1"))

    assert "not UTF-8" in error.message


def test_utf8_byte_order_mark_is_accepted(folder: Path) -> None:
    path = folder / "spec.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(base_doc()).encode())

    assert load_spec(path).storyboard.name == "hostile"


@pytest.mark.timeout(30)
def test_device_file_link_is_rejected_unread(folder: Path) -> None:
    """A link to /dev/zero inside the folder is rejected; reading it would never end."""
    (folder / "refs" / "zero.jpg").symlink_to("/dev/zero")
    doc = base_doc()
    doc["characters"][0]["references"] = ["refs/zero.jpg"]

    error = spec_error(folder, doc)

    assert error.field == "characters[0].references[0]"
    assert "outside the spec's folder" in error.message


@pytest.mark.timeout(30)
def test_fifo_reference_is_rejected_without_blocking(folder: Path) -> None:
    os.mkfifo(folder / "refs" / "pipe.jpg")
    doc = base_doc()
    doc["characters"][0]["references"] = ["refs/pipe.jpg"]

    error = spec_error(folder, doc)

    assert "not a regular file" in error.message


def test_cli_reports_hostile_spec_in_one_line(tmp_path: Path) -> None:
    """The CLI exits 2 with one error line and no traceback, before touching the catalog."""
    spec = write_spec(tmp_path / "spec")
    spec.write_text(spec.read_text().replace("Ana drinks coffee", '"Ana\\x07drinks"'))
    env = {**os.environ, "ONMODEL_HOME": str(tmp_path / "home")}

    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "run", str(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "scenes[0].prompt: contains the control character U+0007" in done.stderr
    assert not (tmp_path / "home").exists()
