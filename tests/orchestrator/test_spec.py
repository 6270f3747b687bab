"""The spec loader: valid specs load, each kind of invalid spec gets a clear SpecError."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from orchestrator.spec import field_path, load_spec
from schemas.errors import SpecError

PHOTOS = Path(__file__).resolve().parents[2] / "examples" / "coffee" / "refs"


def write_spec(folder: Path, doc: dict | str, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    refs = tmp_path / "refs"
    refs.mkdir()
    shutil.copy(PHOTOS / "ana_1.jpg", refs / "ana.jpg")
    shutil.copy(PHOTOS / "leo_1.jpg", refs / "leo.jpg")
    return tmp_path


def base_doc() -> dict:
    return {
        "name": "test",
        "characters": [
            {"id": "ana", "name": "Ana", "references": ["refs/ana.jpg"]},
            {"id": "leo", "name": "Leo", "references": ["refs/leo.jpg"]},
        ],
        "defaults": {"backend": "tiny", "width": 64, "height": 64, "steps": 2},
        "scenes": [
            {"id": "s1", "prompt": "Ana drinks coffee", "characters": ["ana"]},
            {"id": "s2", "prompt": "Ana and Leo talk", "characters": ["ana", "leo"]},
        ],
    }


def load_error(folder: Path, doc: dict | str, name: str = "spec.yaml") -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(folder, doc, name))
    return info.value


def test_valid_spec_loads_references(spec_dir: Path) -> None:
    loaded = load_spec(write_spec(spec_dir, base_doc()))

    assert loaded.storyboard.name == "test"
    assert [len(v) for v in loaded.references.values()] == [1, 1]
    assert loaded.references["ana"][0].png.startswith(b"\x89PNG")
    assert len(loaded.sha256) == 64


def test_json_spec_loads(spec_dir: Path) -> None:
    import json

    loaded = load_spec(write_spec(spec_dir, json.dumps(base_doc()), "spec.json"))

    assert loaded.storyboard.scenes[1].characters == ["ana", "leo"]


def test_spec_hash_changes_with_reference_bytes(spec_dir: Path) -> None:
    first = load_spec(write_spec(spec_dir, base_doc())).sha256
    shutil.copy(PHOTOS / "ana_2.jpg", spec_dir / "refs" / "ana.jpg")

    assert load_spec(write_spec(spec_dir, base_doc())).sha256 != first


def test_field_path_renders_indices() -> None:
    assert field_path(("scenes", 2, "characters", 0)) == "scenes[2].characters[0]"


def test_missing_reference_file(spec_dir: Path) -> None:
    doc = base_doc()
    doc["characters"][0]["references"] = ["refs/nope.jpg"]

    error = load_error(spec_dir, doc)

    assert error.field == "characters[0].references[0]"
    assert "not found" in str(error)
    assert "refs/nope.jpg" in str(error)


@pytest.mark.parametrize("path", ["../outside.jpg", "refs/../../outside.jpg", "/etc/hostname"])
def test_reference_outside_folder(spec_dir: Path, path: str) -> None:
    inner = spec_dir / "inner"
    inner.mkdir()
    shutil.copy(PHOTOS / "ana_1.jpg", spec_dir / "outside.jpg")
    (inner / "refs").symlink_to(spec_dir / "refs")
    doc = base_doc()
    doc["characters"][0]["references"] = [path]

    error = load_error(inner, doc)

    assert error.field == "characters[0].references[0]"
    assert "outside the spec's folder" in str(error)


def test_absolute_reference_inside_folder_is_allowed(spec_dir: Path) -> None:
    doc = base_doc()
    doc["characters"][0]["references"] = [str(spec_dir / "refs" / "ana.jpg")]

    assert load_spec(write_spec(spec_dir, doc)).references["ana"]


def test_symlink_out_of_folder(spec_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "face.jpg"
    shutil.copy(PHOTOS / "ana_1.jpg", elsewhere)
    (spec_dir / "refs" / "link.jpg").symlink_to(elsewhere)
    doc = base_doc()
    doc["characters"][0]["references"] = ["refs/link.jpg"]

    error = load_error(spec_dir, doc)

    assert "outside the spec's folder" in str(error)


def test_reference_not_an_image(spec_dir: Path) -> None:
    (spec_dir / "refs" / "notes.jpg").write_text("not an image at all")
    doc = base_doc()
    doc["characters"][1]["references"] = ["refs/notes.jpg"]

    error = load_error(spec_dir, doc)

    assert error.field == "characters[1].references[0]"
    assert "not an image" in str(error)


def test_truncated_image(spec_dir: Path) -> None:
    data = (PHOTOS / "ana_1.jpg").read_bytes()
    (spec_dir / "refs" / "cut.jpg").write_bytes(data[: len(data) // 2])
    doc = base_doc()
    doc["characters"][0]["references"] = ["refs/cut.jpg"]

    error = load_error(spec_dir, doc)

    assert "truncated" in str(error)


def test_decompression_bomb(spec_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real bomb would need a huge file; lowering the limit exercises the same check.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    doc = base_doc()

    error = load_error(spec_dir, doc)

    assert "decompression-bomb" in str(error)


def test_reference_directory_and_fifo(spec_dir: Path) -> None:
    (spec_dir / "refs" / "folder.jpg").mkdir()
    os.mkfifo(spec_dir / "refs" / "pipe.jpg")
    for name, expected in (("folder.jpg", "directory"), ("pipe.jpg", "not a regular file")):
        doc = base_doc()
        doc["characters"][0]["references"] = [f"refs/{name}"]

        error = load_error(spec_dir, doc)

        assert expected in str(error)


def test_unknown_character_in_scene(spec_dir: Path) -> None:
    doc = base_doc()
    doc["scenes"][1]["characters"] = ["ana", "mia"]

    error = load_error(spec_dir, doc)

    assert error.field == "scenes[1].characters[1]"
    assert error.value == "mia"
    assert "unknown character 'mia'" in str(error)
    assert "ana, leo" in str(error)


def test_duplicate_ids(spec_dir: Path) -> None:
    doc = base_doc()
    doc["scenes"][1]["id"] = "s1"
    assert load_error(spec_dir, doc).field == "scenes[1].id"

    doc = base_doc()
    doc["characters"][1]["id"] = "ana"
    assert load_error(spec_dir, doc).field == "characters[1].id"


@pytest.mark.parametrize("value", [0, -16, 100, 4096])
def test_invalid_sizes(spec_dir: Path, value: int) -> None:
    doc = base_doc()
    doc["scenes"][0]["width"] = value

    error = load_error(spec_dir, doc)

    assert error.field == "scenes[0].width"
    assert "multiple of 16" in str(error)
    assert str(value) in str(error)


def test_malformed_yaml(spec_dir: Path) -> None:
    error = load_error(spec_dir, "name: x\ncharacters: [\n  - id: a\n")

    assert "malformed YAML" in str(error)
    assert "line" in str(error)


def test_empty_scene_list(spec_dir: Path) -> None:
    doc = base_doc()
    doc["scenes"] = []

    error = load_error(spec_dir, doc)

    assert error.field == "scenes"


def test_unknown_key(spec_dir: Path) -> None:
    doc = base_doc()
    doc["defaults"]["sampler"] = "euler"

    error = load_error(spec_dir, doc)

    assert error.field == "defaults.sampler"
    assert "unknown field" in str(error)


def test_yaml_alias_bomb(spec_dir: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    error = load_error(spec_dir, "\n".join(lines) + "\nname: x\n")

    assert "more than" in str(error)


def test_deeply_nested_document(spec_dir: Path) -> None:
    error = load_error(spec_dir, "name: " + "[" * 5000 + "]" * 5000)

    assert "nested deeper" in str(error)


def test_non_utf8_spec(spec_dir: Path) -> None:
    path = spec_dir / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))

    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(path)


@pytest.mark.parametrize(
    ("mode", "extra"),
    [("CMYK", {}), ("I;16", {}), ("P", {"transparency": 0}), ("LA", {})],
)
def test_odd_image_modes_are_converted(spec_dir: Path, mode: str, extra: dict) -> None:
    image = Image.open(PHOTOS / "ana_1.jpg").convert("RGB").resize((64, 64))
    converted = image.convert("L").convert(mode) if mode == "I;16" else image.convert(mode)
    suffix = ".tiff" if mode in ("CMYK", "I;16") else ".png"
    converted.save(spec_dir / "refs" / f"odd{suffix}", **extra)
    doc = base_doc()
    doc["characters"][0]["references"] = [f"refs/odd{suffix}"]

    loaded = load_spec(write_spec(spec_dir, doc))

    decoded = Image.open(io.BytesIO(loaded.references["ana"][0].png))
    assert decoded.mode == "RGB"
    assert decoded.size == (64, 64)


def test_exif_rotation_is_applied(spec_dir: Path) -> None:
    image = Image.new("RGB", (80, 40), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(spec_dir / "refs" / "rotated.jpg", exif=exif)
    doc = base_doc()
    doc["characters"][0]["references"] = ["refs/rotated.jpg"]

    loaded = load_spec(write_spec(spec_dir, doc))

    assert Image.open(io.BytesIO(loaded.references["ana"][0].png)).size == (40, 80)


def test_animated_image_uses_first_frame(spec_dir: Path) -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "blue")]
    frames[0].save(spec_dir / "refs" / "anim.gif", save_all=True, append_images=frames[1:])
    doc = base_doc()
    doc["characters"][0]["references"] = ["refs/anim.gif"]

    loaded = load_spec(write_spec(spec_dir, doc))

    assert any("animated" in w for w in loaded.warnings)
    pixel = Image.open(io.BytesIO(loaded.references["ana"][0].png)).getpixel((0, 0))
    assert pixel[0] > 200
    assert pixel[2] < 50
