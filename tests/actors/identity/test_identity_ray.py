"""IdentityWorker inside a real Ray actor, as the runner uses it."""

from __future__ import annotations

from identity_photos import photo_bytes, reference

from actors.identity import IdentityWorker
from schemas.records import FrameScore, Verdict


def test_worker_scores_inside_ray_actor(ray_local: None) -> None:
    import ray

    actor = ray.remote(IdentityWorker).options(num_cpus=1).remote("dlib")
    characters = {"ardern": [reference("ardern_2018.jpg")]}
    try:
        first = ray.get(actor.score.remote(photo_bytes("ardern_2022.jpg"), characters, {}))
        second = ray.get(actor.score.remote(photo_bytes("sunak.jpg"), characters, {}))
        info = ray.get(actor.info.remote())
    finally:
        ray.kill(actor)

    assert isinstance(first, FrameScore)
    assert first.verdict == Verdict.ON_MODEL
    assert second.verdict == Verdict.DRIFTED
    # The actor kept the reference embedding between the two calls.
    assert info["references_embedded"] == 1
