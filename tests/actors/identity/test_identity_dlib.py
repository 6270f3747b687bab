"""The dlib scorer on real photos: same person, different people, no face, several faces."""

from __future__ import annotations

import itertools

import pytest
from identity_photos import (
    NO_FACE,
    PEOPLE,
    SAME_PERSON,
    person,
    photo_bytes,
    reference,
    side_by_side,
)

from actors.identity import IdentityWorker
from schemas.errors import BackendLoadError
from schemas.records import ReferenceImage, Verdict

DIFFERENT_PEOPLE = [
    (first, second)
    for first, second in itertools.combinations(PEOPLE, 2)
    if person(first) != person(second)
]


@pytest.mark.parametrize(("reference_name", "frame_name"), SAME_PERSON)
def test_same_person_years_apart_is_on_model(
    dlib_worker: IdentityWorker, reference_name: str, frame_name: str
) -> None:
    result = dlib_worker.score(photo_bytes(frame_name), {"c": [reference(reference_name)]}, {})

    assert result.verdict == Verdict.ON_MODEL, result.detail
    assert result.faces_found == 1
    character = result.characters[0]
    assert character.verdict == Verdict.ON_MODEL
    assert character.score is not None
    assert character.score >= dlib_worker.default_threshold
    assert character.threshold == dlib_worker.default_threshold


@pytest.mark.parametrize(("reference_name", "frame_name"), DIFFERENT_PEOPLE)
def test_different_people_drift(
    dlib_worker: IdentityWorker, reference_name: str, frame_name: str
) -> None:
    result = dlib_worker.score(photo_bytes(frame_name), {"c": [reference(reference_name)]}, {})

    assert result.verdict == Verdict.DRIFTED, result.detail
    character = result.characters[0]
    assert character.score is not None
    assert character.score < dlib_worker.default_threshold
    assert "below the threshold" in character.detail


def test_default_threshold_is_dlib_distance_0_6(dlib_worker: IdentityWorker) -> None:
    assert dlib_worker.default_threshold == pytest.approx(0.4)


@pytest.mark.parametrize("frame_name", NO_FACE)
def test_photo_without_face_is_no_face(dlib_worker: IdentityWorker, frame_name: str) -> None:
    result = dlib_worker.score(photo_bytes(frame_name), {"c": [reference("sunak.jpg")]}, {})

    assert result.verdict == Verdict.NO_FACE
    assert result.faces_found == 0
    assert result.characters[0].verdict == Verdict.NO_FACE
    assert result.characters[0].score is None


def test_frame_without_characters_is_unscored(dlib_worker: IdentityWorker) -> None:
    result = dlib_worker.score(photo_bytes("sunak.jpg"), {}, {})

    assert result.verdict == Verdict.UNSCORED
    assert result.detail == "no characters to check"
    assert result.characters == []


def test_character_without_face_references_is_unscored(dlib_worker: IdentityWorker) -> None:
    characters = {"cat": [reference("cat_chelsea.png"), reference("flower.jpg")]}

    result = dlib_worker.score(photo_bytes("sunak.jpg"), characters, {})

    assert result.verdict == Verdict.UNSCORED
    assert result.characters[0].verdict == Verdict.UNSCORED
    assert "no face found in any of its 2 reference image(s)" in result.characters[0].detail


def test_character_without_references_is_unscored(dlib_worker: IdentityWorker) -> None:
    result = dlib_worker.score(photo_bytes("sunak.jpg"), {"nobody": []}, {})

    assert result.verdict == Verdict.UNSCORED
    assert result.characters[0].detail == "no reference images"


def test_faceless_reference_is_skipped(
    dlib_worker: IdentityWorker,
) -> None:
    characters = {"ardern": [reference("flower.jpg"), reference("ardern_2018.jpg")]}

    result = dlib_worker.score(photo_bytes("ardern_2022.jpg"), characters, {})

    assert result.verdict == Verdict.ON_MODEL, result.detail


def test_best_reference_counts(dlib_worker: IdentityWorker) -> None:
    characters = {"macron": [reference("sunak.jpg"), reference("macron_2014.jpg")]}

    result = dlib_worker.score(photo_bytes("macron_2025.jpg"), characters, {})

    assert result.verdict == Verdict.ON_MODEL, result.detail


def test_per_character_threshold_overrides_default(dlib_worker: IdentityWorker) -> None:
    frame = photo_bytes("ardern_2022.jpg")
    characters = {"ardern": [reference("ardern_2018.jpg")]}

    strict = dlib_worker.score(frame, characters, {"ardern": 0.95})
    other_character = dlib_worker.score(frame, characters, {"someone-else": 0.95})

    assert strict.verdict == Verdict.DRIFTED
    assert strict.characters[0].threshold == 0.95
    assert other_character.verdict == Verdict.ON_MODEL


def test_threshold_outside_unit_interval_is_rejected(dlib_worker: IdentityWorker) -> None:
    characters = {"ardern": [reference("ardern_2018.jpg")]}

    with pytest.raises(ValueError, match=r"thresholds\['ardern'\]: 1.5 is outside \[0, 1\]"):
        dlib_worker.score(photo_bytes("ardern_2022.jpg"), characters, {"ardern": 1.5})


