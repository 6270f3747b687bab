"""Property tests of the spec loader: any input gives a storyboard or a SpecError, nothing else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.spec import LoadedSpec, load_spec, load_spec_text
from schemas.errors import SpecError

PHOTOS = Path(__file__).resolve().parents[2] / "examples" / "coffee" / "refs"

# About 200 examples in all over the three properties; each example parses
# at most a few kilobytes and decodes at most a few small images.
FUZZ = settings(
    max_examples=70,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    # No example database, so that nothing is written into the repository.
    database=None,
)

# Keys and values a storyboard uses, so that generated documents reach the
# validators and the reference loader instead of stopping at the top level.
KEYS = [
    "name", "characters", "scenes", "id", "prompt", "references", "defaults", "style",
    "reference", "description", "width", "height", "steps", "seed", "variants", "edits",
    "consistency", "scorer", "threshold", "matrix", "axes", "backend", "model", "text",
]  # fmt: skip
PATHS = [
    "refs/ana.jpg", "refs/leo.jpg", "refs/not-an-image.txt", "refs", "../outside.jpg",
    "/dev/zero", "refs/zero-link.jpg", "missing.png", "refs/ana.jpg\x00",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["tiny", "dlib", "none", "ana", "leo", "s1", "64", "{ana}", "{{", "\x07"]),
    st.sampled_from(PATHS),
    st.text(max_size=40),
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children, max_size=6
        ),
    ),
    max_leaves=40,
)


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spec folder with two real photos, a text file, a folder and a link to /dev/zero."""
    folder = tmp_path_factory.mktemp("fuzz")
    refs = folder / "refs"
    refs.mkdir()
    shutil.copy(PHOTOS / "ana_1.jpg", refs / "ana.jpg")
    shutil.copy(PHOTOS / "leo_1.jpg", refs / "leo.jpg")
    (refs / "not-an-image.txt").write_text("hello")
    (refs / "zero-link.jpg").symlink_to("/dev/zero")
    return folder


def near_valid(document: Any) -> dict[str, Any]:
    """Graft a generated value onto a valid storyboard, so that deep fields get fuzzed too."""
    base: dict[str, Any] = {
        "name": "fuzz",
        "characters": [{"id": "ana", "references": ["refs/ana.jpg"]}],
        "defaults": {"backend": "tiny", "width": 64, "height": 64, "steps": 2},
        "scenes": [{"id": "s1", "prompt": "Ana drinks coffee", "characters": ["ana"]}],
    }
    if isinstance(document, dict):
        for key, value in document.items():
            if key in ("characters", "scenes") and isinstance(value, dict):
                base[key][0].update(value)
            else:
                base[str(key)] = value
    return base


def assert_loads_or_spec_error(load: Any) -> None:
    try:
        result = load()
    except SpecError as exc:
        assert str(exc)
        return
    assert isinstance(result, LoadedSpec)


@FUZZ
@given(text=st.text(max_size=2000), is_json=st.booleans())
def test_random_text_gives_spec_or_spec_error(spec_dir: Path, text: str, is_json: bool) -> None:
    assert_loads_or_spec_error(lambda: load_spec_text(text, spec_dir, is_json=is_json))


@FUZZ
@given(document=DOCUMENTS, graft=st.booleans(), as_json=st.booleans())
def test_random_structures_give_spec_or_spec_error(
    spec_dir: Path, document: Any, graft: bool, as_json: bool
) -> None:
    if graft:
        document = near_valid(document)
    try:
        text = json.dumps(document, allow_nan=True) if as_json else yaml.safe_dump(document)
    except (TypeError, ValueError, yaml.YAMLError):
        return  # keys that the serializer cannot write (None, floats) make no document
    assert_loads_or_spec_error(lambda: load_spec_text(text, spec_dir, is_json=as_json))


@FUZZ
@given(data=st.binary(max_size=2000), suffix=st.sampled_from([".yaml", ".json"]))
def test_random_bytes_give_spec_or_spec_error(spec_dir: Path, data: bytes, suffix: str) -> None:
    path = spec_dir / f"spec{suffix}"
    path.write_bytes(data)
    assert_loads_or_spec_error(lambda: load_spec(path))
