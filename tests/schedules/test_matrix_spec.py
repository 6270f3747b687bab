"""The `matrix` block of a storyboard: value shorthand, placeholders and their errors."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from orchestrator.spec import validate_document
from schemas.errors import SpecError
from schemas.storyboard import MAX_MATRIX_FRAMES, parse_template


def document(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "matrix",
        "characters": [{"id": "ana", "references": ["a.jpg"]}],
        "matrix": {
            "market": [{"id": "fr", "text": "in Paris"}, {"id": "jp", "text": "in Tokyo"}],
            "product": ["latte", "Oat Milk"],
        },
        "scenes": [
            {"id": "s1", "prompt": "Ana drinks a {product} {market}", "characters": ["ana"]},
            {"id": "s2", "prompt": "a {product} cup", "axes": ["product"]},
        ],
    }
    doc.update(changes)
    return doc


def spec_error(doc: dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as caught:
        validate_document(doc)
    return caught.value


def test_string_values_get_slug_ids() -> None:
    storyboard = validate_document(document())

    assert storyboard.matrix is not None
    product = storyboard.matrix["product"]
    assert [(v.id, v.text) for v in product] == [("latte", "latte"), ("oat-milk", "Oat Milk")]


def test_value_without_text_uses_id() -> None:
    doc = document()
    doc["matrix"]["market"] = [{"id": "fr"}]

    storyboard = validate_document(doc)

    assert storyboard.matrix is not None
    assert storyboard.matrix["market"][0].text == "fr"


def test_template_parts_and_escapes() -> None:
    parts = parse_template("a {product} {market.id} {{literal}} {market.text}")

    assert parts == [
        "a ",
        ("product", "text"),
        " ",
        ("market", "id"),
        " {literal} ",
        ("market", "text"),
    ]


def test_unknown_placeholder_names_prompt_and_placeholder() -> None:
    doc = document()
    doc["scenes"][0]["prompt"] = "Ana in {city}"

    error = spec_error(doc)

    assert error.field == "scenes[0].prompt"
    assert "{city}" in str(error)
    assert "market, product" in str(error)


def test_unknown_placeholder_in_edit_names_the_edit() -> None:
    doc = document()
    doc["scenes"][0]["edits"] = ["keep it", "now {flavour}"]

    error = spec_error(doc)

    assert error.field == "scenes[0].edits[1]"
    assert "{flavour}" in str(error)


def test_placeholder_of_axis_outside_scene_axes_is_rejected() -> None:
    doc = document()
    doc["scenes"][1]["prompt"] = "a {product} cup {market}"

    error = spec_error(doc)

    assert error.field == "scenes[1].prompt"
    assert "scenes[1].axes" in str(error)


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a { b", "unmatched '{'"),
        ("a } b", "unmatched '}'"),
        ("a {market.city}", "invalid placeholder '{market.city}'"),
        ("a {}", "invalid placeholder '{}'"),
        ("a {Market}", "invalid placeholder '{Market}'"),
    ],
)
def test_malformed_placeholders_are_rejected(prompt: str, expected: str) -> None:
    doc = document()
    doc["scenes"][0]["prompt"] = prompt

    error = spec_error(doc)

    assert error.field == "scenes[0].prompt"
    assert expected in str(error)


def test_duplicate_value_ids_are_rejected() -> None:
    doc = document()
    doc["matrix"]["product"] = ["latte", "Latte"]

    error = spec_error(doc)

    assert error.field == "matrix.product[1].id"
    assert "duplicate value id 'latte'" in str(error)


def test_value_without_letters_needs_an_id() -> None:
    doc = document()
    doc["matrix"]["product"] = ["latte", "!!!"]

    error = spec_error(doc)

    assert error.field == "matrix.product[1]"
    assert "{id: ..., text: ...}" in str(error)


def test_unknown_scene_axis_is_rejected() -> None:
    doc = document()
    doc["scenes"][1]["axes"] = ["size"]

    error = spec_error(doc)

    assert error.field == "scenes[1].axes[0]"
    assert "unknown axis 'size'" in str(error)


def test_axes_without_matrix_are_rejected() -> None:
    doc = document()
    del doc["matrix"]
    doc["scenes"][0]["prompt"] = "plain"

    error = spec_error(doc)

    assert error.field == "scenes[1].axes"


def test_braces_without_matrix_stay_literal() -> None:
    doc = document()
    del doc["matrix"]
    del doc["scenes"][1]["axes"]

    storyboard = validate_document(doc)

    assert storyboard.scenes[0].prompt == "Ana drinks a {product} {market}"


def test_too_many_frames_are_rejected() -> None:
    doc = copy.deepcopy(document())
    doc["matrix"]["market"] = [str(i) for i in range(400)]
    doc["matrix"]["product"] = [f"p{i}" for i in range(300)]

    error = spec_error(doc)

    assert error.field == "matrix"
    assert str(MAX_MATRIX_FRAMES) in str(error)


def test_long_scene_labels_are_rejected() -> None:
    doc = document()
    doc["matrix"] = {f"a{i}": [{"id": "x" * 64, "text": "t"}] for i in range(4)}
    doc["scenes"] = [{"id": "s" * 64, "prompt": "p"}]

    error = spec_error(doc)

    assert error.field == "scenes[0].id"
    assert "324 characters" in str(error)
