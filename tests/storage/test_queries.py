"""Asset queries and review marks on SQLite and PostgreSQL: filters, sorting, cursors, plans."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from servers import postgres_schema

from schemas.errors import NotFoundError
from schemas.records import AttemptState, CharacterScore, FrameScore, FrameState, FrameTask, Verdict
from schemas.storyboard import Backend
from storage import queries
from storage.catalog import Catalog
from storage.filters import AssetFilters, InvalidQueryError, parse_filters
from storage.objects import key_for
from storage.queries import (
    MAX_PAGE_SIZE,
    build_asset_page_query,
    parse_sort,
)
from storage.reviews import InvalidMarkError, MarkKind, Rating, summarize_marks

HOSTILE = [
    "'",
    '"',
    "' OR '1'='1",
    "1' OR '1'='1' --",
    "'; DROP TABLE assets; --",
    "; DROP TABLE assets",
    "%",
    "_",
    "\\",
    "ana' UNION SELECT id FROM runs --",
]


@dataclass(frozen=True)
class Planned:
    scene: str
    characters: tuple[str, ...]
    verdict: Verdict | None
    score: float | None
    state: FrameState = FrameState.ACCEPTED
    backend: Backend = Backend.TINY
    model: str = "tiny-kontext"
    prompt: str = "Ana waves at the camera"


@dataclass
class Seeded:
    storyboard_id: str
    run_ids: list[str]
    # Asset ids in creation order, and what each was planned as.
    assets: list[str]
    plans: dict[str, Planned]
    seeds: dict[str, int]


def make_score(verdict: Verdict, score: float | None, characters: tuple[str, ...]) -> FrameScore:
    scores = [
        CharacterScore(character_id=c, verdict=verdict, score=score, threshold=0.5)
        for c in characters
    ]
    return FrameScore(verdict=verdict, scorer="dlib", characters=scores, faces_found=1)


def add_run(
    catalog: Catalog, storyboard_name: str, spec_sha: str, planned: list[Planned], seed_base: int
) -> tuple[str, str, list[tuple[str, Planned, int]]]:
    storyboard_id = catalog.put_storyboard(storyboard_name, {"name": storyboard_name}, spec_sha)
    tasks = [
        FrameTask(
            key=f"{plan.scene}-{index}",
            storyboard_id=storyboard_id,
            scene_id=plan.scene,
            variant=index,
            prompt=plan.prompt,
            characters=list(plan.characters),
            backend=plan.backend,
            model=plan.model,
            width=64,
            height=64,
            steps=2,
            guidance=2.5,
            seed=seed_base + index,
        )
        for index, plan in enumerate(planned)
    ]
    run_id = catalog.create_run(storyboard_id, tasks, {})
    created = []
    for task, plan in zip(tasks, planned, strict=True):
        attempt_id = catalog.start_attempt(run_id, task.key, 1, task.seed)
        object_key, digest = key_for(f"{run_id}/{task.key}".encode())
        score = make_score(plan.verdict, plan.score, plan.characters) if plan.verdict else None
        catalog.finish_attempt(
            attempt_id, AttemptState.DONE, object_key=object_key, sha256=digest, score=score
        )
        asset_id = catalog.accept_frame(run_id, task.key, attempt_id, plan.state, {})
        created.append((asset_id, plan, task.seed))
    return storyboard_id, run_id, created


def seed_catalog(catalog: Catalog) -> Seeded:
    """Store two storyboards, three runs and 12 assets with a mix of verdicts, scores, models."""
    first = [
        Planned("s1", ("ana",), Verdict.ON_MODEL, 0.91),
        Planned("s1", ("ana",), Verdict.ON_MODEL, 0.91),
        Planned("s2", ("leo",), Verdict.DRIFTED, 0.42, FrameState.NEEDS_REVIEW),
        Planned("s3", ("ana", "leo"), Verdict.ON_MODEL, 0.77),
        Planned("s3", ("ana", "leo"), None, None, prompt="100% Leo_in the RAIN"),
    ]
    second = [
        Planned("s1", ("ana",), Verdict.NO_FACE, None, FrameState.NEEDS_REVIEW),
        Planned("s2", ("leo",), Verdict.ON_MODEL, 0.66, model="black-forest-labs/FLUX.1"),
        Planned("s4", ("mia",), None, None, backend=Backend.DIFFUSERS),
    ]
    third = [
        Planned("intro", ("mia",), Verdict.COPY, 0.99),
        Planned("intro", ("mia",), Verdict.ON_MODEL, 0.55),
        Planned("outro", ("ana", "mia"), None, None),
        Planned("outro", ("ana",), Verdict.MISSING, 0.1),
    ]
    result = Seeded("", [], [], {}, {})
    for name, sha, planned, seed_base in (
        ("coffee", "a" * 64, first, 100),
        ("coffee", "a" * 64, second, 200),
        ("tea", "b" * 64, third, 300),
    ):
        storyboard_id, run_id, created = add_run(catalog, name, sha, planned, seed_base)
        if not result.storyboard_id:
            result.storyboard_id = storyboard_id
        result.run_ids.append(run_id)
        for asset_id, plan, seed in created:
            result.assets.append(asset_id)
            result.plans[asset_id] = plan
            result.seeds[asset_id] = seed
    return result


@pytest.fixture
def seeded(catalog: Catalog) -> Seeded:
    """A seeded catalog of its own, for tests that add review marks."""
    return seed_catalog(catalog)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Catalog, Seeded]]:
    """One seeded catalog per database for the read-only tests of this module."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('queries') / 'catalog.db'}"
        with Catalog(url) as opened:
            opened.upgrade()
            yield opened, seed_catalog(opened)
        return

    with postgres_schema() as url, Catalog(url) as opened:
        opened.upgrade()
        yield opened, seed_catalog(opened)


