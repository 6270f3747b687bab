"""A scheduled matrix storyboard of 1,000 frames, fired and run with the tiny backend."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from schedule_specs import utc, write_spec

from orchestrator.scheduler import create_schedule, tick
from orchestrator.scheduler_loop import run_fired
from orchestrator.settings import Settings
from orchestrator.spec import load_spec
from schemas.records import RunState
from storage.catalog import Catalog
from storage.objects import ObjectStore

logger = logging.getLogger(__name__)

MARKETS = 25
PRODUCTS = 40


@pytest.mark.slow
def test_scheduled_matrix_1000_frames_completes(
    tmp_path: Path, sqlite_catalog: Catalog, store: ObjectStore, ray_session: None
) -> None:
    catalog = sqlite_catalog
    spec = write_spec(
        tmp_path / "spec",
        matrix={
            "market": [{"id": f"m{i:02d}", "text": f"in city {i}"} for i in range(MARKETS)],
            "product": [f"product {i}" for i in range(PRODUCTS)],
        },
        scenes=[{"id": "s1", "prompt": "Ana holds a {product} {market}", "characters": ["ana"]}],
    )
    settings = Settings(home=tmp_path / "home", actors=1)
    create_schedule(
        catalog,
        store,
        load_spec(spec),
        cron="0 2 * * *",
        timezone="Europe/Berlin",
        now=utc("2025-01-01T00:00"),
    )
    started = time.perf_counter()

    (fire,) = tick(catalog, now=utc("2025-01-01T01:00:30"))
    planned = time.perf_counter()
    assert fire.run_id is not None
    (summary,) = run_fired(settings, catalog, store, [fire.run_id])
    finished = time.perf_counter()

    logger.warning(
        "1000-frame matrix run: plan and insert %.1f s, run %.1f s (%.0f ms per frame)",
        planned - started,
        finished - planned,
        (finished - planned) * 1000 / summary.frames,
    )
    assert summary.state == RunState.COMPLETED
    assert summary.frames == MARKETS * PRODUCTS
    assert summary.accepted == MARKETS * PRODUCTS
    assert summary.failed == 0
    assets = catalog.list_assets(run_id=fire.run_id)
    assert len({a.frame_key for a in assets}) == MARKETS * PRODUCTS
    by_scene = {a.scene_id: a for a in assets}
    assert by_scene["s1.m07.product-12"].prompt.startswith("Ana holds a product 12 in city 7")
    assert {(a.width, a.height) for a in assets} == {(16, 16)}
