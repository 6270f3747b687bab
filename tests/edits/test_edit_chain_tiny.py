"""Edit chains and `onmodel edit` / `onmodel assets lineage` with the tiny backend."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.cli import app

EXAMPLE_REFS = Path(__file__).resolve().parents[2] / "examples" / "coffee" / "refs"
EDITS = ["make it night", "add rain on the window", "add a neon sign reading CAFE"]
INSTRUCTION = "replace the text on the sign with OPEN LATE"


def write_spec(folder: Path) -> Path:
    shutil.copytree(EXAMPLE_REFS, folder / "refs")
    doc = {
        "name": "chain",
        "characters": [
            {"id": "ana", "name": "Ana", "references": ["refs/ana_1.jpg"]},
            {"id": "leo", "name": "Leo", "references": ["refs/leo_1.jpg"]},
        ],
        "style": {"reference": "refs/style.jpg", "description": "warm watercolour"},
        "defaults": {"backend": "tiny", "width": 64, "height": 64, "steps": 2},
        "scenes": [
            {
                "id": "counter",
                "prompt": "Ana orders a coffee",
                "characters": ["ana"],
                "edits": EDITS,
            },
        ],
    }
    spec = folder / "storyboard.yaml"
    spec.write_text(yaml.safe_dump(doc))
    return spec


def invoke(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def last_json(output: str) -> Any:
    return json.loads(output.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, ray_session: None) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("tiny-chain")
    env = {"ONMODEL_HOME": str(folder / "home"), "ONMODEL_ACTORS": "1"}

    done = invoke(env, "run", str(write_spec(folder / "spec")), "--json")

    assert done.exit_code == 0, done.output
    summary = last_json(done.stdout)
    listed = invoke(env, "assets", "list", "--run", summary["run_id"], "--json")
    assets = sorted(last_json(listed.stdout), key=lambda a: a["edit_step"])
    return {"env": env, "summary": summary, "assets": assets}


def test_three_step_chain_makes_four_linked_assets(chain: dict[str, Any]) -> None:
    assets = chain["assets"]

    assert chain["summary"]["frames"] == 4
    assert chain["summary"]["accepted"] == 4
    assert [a["edit_step"] for a in assets] == [0, 1, 2, 3]
    assert [a["parent_asset_id"] for a in assets] == [None, *(a["id"] for a in assets[:-1])]
    assert [a["prompt"] for a in assets[1:]] == EDITS


def test_assets_lineage_lists_chain_in_order(chain: dict[str, Any]) -> None:
    assets = chain["assets"]

    shown = invoke(chain["env"], "assets", "lineage", assets[-1]["id"], "--json")

    assert shown.exit_code == 0, shown.output
    assert [a["id"] for a in last_json(shown.stdout)] == [a["id"] for a in assets]


def test_lineage_alias_and_table(chain: dict[str, Any]) -> None:
    assets = chain["assets"]

    alias = invoke(chain["env"], "lineage", assets[2]["id"][:8], "--json")
    table = invoke(chain["env"], "assets", "lineage", assets[1]["id"])

    assert alias.exit_code == 0, alias.output
    assert [a["id"] for a in last_json(alias.stdout)] == [a["id"] for a in assets[:3]]
    assert table.exit_code == 0, table.output
    rows = [line for line in table.stdout.splitlines() if line.startswith("│")]
    # Root first; the table may shorten ids to fit the terminal.
    assert [row.split("│")[1].strip()[:5] for row in rows] == [a["id"][:5] for a in assets[:2]]


def test_edit_command_creates_linked_asset(chain: dict[str, Any]) -> None:
    source = chain["assets"][-1]

    done = invoke(
        chain["env"],
        "edit",
        source["id"][:8],
        INSTRUCTION,
        "--scene-characters",
        "ana,leo",
        "--json",
    )

    assert done.exit_code == 0, done.output
    result = last_json(done.stdout)
    assert result["frame_state"] == "accepted"
    assert result["source_asset_id"] == source["id"]
    shown = last_json(
        invoke(chain["env"], "assets", "show", result["asset_id"]).stdout.replace("\n", " ")
    )
    assert shown["parent_asset_id"] == source["id"]
    assert shown["prompt"] == INSTRUCTION
    assert shown["characters"] == ["ana", "leo"]
    assert shown["scene_id"] == source["scene_id"]
    assert shown["edit_step"] == source["edit_step"] + 1
    assert (shown["width"], shown["height"]) == (source["width"], source["height"])
    assert set(shown["reference_hashes"]) == {"ana", "leo", "style"}
    lineage = last_json(
        invoke(chain["env"], "assets", "lineage", result["asset_id"], "--json").stdout
    )
    assert [a["id"] for a in lineage] == [*(a["id"] for a in chain["assets"]), result["asset_id"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["edit", "ffffffff", INSTRUCTION], "not found"),
        (["edit", "{asset}", "   "], "empty edit instruction"),
        (
            ["edit", "{asset}", INSTRUCTION, "--scene-characters", "ana,mia"],
            "unknown character 'mia'",
        ),
        (["assets", "lineage", "ffffffff"], "not found"),
    ],
)
def test_edit_user_errors_exit_2(chain: dict[str, Any], args: list[str], message: str) -> None:
    asset = chain["assets"][0]["id"]

    done = invoke(chain["env"], *(arg.replace("{asset}", asset) for arg in args))

    assert done.exit_code == 2
    assert message in done.stderr