def ids(catalog: Catalog, **filters: object) -> set[str]:
    page = catalog.query_assets(parse_filters(filters), limit=MAX_PAGE_SIZE)
    assert page.next_cursor is None
    return {asset.id for asset in page.items}


def expected(seeded: Seeded, match: Callable[[Planned], bool]) -> set[str]:
    return {asset_id for asset_id, plan in seeded.plans.items() if match(plan)}


# Filters


def test_no_filters_lists_every_asset_newest_first(shared: tuple[Catalog, Seeded]) -> None:
    catalog, seeded = shared
    page = catalog.query_assets()

    assert [asset.id for asset in page.items] == list(reversed(seeded.assets))
    assert page.next_cursor is None
    assert page.sort == "-created_at"


def test_filter_by_run_and_prefix(shared: tuple[Catalog, Seeded]) -> None:
    catalog, seeded = shared
    run_id = seeded.run_ids[1]
    run_assets = set(seeded.assets[5:8])

    assert ids(catalog, run=run_id) == run_assets
    assert ids(catalog, run=run_id[:8]) == run_assets
    assert ids(catalog, run="f" * 32) == set()


def test_filter_by_storyboard_name_and_id(shared: tuple[Catalog, Seeded]) -> None:
    catalog, seeded = shared
    coffee = set(seeded.assets[:8])

    assert ids(catalog, storyboard="coffee") == coffee
    assert ids(catalog, storyboard=seeded.storyboard_id) == coffee
    assert ids(catalog, storyboard=seeded.storyboard_id[:6]) == coffee
    assert ids(catalog, storyboard="tea") == set(seeded.assets[8:])
    assert ids(catalog, storyboard="juice") == set()


@pytest.mark.parametrize(
    ("filters", "match"),
    [
        ({"scene": "s1"}, lambda p: p.scene == "s1"),
        ({"character": "mia"}, lambda p: "mia" in p.characters),
        ({"character": "leo", "scene": "s3"}, lambda p: "leo" in p.characters and p.scene == "s3"),
        ({"verdict": "on_model"}, lambda p: p.verdict is Verdict.ON_MODEL),
        ({"verdict": "unscored"}, lambda p: p.verdict is None),
        ({"verdict": "needs_review"}, lambda p: p.state is FrameState.NEEDS_REVIEW),
        ({"min_score": 0.6}, lambda p: p.score is not None and p.score >= 0.6),
        ({"max_score": 0.5}, lambda p: p.score is not None and p.score <= 0.5),
        (
            {"min_score": 0.5, "max_score": 0.8},
            lambda p: p.score is not None and 0.5 <= p.score <= 0.8,
        ),
        ({"backend": "diffusers"}, lambda p: p.backend is Backend.DIFFUSERS),
        ({"model": "black-forest-labs/FLUX.1"}, lambda p: p.model == "black-forest-labs/FLUX.1"),
        ({"q": "rain"}, lambda p: "rain" in p.prompt.lower()),
        ({"q": "100%"}, lambda p: "100%" in p.prompt),
        ({"q": "o_i"}, lambda p: "o_i" in p.prompt),
        ({"q": "WAVES"}, lambda p: "waves" in p.prompt.lower()),
    ],
)
def test_filter_matches_planned_assets(
    shared: tuple[Catalog, Seeded], filters: dict[str, object], match: Callable[[Planned], bool]
) -> None:
    catalog, seeded = shared
    assert ids(catalog, **filters) == expected(seeded, match)


