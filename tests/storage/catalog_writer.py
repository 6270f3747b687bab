"""A catalog writer process for the concurrency tests.

Usage: python catalog_writer.py URL RUN_ID WORKER WORKERS GATE

Creates GATE.WORKER once imported, then waits for the file GATE so that all
workers start writing at the same moment.

Works through every frame whose plan position modulo WORKERS equals WORKER:
reads the frame list, starts an attempt, records its image and accepts the
frame. It also stores one storyboard that every worker stores, and prints a
JSON line with that storyboard's id and the asset ids it created.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from schemas.records import AttemptState, FrameState
from storage.catalog import Catalog


def main() -> None:
    url, run_id, worker, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    gate = Path(sys.argv[5])
    Path(f"{gate}.{worker}").touch()
    deadline = time.monotonic() + 60
    while not gate.exists():
        if time.monotonic() > deadline:
            sys.exit(f"worker {worker}: gate file {gate} did not appear within 60 s")
        time.sleep(0.01)

    catalog = Catalog(url)
    shared_storyboard = catalog.put_storyboard("shared", {"n": 1}, "f" * 64)

    assets = []
    frames = catalog.list_frames(run_id)
    for position, frame in enumerate(frames):
        if position % workers != worker:
            continue
        catalog.list_frames(run_id, states=[FrameState.PENDING])
        attempt_id = catalog.start_attempt(run_id, frame.key, 1, frame.seed)
        digest = hashlib.sha256(frame.key.encode()).hexdigest()
        catalog.finish_attempt(
            attempt_id,
            AttemptState.DONE,
            object_key=f"sha256/{digest[:2]}/{digest}.png",
            sha256=digest,
        )
        catalog.run_summary(run_id)
        assets.append(catalog.accept_frame(run_id, frame.key, attempt_id, FrameState.ACCEPTED, {}))
    catalog.close()
    print(json.dumps({"storyboard": shared_storyboard, "assets": assets}))


if __name__ == "__main__":
    main()
