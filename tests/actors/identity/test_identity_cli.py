"""`onmodel identity score` and `calibrate` on the fixture photos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from identity_photos import FACES
from typer.testing import CliRunner

from orchestrator.identity_cli import app

runner = CliRunner()
SUNAK = str(FACES / "sunak.jpg")


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_score_same_person_prints_on_model() -> None:
    reference, image = str(FACES / "ardern_2018.jpg"), str(FACES / "ardern_2022.jpg")

    code, out, _ = run("score", "-r", reference, image)

    assert code == 0
    assert "verdict: on_model" in out
    assert "threshold 0.400, scorer dlib" in out
    assert "faces found: 1" in out


def test_score_json_reports_drift_and_exits_zero() -> None:
    code, out, _ = run(
        "score", "--json", "-r", str(FACES / "ardern_2018.jpg"), str(FACES / "sunak.jpg")
    )

    assert code == 0
    data = json.loads(out)
    assert data["verdict"] == "drifted"
    assert data["faces_found"] == 1
    assert data["score"] < 0.4
    assert data["characters"][0]["threshold"] == 0.4


def test_score_takes_several_references_and_a_threshold() -> None:
    code, out, _ = run(
        "score",
        "--json",
        "-r",
        str(FACES / "sunak.jpg"),
        "--reference",
        str(FACES / "macron_2014.jpg"),
        "--threshold",
        "0.45",
        str(FACES / "macron_2025.jpg"),
    )

    assert code == 0
    data = json.loads(out)
    assert data["verdict"] == "on_model"
    assert data["characters"][0]["threshold"] == 0.45


def test_score_without_face_prints_no_face() -> None:
    code, out, _ = run("score", "-r", str(FACES / "sunak.jpg"), str(FACES / "flower.jpg"))

    assert code == 0
    assert "verdict: no_face" in out
    assert "faces found: 0" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["score", str(FACES / "sunak.jpg")], "--reference: give at least one reference photo"),
        (["score", "-r", "missing.jpg", str(FACES / "sunak.jpg")], "file not found: 'missing.jpg'"),
        (["score", "-r", str(FACES / "sunak.jpg"), "missing.png"], "IMAGE: file not found"),
        (
            ["score", "-r", str(FACES / "CREDITS.md"), str(FACES / "sunak.jpg")],
            "is not a readable image",
        ),
        (
            ["score", "--threshold", "1.5", "-r", SUNAK, SUNAK],
            "--threshold: 1.5 is outside [0, 1]",
        ),
        (
            ["score", "--scorer", "onnx-face", "-r", SUNAK, SUNAK],
            "set consistency.model",
        ),
        (
            ["score", "--scorer", "face++", "-r", SUNAK, SUNAK],
            "unknown scorer 'face++'",
        ),
    ],
)
def test_user_errors_exit_2_with_one_line(args: list[str], message: str) -> None:
    code, out, err = run(*args)

    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error: ")
    assert "Traceback" not in out + err


def write_spec(folder: Path, characters: dict[str, list[str]]) -> Path:
    lines = ["name: calibration", "characters:"]
    for character_id, photos in characters.items():
        lines.append(f"  - id: {character_id}")
        lines.append("    references:")
        for photo in photos:
            shutil.copy(FACES / photo, folder / photo)
            lines.append(f"      - {photo}")
    first = next(iter(characters))
    lines += ["scenes:", "  - id: one", "    prompt: a portrait", f"    characters: [{first}]"]
    spec = folder / "spec.yaml"
    spec.write_text("\n".join(lines) + "\n")
    return spec


def test_calibrate_suggests_threshold_between_ranges(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        {
            "ardern": ["ardern_2018.jpg", "ardern_2022.jpg"],
            "macron": ["macron_2014.jpg", "macron_2025.jpg"],
        },
    )

    code, out, err = run("calibrate", "--json", str(spec))

    assert code == 0, err
    data = json.loads(out)
    within_low = min(data["within"][name]["low"] for name in ("ardern", "macron"))
    between_high = data["between"][0]["high"]
    assert between_high < within_low
    assert data["suggested_threshold"] == pytest.approx((within_low + between_high) / 2, abs=1e-3)
    assert data["basis"].startswith("midway between")
    assert data["warnings"] == []


def test_calibrate_warns_about_unusable_reference(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, {"ardern": ["ardern_2018.jpg", "flower.jpg"]})

    code, out, err = run("calibrate", str(spec))

    assert code == 0, err
    assert "ardern: fewer than two usable references" in out
    assert "suggested threshold: 0.400, the scorer default" in out
    assert "warning: ardern: no face found in reference(s)" in out


def test_calibrate_warns_when_characters_look_alike(tmp_path: Path) -> None:
    # The same person under two ids stands for two characters nobody could tell apart.
    spec = write_spec(tmp_path, {"ana": ["ardern_2018.jpg"], "ana-twin": ["ardern_2022.jpg"]})

    code, out, err = run("calibrate", str(spec))

    assert code == 0, err
    assert "warning: ana and ana-twin are too alike to tell apart" in out


def test_calibrate_invalid_spec_exits_2(tmp_path: Path) -> None:
    code, _, err = run("calibrate", str(tmp_path / "missing.yaml"))

    assert code == 2
    assert "spec file not found" in err