def test_filter_by_seed(shared: tuple[Catalog, Seeded]) -> None:
    catalog, seeded = shared
    asset_id = seeded.assets[9]

    assert ids(catalog, seed=seeded.seeds[asset_id]) == {asset_id}
    assert ids(catalog, seed=2**63 - 1) == set()


def test_filter_by_creation_time(shared: tuple[Catalog, Seeded]) -> None:
    catalog, seeded = shared
    created = {asset.id: asset.created_at for asset in catalog.query_assets(limit=100).items}
    middle = created[seeded.assets[6]]

    assert ids(catalog, since=middle) == {a for a, t in created.items() if t >= middle}
    assert ids(catalog, until=middle) == {a for a, t in created.items() if t < middle}
    naive_future = (datetime.now(UTC) + timedelta(days=1)).replace(tzinfo=None).isoformat()
    assert ids(catalog, since=naive_future) == set()
    assert ids(catalog, until=naive_future) == set(seeded.assets)


def test_filter_by_tag_and_latest_rating(catalog: Catalog, seeded: Seeded) -> None:
    first, second, third = seeded.assets[:3]
    catalog.add_review_mark(first, "tag", "hero", "kim")
    catalog.add_review_mark(second, "tag", "hero", "kim")
    catalog.add_review_mark(second, "tag", "cover", "kim")
    catalog.add_review_mark(first, "rating", "approve", "kim")
    catalog.add_review_mark(first, "rating", "reject", "lee")
    catalog.add_review_mark(second, "rating", "approve", "kim")
    catalog.add_review_mark(third, "comment", "approve", "kim")

    assert ids(catalog, tag="hero") == {first, second}
    assert ids(catalog, tag="cover") == {second}
    assert ids(catalog, tag="approve") == set()
    assert ids(catalog, rating="reject") == {first}
    assert ids(catalog, rating="approve") == {second}
    assert ids(catalog, rating="unrated") == set(seeded.assets) - {first, second}
    assert ids(catalog, rating="approve", tag="cover") == {second}


def test_run_ratings_keep_newest(catalog: Catalog, seeded: Seeded) -> None:
    first, second, third = seeded.assets[:3]
    run_of = {asset: catalog.get_asset(asset).run_id for asset in (first, second, third)}
    catalog.add_review_mark(first, "rating", "approve", "kim")
    catalog.add_review_mark(first, "rating", "reject", "lee")
    catalog.add_review_mark(second, "rating", "approve", "kim")
    catalog.add_review_mark(third, "tag", "approve", "kim")
    catalog.add_review_mark(third, "comment", "reject", "kim")

    ratings = {run_id: catalog.run_ratings(run_id) for run_id in seeded.run_ids}

    expected: dict[str, dict[str, str]] = {run_id: {} for run_id in seeded.run_ids}
    expected[run_of[first]][first] = "reject"
    expected[run_of[second]][second] = "approve"
    assert ratings == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("verdict", "great"),
        ("rating", "maybe"),
        ("min_score", "high"),
        ("min_score", "nan"),
        ("max_score", "inf"),
        ("seed", -1),
        ("seed", 2**63),
        ("since", "yesterday"),
        ("scene", ""),
        ("scene", "x" * 256),
        ("q", "a\x00b"),
        ("character", "ana\nleo"),
        ("colour", "red"),
    ],
)
def test_invalid_filter_names_field(field: str, value: object) -> None:
    with pytest.raises(InvalidQueryError) as caught:
        parse_filters({field: value})

    assert caught.value.field == field
    assert field in str(caught.value)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_text_in_every_filter_matches_nothing(
    shared: tuple[Catalog, Seeded], hostile: str
) -> None:
    catalog, seeded = shared
    text_fields = ["run", "storyboard", "scene", "character", "backend", "model", "tag", "q"]
    for field in text_fields:
        found = ids(catalog, **{field: hostile})
        # The prompts contain '%', '_' and no quotes: q matches those literally.
        if field == "q" and hostile in ("%", "_"):
            assert found == expected(seeded, lambda p, h=hostile: h in p.prompt), field
        else:
            assert found == set(), field

    with catalog.engine.connect() as connection:
        count = connection.execute(sa.text("SELECT count(*) FROM assets")).scalar_one()
    assert count == len(seeded.assets)


