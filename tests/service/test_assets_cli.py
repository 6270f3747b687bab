"""`onmodel assets`: list with filters, pages and formats; show; export; review marks."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from service_helpers import SeededAsset, seed_assets
from typer.testing import CliRunner

from orchestrator.app_state import open_backends
from orchestrator.assets_cli import default_author
from orchestrator.cli import app
from orchestrator.settings import Settings


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ONMODEL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ONMODEL_DATABASE_URL", raising=False)
    monkeypatch.delenv("ONMODEL_OBJECT_STORE", raising=False)
    return tmp_path / "home"


@pytest.fixture
def seeded(home: Path) -> list[SeededAsset]:
    backends = open_backends(Settings(home=home))
    try:
        return seed_assets(backends.catalog, backends.store)
    finally:
        backends.close()


def onmodel(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_list_json_has_paths(seeded: list[SeededAsset]) -> None:
    code, out, _ = onmodel("assets", "list", "--json")

    assert code == 0
    listed = json.loads(out)
    assert [item["id"] for item in listed] == [a.id for a in reversed(seeded)]
    assert Path(listed[0]["path"]).read_bytes() == seeded[-1].png


def test_piped_table_shows_full_ids(
    seeded: list[SeededAsset], monkeypatch: pytest.MonkeyPatch
) -> None:
    # CliRunner's output is not a terminal, as with `onmodel assets list | less`.
    monkeypatch.delenv("COLUMNS", raising=False)

    code, out, _ = onmodel("assets", "list")

    assert code == 0
    for header in ("asset", "scene", "variant", "attempt", "state", "verdict", "score", "seed"):
        assert header in out
    for asset in seeded:
        assert asset.id in out
        assert asset.verdict.value in out


def test_list_filters_mirror_query_parameters(seeded: list[SeededAsset]) -> None:
    def listed(*options: str) -> set[str]:
        code, out, err = onmodel("assets", "list", "--json", *options)
        assert code == 0, err
        return {item["id"] for item in json.loads(out)}

    assert listed("--scene", "s1") == {a.id for a in seeded if a.scene == "s1"}
    assert listed("--verdict", "needs_review") == {
        a.id for a in seeded if a.state.value == "needs_review"
    }
    assert listed("--character", "ana", "--min-score", "0.6") == {
        a.id for i, a in enumerate(seeded) if a.character == "ana" and 0.5 + i / 20 >= 0.6
    }
    assert listed("--run", seeded[0].run_id[:6], "--q", "TAKE 3") == {seeded[3].id}
    assert listed("--storyboard", "seeded", "--seed", "502") == {seeded[2].id}
    assert listed("--scene", "' OR '1'='1") == set()


def test_list_pages_with_cursor(seeded: list[SeededAsset]) -> None:
    code, out, err = onmodel("assets", "list", "--json", "--sort", "seed", "--limit", "4")
    cursor = err.split("--cursor ")[1].split()[0]
    code2, out2, err2 = onmodel(
        "assets", "list", "--json", "--sort", "seed", "--limit", "4", "--cursor", cursor
    )

    assert code == code2 == 0
    walked = [item["id"] for item in json.loads(out) + json.loads(out2)]
    assert walked == [a.id for a in seeded]
    assert "--cursor" not in err2


def test_list_csv_and_table(seeded: list[SeededAsset]) -> None:
    code, out, _ = onmodel("assets", "list", "--csv", "--sort", "seed")
    table_code, table, _ = onmodel("assets", "list")

    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [row["id"] for row in rows] == [a.id for a in seeded]
    assert rows[0]["scene_id"] == "s0"
    assert rows[0]["uri"].endswith(".png")
    assert table_code == 0
    # The test terminal is 80 columns wide, so the table shortens ids; seeds stay whole.
    assert "asset" in table
    assert all(str(500 + index) in table for index in range(len(seeded)))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--sort", "password"], "sort: unknown sort key"),
        (["--verdict", "great"], "verdict"),
        (["--since", "yesterday"], "since"),
        (["--cursor", "abc"], "cursor: malformed cursor"),
        (["--json", "--csv"], "exclude each other"),
        (["--limit", "501"], "less than or equal to 500"),
    ],
)
def test_list_rejects_invalid_options(
    seeded: list[SeededAsset], options: list[str], message: str
) -> None:
    code, out, err = onmodel("assets", "list", *options)

    assert code == 2
    assert message in err
    assert out == ""


def test_show_and_export(seeded: list[SeededAsset], tmp_path: Path) -> None:
    code, out, _ = onmodel("assets", "show", seeded[1].id[:8])
    export_code, export_out, _ = onmodel("assets", "export", seeded[1].id, str(tmp_path))
    missing_code, _, missing_err = onmodel("assets", "show", "0" * 32)

    assert code == 0
    asset = json.loads(out)
    assert asset["id"] == seeded[1].id
    assert asset["review"] == {"tags": [], "rating": None, "comments": 0}
    assert export_code == 0
    assert Path(export_out.strip()).read_bytes() == seeded[1].png
    assert missing_code == 2
    assert "not found" in missing_err


def test_export_keeps_existing_file(seeded: list[SeededAsset], tmp_path: Path) -> None:
    target = tmp_path / "hero.png"
    target.write_bytes(b"keep me")

    kept_code, kept_out, kept_err = onmodel("assets", "export", seeded[0].id, str(target))
    assert kept_code == 2
    assert kept_out == ""
    assert "file exists" in kept_err
    assert "--force" in kept_err
    assert target.read_bytes() == b"keep me"

    forced_code, _, _ = onmodel("assets", "export", seeded[0].id, str(target), "--force")
    assert forced_code == 0
    assert target.read_bytes() == seeded[0].png


def test_review_marks_from_cli(seeded: list[SeededAsset]) -> None:
    asset_id = seeded[0].id

    tag = onmodel("assets", "tag", asset_id, "hero", "--author", "kim")
    rate = onmodel("assets", "rate", asset_id[:8], "approve")
    comment = onmodel("assets", "comment", asset_id, "Hands look wrong.", "--author", "lee")
    bad = onmodel("assets", "rate", asset_id, "maybe")
    code, out, _ = onmodel("assets", "marks", asset_id, "--json")

    assert tag[0] == rate[0] == comment[0] == 0
    assert "tag 'hero' by kim" in tag[1]
    assert bad[0] == 2
    assert "rating: must be approve or reject" in bad[2]
    marks = json.loads(out)
    assert [(m["kind"], m["value"], m["author"]) for m in marks] == [
        ("tag", "hero", "kim"),
        ("rating", "approve", default_author()),
        ("comment", "Hands look wrong.", "lee"),
    ]
    tagged = json.loads(onmodel("assets", "list", "--json", "--tag", "hero")[1])
    approved = json.loads(onmodel("assets", "list", "--json", "--rating", "approve")[1])
    assert [item["id"] for item in tagged] == [asset_id]
    assert [item["id"] for item in approved] == [asset_id]
    asset = json.loads(onmodel("assets", "show", asset_id)[1])
    assert asset["review"] == {"tags": ["hero"], "rating": "approve", "comments": 1}