def test_undecodable_frame_raises_value_error(dlib_worker: IdentityWorker) -> None:
    with pytest.raises(ValueError, match="frame: cannot decode image"):
        dlib_worker.score(b"not an image", {"c": [reference("sunak.jpg")]}, {})


def test_two_people_side_by_side_match_their_characters(dlib_worker: IdentityWorker) -> None:
    frame, split = side_by_side("ardern_2022.jpg", "macron_2025.jpg")
    characters = {
        "ardern": [reference("ardern_2018.jpg")],
        "macron": [reference("macron_2014.jpg")],
    }

    result = dlib_worker.score(frame, characters, {})

    assert result.verdict == Verdict.ON_MODEL, result.detail
    assert result.faces_found == 2
    by_id = {character.character_id: character for character in result.characters}
    assert [character.character_id for character in result.characters] == ["ardern", "macron"]
    assert by_id["ardern"].box is not None
    assert by_id["macron"].box is not None
    assert by_id["ardern"].box[2] <= split
    assert by_id["macron"].box[0] >= split


def test_swapped_character_order_assigns_same_faces(dlib_worker: IdentityWorker) -> None:
    frame, split = side_by_side("ardern_2022.jpg", "macron_2025.jpg")
    characters = {
        "macron": [reference("macron_2014.jpg")],
        "ardern": [reference("ardern_2018.jpg")],
    }

    result = dlib_worker.score(frame, characters, {})

    assert result.verdict == Verdict.ON_MODEL, result.detail
    assert [character.character_id for character in result.characters] == ["macron", "ardern"]
    by_id = {character.character_id: character for character in result.characters}
    assert by_id["macron"].box is not None
    assert by_id["ardern"].box is not None
    assert by_id["macron"].box[0] >= split
    assert by_id["ardern"].box[2] <= split


def test_wrong_second_person_drifts_only_that_character(dlib_worker: IdentityWorker) -> None:
    frame, _ = side_by_side("ardern_2022.jpg", "sunak.jpg")
    characters = {
        "ardern": [reference("ardern_2018.jpg")],
        "macron": [reference("macron_2014.jpg")],
    }

    result = dlib_worker.score(frame, characters, {})

    assert result.verdict == Verdict.DRIFTED
    by_id = {character.character_id: character for character in result.characters}
    assert by_id["ardern"].verdict == Verdict.ON_MODEL
    assert by_id["macron"].verdict == Verdict.DRIFTED
    assert result.score == by_id["macron"].score


def test_character_without_a_face_left_is_missing(dlib_worker: IdentityWorker) -> None:
    characters = {
        "ardern": [reference("ardern_2018.jpg")],
        "macron": [reference("macron_2014.jpg")],
    }

    result = dlib_worker.score(photo_bytes("ardern_2022.jpg"), characters, {})

    assert result.verdict == Verdict.MISSING
    by_id = {character.character_id: character for character in result.characters}
    assert by_id["ardern"].verdict == Verdict.ON_MODEL
    assert by_id["macron"].verdict == Verdict.MISSING
    assert by_id["macron"].score is None
    assert "1 face(s) found for 2 characters" in by_id["macron"].detail


def test_gallery_embeds_each_reference_once(
    fresh_dlib_worker: IdentityWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = fresh_dlib_worker.backend
    embedded_batches: list[int] = []
    real_embed = backend.embed

    def counting_embed(chips):  # type: ignore[no-untyped-def]
        embedded_batches.append(len(chips))
        return real_embed(chips)

    monkeypatch.setattr(backend, "embed", counting_embed)
    characters = {"ardern": [reference("ardern_2018.jpg")]}

    first = fresh_dlib_worker.score(photo_bytes("ardern_2022.jpg"), characters, {})
    second = fresh_dlib_worker.score(photo_bytes("ardern_2022.jpg"), characters, {})

    # One call for the reference, then one per frame.
    assert len(embedded_batches) == 3
    assert fresh_dlib_worker.info()["references_embedded"] == 1
    assert fresh_dlib_worker.info()["references_cached"] == 1
    assert first.characters[0].score == second.characters[0].score


def test_gallery_shares_entries_by_sha256(fresh_dlib_worker: IdentityWorker) -> None:
    data = photo_bytes("ardern_2018.jpg")
    same_bytes_other_object = ReferenceImage(sha256=reference("ardern_2018.jpg").sha256, png=data)
    first = reference("ardern_2018.jpg")

    fresh_dlib_worker.score(photo_bytes("ardern_2022.jpg"), {"a": [first]}, {})
    fresh_dlib_worker.score(photo_bytes("sunak.jpg"), {"b": [same_bytes_other_object]}, {})

    assert fresh_dlib_worker.info()["references_embedded"] == 1


def test_unknown_scorer_raises_backend_load_error() -> None:
    with pytest.raises(BackendLoadError, match="unknown scorer 'arcface'; choose one of"):
        IdentityWorker("arcface")