# Sorting and pagination


def walk(catalog: Catalog, sort: str, limit: int, **filters: object) -> list[str]:
    parsed = parse_filters(filters)
    walked: list[str] = []
    cursor = None
    for _ in range(100):
        page = catalog.query_assets(parsed, sort=sort, limit=limit, cursor=cursor)
        assert len(page.items) <= limit
        walked += [asset.id for asset in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return walked
    raise AssertionError("pagination did not end")


@pytest.mark.parametrize(
    "sort",
    [
        "created_at",
        "-created_at",
        "score",
        "-score",
        "seed",
        "-seed",
        "scene",
        "-scene",
        "id",
        "-id",
    ],
)
@pytest.mark.parametrize("limit", [1, 5])
def test_pagination_visits_every_asset_once_in_order(
    shared: tuple[Catalog, Seeded], sort: str, limit: int
) -> None:
    catalog, seeded = shared
    rows = {asset.id: asset for asset in catalog.query_assets(limit=100).items}
    key = sort.removeprefix("-")
    descending = sort.startswith("-")

    walked = walk(catalog, sort, limit)

    assert len(walked) == len(set(walked)) == len(seeded.assets)
    values = {
        "created_at": lambda a: a.created_at,
        "score": lambda a: a.score,
        "seed": lambda a: a.seed,
        "scene": lambda a: a.scene_id,
        "id": lambda a: a.id,
    }[key]
    scored = [a for a in walked if values(rows[a]) is not None]
    unscored = [a for a in walked if values(rows[a]) is None]
    # Assets without a value (unscored) come after all others in both directions.
    assert walked == scored + unscored
    expected_order = sorted(scored, key=lambda a: (values(rows[a]), a), reverse=descending)
    assert scored == expected_order
    assert unscored == sorted(unscored, reverse=descending)


def test_pagination_with_filters(shared: tuple[Catalog, Seeded]) -> None:
    catalog, seeded = shared
    walked = walk(catalog, "-score", 2, character="ana")

    assert set(walked) == expected(seeded, lambda p: "ana" in p.characters)


@pytest.mark.parametrize("sort", ["-created_at", "score"])
def test_candidate_lookup_does_not_change_results(
    shared: tuple[Catalog, Seeded], monkeypatch: pytest.MonkeyPatch, sort: str
) -> None:
    catalog, seeded = shared
    by_candidates = walk(catalog, sort, 2, character="ana")

    # With no room for candidates, the database walks the sort index instead.
    monkeypatch.setattr(queries, "MAX_CANDIDATES", {"character": 0, "tag": 0})
    by_index_walk = walk(catalog, sort, 2, character="ana")

    assert by_candidates == by_index_walk
    assert set(by_candidates) == expected(seeded, lambda p: "ana" in p.characters)


@pytest.mark.parametrize(
    "sort",
    ["colour", "-", "--score", "score; DROP TABLE assets", "' OR '1'='1", "created_at desc", ""],
)
def test_unknown_sort_key_is_rejected(shared: tuple[Catalog, Seeded], sort: str) -> None:
    catalog = shared[0]
    with pytest.raises(InvalidQueryError, match="sort: unknown sort key"):
        catalog.query_assets(sort=sort)


@pytest.mark.parametrize("limit", [0, -1, MAX_PAGE_SIZE + 1, 10**12])
def test_page_size_outside_range_is_rejected(shared: tuple[Catalog, Seeded], limit: int) -> None:
    catalog = shared[0]
    with pytest.raises(InvalidQueryError, match=f"limit: must be between 1 and {MAX_PAGE_SIZE}"):
        catalog.query_assets(limit=limit)


def tampered(cursor: str) -> str:
    payload, signature = cursor.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["i"] = "0" * 32
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{forged}.{signature}"


def test_invalid_cursors_are_rejected(shared: tuple[Catalog, Seeded]) -> None:
    catalog, seeded = shared
    cursor = catalog.query_assets(limit=2).next_cursor
    assert cursor is not None

    cases = {
        "garbage": "not-a-cursor",
        "truncated": cursor[:-3],
        "tampered": tampered(cursor),
        "injection": "' OR '1'='1",
        "huge": "a" * 5000 + "." + "b",
    }
    for name, bad in cases.items():
        with pytest.raises(InvalidQueryError, match="cursor: ") as caught:
            catalog.query_assets(limit=2, cursor=bad)
        assert caught.value.field == "cursor", name

    with pytest.raises(InvalidQueryError, match="other filters"):
        catalog.query_assets(AssetFilters(scene="s1"), limit=2, cursor=cursor)
    with pytest.raises(InvalidQueryError, match="belongs to sort"):
        catalog.query_assets(sort="seed", limit=2, cursor=cursor)


# Query plans


def explain(catalog: Catalog, query: sa.Select[object]) -> str:
    dialect = catalog.engine.dialect
    sql = str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    with catalog.engine.connect() as connection:
        if dialect.name == "sqlite":
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}").all()
            return "\n".join(str(row[-1]) for row in rows)
        # The test tables are tiny, so PostgreSQL would scan them whatever
        # indexes exist; turning sequential scans off shows which index it uses.
        connection.exec_driver_sql("SET enable_seqscan = off")
        rows = connection.exec_driver_sql(f"EXPLAIN {sql}").all()
        return "\n".join(str(row[0]) for row in rows)


