"""Time the asset catalog's common queries at 100k and 1M assets, on SQLite and PostgreSQL.

Usage:
    python bench/catalog.py [--sizes 100000,1000000] [--database-url URL] [--repeats 40]
        [--skip-sqlite] [--keep]

Each size gets a fresh catalog, migrated to the current schema and seeded
by bulk inserts (COPY on PostgreSQL). The mix is meant to be realistic:
many storyboards with several runs each, two to four characters per
storyboard, one to four attempts per frame, verdicts and scores as an
identity gate produces them, and review marks on a few percent of the
assets. Then every query below
runs `--repeats` times through `Catalog.query_assets`, the code path of the
CLI and the HTTP API, with parameters drawn at random per repetition, and
p50/p95 in milliseconds are printed. SQLite uses a file in a temporary
folder; PostgreSQL a new schema in the database of `--database-url`,
dropped at the end unless `--keep` is given. The PostgreSQL catalog is
ANALYZEd after loading, as autovacuum would do; SQLite is measured without
ANALYZE, as a fresh installation runs.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from storage.catalog import Catalog  # noqa: E402
from storage.filters import AssetFilters  # noqa: E402

# The mix. Assets per run and runs per storyboard are typical of a campaign
# with a few dozen scenes and variants, submitted a few times.
ASSETS_PER_RUN = 100
RUNS_PER_STORYBOARD = 4
CHARACTER_POOL = [f"char{i:03d}" for i in range(300)]
VERDICTS = [
    ("on_model", 0.70),
    ("unscored", 0.15),
    ("drifted", 0.05),
    ("no_face", 0.05),
    ("missing", 0.04),
    ("copy", 0.01),
]
NEEDS_REVIEW_SHARE = 0.08
TAG_SHARE, RATING_SHARE, COMMENT_SHARE = 0.05, 0.10, 0.02
TAGS = ["hero", "cover", "print", "social", "retake", "alt"]
ACTIONS = [
    "drinks coffee",
    "reads a map",
    "opens an umbrella",
    "waves",
    "rides a bike",
    "laughs",
    "points at the sky",
    "holds a cup",
    "runs",
    "sits on a bench",
]
PLACES = [
    "a cafe",
    "the beach",
    "a rainy street",
    "a library",
    "the park",
    "a train",
    "a rooftop",
    "a market",
    "the office",
    "a kitchen",
]
BACKENDS = [
    ("diffusers", "black-forest-labs/FLUX.1-Kontext-dev", 0.8),
    ("tiny", "tiny", 0.1),
    ("bfl", "flux-kontext-pro", 0.1),
]
SPAN = timedelta(days=180)
CHUNK = 50_000


def hex_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def pick_weighted(rng: random.Random, options: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    roll = rng.random()
    for option in options:
        roll -= option[-1]
        if roll <= 0:
            return option
    return options[-1]


@dataclass
class Seed:
    """Values the queries draw their parameters from."""

    run_ids: list[str] = field(default_factory=list)
    storyboard_names: list[str] = field(default_factory=list)
    characters: list[str] = field(default_factory=list)
    scenes: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)


# Row generation


Rows = list[tuple[Any, ...]]


def generate(size: int, rng: random.Random, seed: Seed) -> dict[str, Iterator[Any]]:
    """Return chunked row tuples per table, in insertion order, for `size` assets."""
    runs = max(1, size // ASSETS_PER_RUN)
    storyboards = max(1, runs // RUNS_PER_STORYBOARD)
    step = SPAN / size
    sb_rows = []
    sb_chars: list[list[str]] = []
    for index in range(storyboards):
        name = f"campaign-{index:05d}"
        seed.storyboard_names.append(name)
        sb_rows.append((hex_id(rng), name, f"{rng.getrandbits(256):064x}", "{}", seed.start))
        sb_chars.append(rng.sample(CHARACTER_POOL, rng.randint(2, 4)))
    run_rows = []
    run_storyboard = []
    for index in range(runs):
        storyboard = index % storyboards
        run_id = hex_id(rng)
        seed.run_ids.append(run_id)
        run_storyboard.append(storyboard)
        created = seed.start + step * index * ASSETS_PER_RUN
        run_rows.append(
            (
                run_id,
                sb_rows[storyboard][0],
                "completed",
                "{}",
                ASSETS_PER_RUN,
                None,
                created,
                created,
                created,
                "bench:1",
            )
        )
    seed.characters = sorted({c for chars in sb_chars for c in chars})
    seed.scenes = [f"s{i:02d}" for i in range(40)]

    def frames_and_more() -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
        frames: list[tuple[Any, ...]] = []
        attempts: list[tuple[Any, ...]] = []
        assets: list[tuple[Any, ...]] = []
        characters: list[tuple[Any, ...]] = []
        marks: list[tuple[Any, ...]] = []
        attempt_id = 0
        mark_id = 0
        for index in range(size):
            run = index // ASSETS_PER_RUN if index // ASSETS_PER_RUN < runs else runs - 1
            storyboard = run_storyboard[run]
            frame_id = index + 1
            scene = seed.scenes[rng.randrange(len(seed.scenes))]
            pool = sb_chars[storyboard]
            cast = rng.sample(pool, rng.randint(1, min(3, len(pool))))
            prompt = f"{' and '.join(cast)} {rng.choice(ACTIONS)} in {rng.choice(PLACES)}"
            backend, model, _ = pick_weighted(rng, BACKENDS)
            verdict = pick_weighted(rng, VERDICTS)[0]
            state = "needs_review" if rng.random() < NEEDS_REVIEW_SHARE else "accepted"
            score = None if verdict == "unscored" else round(rng.random(), 4)
            frame_seed = rng.getrandbits(62)
            created = seed.start + step * index + timedelta(microseconds=rng.randrange(1000))
            key = f"{index:064x}"
            frames.append(
                (
                    frame_id,
                    seed.run_ids[run],
                    key,
                    index,
                    scene,
                    0,
                    0,
                    None,
                    prompt,
                    "[]",
                    backend,
                    model,
                    1024,
                    1024,
                    28,
                    2.5,
                    frame_seed,
                    state,
                    None,
                )
            )
            tries = 1 + (rng.random() < 0.3) + (rng.random() < 0.15) + (rng.random() < 0.1)
            for number in range(1, tries + 1):
                attempt_id += 1
                attempts.append(
                    (
                        attempt_id,
                        frame_id,
                        number,
                        frame_seed + number,
                        "done",
                        verdict,
                        score,
                        "[]",
                        None,
                        None,
                        None,
                        4.2,
                        0.3,
                        "node-1",
                        "cuda:0",
                        created,
                        created,
                    )
                )
            object_key = f"sha256/{key[:2]}/{key}.png"
            asset_id = hex_id(rng)
            seed.seeds.append(frame_seed + tries)
            assets.append(
                (
                    asset_id,
                    seed.run_ids[run],
                    sb_rows[storyboard][0],
                    frame_id,
                    attempt_id,
                    scene,
                    0,
                    0,
                    state,
                    verdict,
                    score,
                    "[]",
                    prompt,
                    backend,
                    model,
                    frame_seed + tries,
                    1024,
                    1024,
                    28,
                    2.5,
                    "{}",
                    object_key,
                    key,
                    4.2,
                    0.3,
                    "node-1",
                    "cuda:0",
                    None,
                    created,
                )
            )
            for character in cast:
                characters.append((asset_id, character, verdict, score, created))
            for kind, share, value in (
                ("tag", TAG_SHARE, lambda: rng.choice(TAGS)),
                ("rating", RATING_SHARE, lambda: rng.choice(["approve", "reject"])),
                ("comment", COMMENT_SHARE, lambda: "Hands look wrong; retake with a new seed."),
            ):
                if rng.random() < share:
                    mark_id += 1
                    marks.append((mark_id, asset_id, kind, value(), "reviewer", created))
            if len(assets) >= CHUNK:
                yield from flush(frames, attempts, assets, characters, marks)
        yield from flush(frames, attempts, assets, characters, marks)

    return {"storyboards": iter([sb_rows]), "runs": iter([run_rows]), "rest": frames_and_more()}


CHUNKED_TABLES = ("frames", "attempts", "assets", "asset_characters", "review_marks")


def flush(*tables: Rows) -> Iterator[tuple[str, Rows]]:
    for name, rows in zip(CHUNKED_TABLES, tables, strict=True):
        if rows:
            yield name, list(rows)
            rows.clear()


# Loading


# Column order of the generated tuples; columns not named here keep their defaults.
COLUMNS = {
    "storyboards": "id name spec_sha256 spec_json created_at",
    "runs": "id storyboard_id state options_json frames_total error created_at started_at "
    "finished_at driver",
    "frames": "id run_id key position scene_id edit_step variant parent_key prompt "
    "characters_json backend model width height steps guidance seed state error",
    "attempts": "id frame_id number seed state verdict score scores_json object_key sha256 error "
    "seconds_generate seconds_score node device started_at finished_at",
    "assets": "id run_id storyboard_id frame_id attempt_id scene_id edit_step variant state "
    "verdict score characters_json prompt backend model seed width height steps guidance "
    "reference_hashes_json object_key sha256 seconds_generate seconds_score node device "
    "parent_asset_id created_at",
    "asset_characters": "asset_id character_id verdict score created_at",
    "review_marks": "id asset_id kind value author created_at",
}


def load(catalog: Catalog, size: int, rng: random.Random) -> Seed:
    seed = Seed()
    tables = generate(size, rng, seed)
    engine = catalog.engine
    names = {table: spec.split() for table, spec in COLUMNS.items()}
    chunks: Iterator[tuple[str, list[tuple[Any, ...]]]] = (
        item
        for batch in (
            (("storyboards", rows) for rows in tables["storyboards"]),
            (("runs", rows) for rows in tables["runs"]),
            tables["rest"],
        )
        for item in batch
    )
    raw = engine.raw_connection()
    try:
        if engine.dialect.name == "postgresql":
            with raw.cursor() as cursor:
                for table, rows in chunks:
                    statement = f"COPY {table} ({', '.join(names[table])}) FROM STDIN"
                    with cursor.copy(statement) as copy:
                        for row in rows:
                            copy.write_row(row)
                for table in ("frames", "attempts", "review_marks"):
                    cursor.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT coalesce(max(id), 1) FROM {table}))"
                    )
                cursor.execute("ANALYZE")
        else:
            cursor = raw.cursor()
            cursor.execute("BEGIN")
            for table, rows in chunks:
                marks = ", ".join("?" for _ in names[table])
                cursor.executemany(
                    f"INSERT INTO {table} ({', '.join(names[table])}) VALUES ({marks})",
                    [tuple(sqlite_value(v) for v in row) for row in rows],
                )
            cursor.execute("COMMIT")
            cursor.close()
        raw.commit()
    finally:
        raw.close()
    return seed


def sqlite_value(value: Any) -> Any:
    # The catalog stores UTC datetimes in SQLite as naive ISO text.
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


# Queries


def query_cases(seed: Seed, rng: random.Random, catalog: Catalog) -> dict[str, Callable[[], Any]]:
    def run(
        filters: dict[str, Any],
        sort: str = "-created_at",
        limit: int = 50,
        cursor: str | None = None,
    ) -> Any:
        return catalog.query_assets(AssetFilters(**filters), sort=sort, limit=limit, cursor=cursor)

    def second_page(filters: dict[str, Any], sort: str) -> Callable[[], Any]:
        def query() -> Any:
            first = run(filters, sort)
            return run(filters, sort, cursor=first.next_cursor) if first.next_cursor else first

        return query

    def window() -> dict[str, Any]:
        since = seed.start + SPAN * rng.random() * 0.9
        return {"since": since, "until": since + timedelta(days=2)}

    return {
        "newest 50 (no filter)": lambda: run({}),
        "newest 50, page 2 (cursor)": second_page({}, "-created_at"),
        "run": lambda: run({"run": rng.choice(seed.run_ids)}),
        "storyboard name": lambda: run({"storyboard": rng.choice(seed.storyboard_names)}),
        "character": lambda: run({"character": rng.choice(seed.characters)}),
        "character + on_model": lambda: run(
            {"character": rng.choice(seed.characters), "verdict": "on_model"}
        ),
        "verdict needs_review": lambda: run({"verdict": "needs_review"}),
        "verdict copy (1%)": lambda: run({"verdict": "copy"}),
        "scene + storyboard": lambda: run(
            {"scene": rng.choice(seed.scenes), "storyboard": rng.choice(seed.storyboard_names)}
        ),
        "score 0.4-0.6, sort -score": lambda: run({"min_score": 0.4, "max_score": 0.6}, "-score"),
        "sort -score, page 2": second_page({}, "-score"),
        "backend + model": lambda: run({"backend": "bfl", "model": "flux-kontext-pro"}),
        "seed": lambda: run({"seed": rng.choice(seed.seeds)}),
        "tag": lambda: run({"tag": rng.choice(TAGS)}),
        "rating approve": lambda: run({"rating": "approve"}),
        "time window (2 days)": lambda: run(window()),
        "prompt text (q)": lambda: run({"q": "umbrella"}),
        "prompt text + run": lambda: run({"q": "umbrella", "run": rng.choice(seed.run_ids)}),
        "500 per page": lambda: run({}, limit=500),
    }


def time_queries(
    cases: dict[str, Callable[[], Any]], repeats: int
) -> dict[str, tuple[float, float]]:
    results = {}
    for name, query in cases.items():
        for _ in range(3):
            query()  # warm the cache and the connection pool
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            query()
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
        results[name] = (statistics.median(times), p95)
    return results


# Databases


@contextlib.contextmanager
def sqlite_catalog() -> Iterator[Catalog]:
    with tempfile.TemporaryDirectory(prefix="onmodel-bench-") as folder:
        catalog = Catalog(f"sqlite:///{Path(folder) / 'catalog.db'}")
        try:
            yield catalog
        finally:
            catalog.close()


@contextlib.contextmanager
def postgres_catalog(base_url: str, keep: bool) -> Iterator[Catalog]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base_url)
    with admin.begin() as connection:
        # The name is generated here, never user input.
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    catalog = Catalog(url.render_as_string(hide_password=False))
    try:
        yield catalog
    finally:
        catalog.close()
        if keep:
            print(f"kept schema {schema}")
        else:
            with admin.begin() as connection:
                connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def bench(label: str, catalog: Catalog, size: int, repeats: int) -> None:
    rng = random.Random(size)
    catalog.upgrade()
    started = time.perf_counter()
    seed = load(catalog, size, rng)
    loaded = time.perf_counter() - started
    print(f"\n## {label}, {size:,} assets (seeded in {loaded:.0f} s)\n")
    print("| query | p50 ms | p95 ms |\n|---|---:|---:|")
    for name, (p50, p95) in time_queries(query_cases(seed, rng, catalog), repeats).items():
        print(f"| {name} | {p50:.1f} | {p95:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="Comma-separated asset counts.")
    parser.add_argument("--database-url", help="PostgreSQL URL; without it only SQLite runs.")
    parser.add_argument("--repeats", type=int, default=40, help="Timed runs per query.")
    parser.add_argument("--skip-sqlite", action="store_true", help="Only run PostgreSQL.")
    parser.add_argument("--keep", action="store_true", help="Keep the PostgreSQL schemas.")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    for size in sizes:
        if not args.skip_sqlite:
            with sqlite_catalog() as catalog:
                bench("SQLite", catalog, size, args.repeats)
        if args.database_url:
            with postgres_catalog(args.database_url, args.keep) as catalog:
                bench("PostgreSQL", catalog, size, args.repeats)


if __name__ == "__main__":
    main()