# (filters, sort, index SQLite uses, part of the index name PostgreSQL uses)
PLANS = [
    ({}, "-created_at", "ix_assets_created_at", "created_at"),
    ({"run": "a" * 32}, "-created_at", "ix_assets_run_id_created_at", "ix_assets_run_id"),
    ({"scene": "s1"}, "-created_at", "ix_assets_scene_id_created_at", "ix_assets_scene_id"),
    ({"verdict": "needs_review"}, "-created_at", "ix_assets_state_created_at", "ix_assets_state"),
    ({"verdict": "drifted"}, "-created_at", "ix_assets_verdict_created_at", "ix_assets_verdict"),
    ({"storyboard": "coffee"}, "-created_at", "ix_assets_storyboard_id_created_at", "storyboard"),
    ({"seed": 7}, "-created_at", "ix_assets_seed", "ix_assets_seed"),
    ({}, "-score", "ix_assets_score", "ix_assets_score"),
    ({"tag": "hero"}, "-created_at", "ix_review_marks_kind_value", "ix_review_marks_kind_value"),
    (
        {"character": "ana"},
        "-created_at",
        "ix_asset_characters_character_id_created_at",
        "ix_asset_characters_character_id_created_at",
    ),
    (
        {"character": "ana", "verdict": "on_model"},
        "-created_at",
        "ix_asset_characters_character_id_created_at",
        "ix_asset_characters_character_id_created_at",
    ),
]


@pytest.mark.parametrize(("filters", "sort", "sqlite_index", "postgres_index"), PLANS)
def test_list_query_plan_uses_index(
    shared: tuple[Catalog, Seeded],
    filters: dict[str, object],
    sort: str,
    sqlite_index: str,
    postgres_index: str,
) -> None:
    catalog = shared[0]
    query = build_asset_page_query(parse_filters(filters), parse_sort(sort), None, 50)

    plan = explain(catalog, query)

    if catalog.engine.dialect.name == "sqlite":
        assert re.search(rf"INDEX {sqlite_index}\b", plan), plan
        assert not re.search(r"SCAN assets$", plan, re.MULTILINE), plan
    else:
        assert postgres_index in plan, plan
        assert "Seq Scan on assets" not in plan, plan


@pytest.mark.parametrize("filters", [{}, {"verdict": "on_model"}, {"tag": "hero"}])
def test_character_walk_needs_no_sort(
    shared: tuple[Catalog, Seeded], filters: dict[str, object]
) -> None:
    catalog = shared[0]
    query = build_asset_page_query(
        parse_filters({"character": "ana", **filters}), parse_sort("-created_at"), None, 50
    )

    plan = explain(catalog, query)

    # The index lists one character's assets newest first, so the database
    # stops after one page instead of sorting every asset of the character.
    assert "ix_asset_characters_character_id_created_at" in plan, plan
    assert "TEMP B-TREE FOR ORDER BY" not in plan, plan
    assert not re.search(r"^\s*(->\s*)?(Incremental )?Sort\b", plan, re.MULTILINE), plan


def test_character_walk_rejects_candidates() -> None:
    with pytest.raises(ValueError, match="candidates: 'character' is invalid"):
        build_asset_page_query(
            parse_filters({"character": "ana"}),
            parse_sort("-created_at"),
            None,
            50,
            candidates="character",
        )


def test_candidate_ids_come_first(shared: tuple[Catalog, Seeded]) -> None:
    catalog = shared[0]
    query = build_asset_page_query(
        parse_filters({"character": "ana", "verdict": "on_model"}),
        parse_sort("-score"),
        None,
        50,
        candidates="character",
    )

    plan = explain(catalog, query)

    # How the ids meet the assets depends on table statistics, which a test
    # table lacks; the ids themselves come from the covering index.
    assert "ix_asset_characters_character_id_created_at" in plan, plan
    if catalog.engine.dialect.name == "sqlite":
        assert "MATERIALIZE candidates" in plan, plan
    else:
        assert "CTE candidates" in plan, plan
    assert not re.search(r"SCAN assets$|Seq Scan on assets", plan, re.MULTILINE), plan


# Review marks


def test_review_marks_are_listed_and_summarized(catalog: Catalog, seeded: Seeded) -> None:
    asset_id = seeded.assets[0]
    catalog.add_review_mark(asset_id, "tag", " hero ", "kim")
    catalog.add_review_mark(asset_id[:8], "rating", "APPROVE", "kim")
    catalog.add_review_mark(asset_id, "comment", "Hair colour is off.\nRedo?", "lee")
    catalog.add_review_mark(asset_id, "rating", "reject", "lee")

    marks = catalog.list_review_marks(asset_id)

    assert [(m.kind, m.value, m.author) for m in marks] == [
        (MarkKind.TAG, "hero", "kim"),
        (MarkKind.RATING, "approve", "kim"),
        (MarkKind.COMMENT, "Hair colour is off.\nRedo?", "lee"),
        (MarkKind.RATING, "reject", "lee"),
    ]
    assert all(m.asset_id == asset_id for m in marks)
    assert marks[0].created_at.tzinfo is not None
    summary = summarize_marks(marks)
    assert summary.tags == ["hero"]
    assert summary.rating is Rating.REJECT
    assert summary.comments == 1
    assert catalog.list_review_marks(seeded.assets[1]) == []


def test_same_tag_twice_is_one_mark(catalog: Catalog, seeded: Seeded) -> None:
    first = catalog.add_review_mark(seeded.assets[0], "tag", "hero", "kim")
    second = catalog.add_review_mark(seeded.assets[0], "tag", "hero", "lee")

    assert second.id == first.id
    assert len(catalog.list_review_marks(seeded.assets[0])) == 1


def test_long_comment_is_stored(catalog: Catalog, seeded: Seeded) -> None:
    # Longer than a PostgreSQL B-tree entry may be: comments stay out of the value index.
    text = "The left hand has six fingers. " * 120

    mark = catalog.add_review_mark(seeded.assets[0], "comment", text[:4000], "kim")

    assert catalog.list_review_marks(seeded.assets[0])[0].value == mark.value


@pytest.mark.parametrize(
    ("kind", "value", "author", "field"),
    [
        ("star", "5", "kim", "kind"),
        ("tag", "two words", "kim", "tag"),
        ("tag", "", "kim", "tag"),
        ("tag", "x" * 65, "kim", "tag"),
        ("rating", "maybe", "kim", "rating"),
        ("comment", "", "kim", "comment"),
        ("comment", "x" * 4001, "kim", "comment"),
        ("comment", "bell\x07", "kim", "comment"),
        ("tag", "hero", "", "author"),
        ("tag", "hero", "a\x00b", "author"),
    ],
)
def test_invalid_review_mark_is_rejected(
    catalog: Catalog, seeded: Seeded, kind: str, value: str, author: str, field: str
) -> None:
    with pytest.raises(InvalidMarkError) as caught:
        catalog.add_review_mark(seeded.assets[0], kind, value, author)

    assert caught.value.field == field
    assert catalog.list_review_marks(seeded.assets[0]) == []


def test_review_mark_on_unknown_asset(catalog: Catalog) -> None:
    with pytest.raises(NotFoundError, match="asset 'feedbeef' not found"):
        catalog.add_review_mark("feedbeef", "tag", "hero", "kim")
