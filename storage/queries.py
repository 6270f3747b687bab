"""Asset list queries: filter terms, allow-listed sort keys and cursor pagination.

`build_asset_page_query` is the catalog's main list query. It reads the
`assets` table, with indexed subqueries for characters, storyboards and
review marks, so the database can walk one index and stop after one page.
A character filter in the default order walks `asset_characters` instead,
which carries a copy of each asset's creation time for that purpose.
The catalog then loads the full rows of that page by primary key. Every
value that comes from a user is a bound parameter; the only literals in the
SQL are constants of this module.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, and_, func, or_, select, text
from sqlalchemy.orm import InstrumentedAttribute, Session

from schemas.catalog import AssetRow
from storage.cursors import CursorError, decode_cursor, encode_cursor
from storage.filters import NEEDS_REVIEW, AssetFilters, InvalidQueryError
from storage.models import (
    Asset,
    AssetCharacter,
    ReviewMark,
    Run,
    Storyboard,
)
from storage.reviews import (
    MarkKind,
    asset_rating_is,
    label_kind_is,
)

# Page sizes. The cap bounds the work and the response size of one request,
# and clients read further pages with the cursor.
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
DEFAULT_SORT = "-created_at"
# A character or tag filter that matches at most this many assets drives
# the page query: its asset ids are collected first and their rows read by
# primary key, at about 10 us a row. Above it, the database walks the sort
# index and checks each asset against the filter, which finds a page sooner
# the more assets match. A tag check reads a small partial index. A
# character check reads the primary key of asset_characters, which is as
# large as the table, so a walk filtered by character costs more per row.
# Measured with bench/catalog.py at 1M assets (PostgreSQL 15, 2 cores):
# these limits kept both filters' p95 lowest. A character filter sorted by
# creation time needs neither: it walks its own index (see
# `walks_character_index`).
MAX_CANDIDATES = {"character": 10_000, "tag": 5_000}
# Shortest run or storyboard id prefix that a filter expands.
MIN_ID_PREFIX = 4
FULL_ID = re.compile(r"^[0-9a-f]{32}$")


# Sorting


@dataclass(frozen=True)
class SortKey:
    name: str
    column: InstrumentedAttribute[Any]
    # Type of the value a cursor carries for this key.
    value_type: type
    nullable: bool = False


SORT_KEYS: dict[str, SortKey] = {
    key.name: key
    for key in (
        SortKey("created_at", Asset.created_at, datetime),
        SortKey("score", Asset.score, float, nullable=True),
        SortKey("seed", Asset.seed, int),
        SortKey("scene", Asset.scene_id, str),
        SortKey("id", Asset.id, str),
    )
}


@dataclass(frozen=True)
class SortOrder:
    key: SortKey
    descending: bool

    @property
    def text(self) -> str:
        return f"-{self.key.name}" if self.descending else self.key.name


def parse_sort(text: str) -> SortOrder:
    """Parse `key` or `-key` (descending) against the allow-listed SORT_KEYS."""
    name = text.strip()
    descending = name.startswith("-")
    key = SORT_KEYS.get(name.removeprefix("-"))
    if key is None:
        valid = ", ".join(SORT_KEYS)
        raise InvalidQueryError(
            "sort", text, f"unknown sort key {text!r}; use one of {valid}, with '-' for descending"
        )
    return SortOrder(key, descending)


def check_page_size(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidQueryError(
            "limit",
            limit,
            f"must be between 1 and {MAX_PAGE_SIZE}, got {limit}; "
            "use the cursor to read further pages",
        )
    return limit


# Cursors


@dataclass(frozen=True)
class CursorPosition:
    """The last row of a page: its sort value (None for a NULL score) and id."""

    value: Any
    asset_id: str


def encode_page_cursor(order: SortOrder, filters: AssetFilters, position: CursorPosition) -> str:
    return encode_cursor(order.text, filters.digest(), position.value, position.asset_id)


def decode_page_cursor(text: str, order: SortOrder, filters: AssetFilters) -> CursorPosition:
    """Return the position a cursor holds; raise InvalidQueryError if it is not valid here."""
    try:
        decoded = decode_cursor(text, order.text, filters.digest())
        return CursorPosition(_cursor_value(order.key, decoded.raw_value), decoded.asset_id)
    except CursorError as exc:
        cursor_start = text if len(text) <= 80 else text[:77] + "..."
        raise InvalidQueryError(
            "cursor",
            cursor_start,
            f"{exc}; pass the next_cursor of the previous page unchanged, "
            "or leave the cursor out to start at the first page",
        ) from None


def _cursor_value(key: SortKey, raw: Any) -> Any:
    if raw is None:
        if not key.nullable:
            raise CursorError(f"cursor has no value for sort key {key.name!r}")
        return None
    if key.value_type is datetime:
        try:
            return datetime.fromisoformat(raw).astimezone(UTC)
        except (TypeError, ValueError):
            raise CursorError("cursor has an invalid time") from None
    if key.value_type is float and isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if key.value_type is int and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if key.value_type is str and isinstance(raw, str):
        return raw
    raise CursorError(f"cursor value has the wrong type for sort key {key.name!r}")


# The main list query


def _id_condition(column: InstrumentedAttribute[str], table_id: Any, value: str) -> Any:
    """Match a full id exactly, or every id that starts with a prefix."""
    if FULL_ID.match(value) or len(value) < MIN_ID_PREFIX:
        return column == value
    return column.in_(select(table_id).where(table_id.startswith(value, autoescape=True)))


def filter_conditions(
    filters: AssetFilters, *, skip: Collection[str | None] = ()
) -> list[ColumnElement[bool]]:
    """Return the WHERE terms of `filters`, all with bound parameters.

    `skip` leaves out the terms of candidate filters (character or tag),
    for a query that joins those filters' asset ids instead.
    """
    terms = _origin_terms(filters) + _column_terms(filters)

    # Filters on other tables select asset ids.
    terms += [
        Asset.id.in_(query)
        for name, query in candidate_queries(filters).items()
        if name not in skip
    ]
    if filters.rating is not None:
        terms.append(asset_rating_is(filters.rating))
    return terms


def _origin_terms(filters: AssetFilters) -> list[ColumnElement[bool]]:
    terms: list[ColumnElement[bool]] = []
    if filters.run is not None:
        terms.append(_id_condition(Asset.run_id, Run.id, filters.run))
    if filters.storyboard is not None:
        value = filters.storyboard
        matches = [Storyboard.id == value, Storyboard.name == value]
        if len(value) >= MIN_ID_PREFIX and not FULL_ID.match(value):
            matches.append(Storyboard.id.startswith(value, autoescape=True))
        terms.append(Asset.storyboard_id.in_(select(Storyboard.id).where(or_(*matches))))
    if filters.scene is not None:
        terms.append(Asset.scene_id == filters.scene)
    return terms


def _column_terms(filters: AssetFilters) -> list[ColumnElement[bool]]:
    terms: list[ColumnElement[bool]] = []
    if filters.verdict == NEEDS_REVIEW:
        terms.append(Asset.state == NEEDS_REVIEW)
    elif filters.verdict is not None:
        terms.append(Asset.verdict == filters.verdict)
    if filters.min_score is not None:
        terms.append(Asset.score >= filters.min_score)
    if filters.max_score is not None:
        terms.append(Asset.score <= filters.max_score)

    if filters.backend is not None:
        terms.append(Asset.backend == filters.backend)
    if filters.model is not None:
        terms.append(Asset.model == filters.model)
    if filters.seed is not None:
        terms.append(Asset.seed == filters.seed)

    if filters.since is not None:
        terms.append(Asset.created_at >= filters.since)
    if filters.until is not None:
        terms.append(Asset.created_at < filters.until)
    if filters.q is not None:
        terms.append(Asset.prompt.icontains(filters.q, autoescape=True))
    return terms


def candidate_queries(filters: AssetFilters) -> dict[str, Select[Any]]:
    """Return the asset id queries of the filters on other tables, by filter name."""
    queries: dict[str, Select[Any]] = {}
    if filters.character is not None:
        queries["character"] = select(AssetCharacter.asset_id).where(
            AssetCharacter.character_id == filters.character
        )
    if filters.tag is not None:
        queries["tag"] = select(ReviewMark.asset_id).where(
            label_kind_is(MarkKind.TAG), ReviewMark.value == filters.tag
        )
    return queries


def walks_character_index(filters: AssetFilters, order: SortOrder) -> bool:
    """Return whether the page query reads a character's assets in creation order.

    Each asset_characters row carries its asset's creation time, so the
    index (character_id, created_at, asset_id) lists one character's assets
    in the default order and a page is one index range, however many
    assets the character has.
    """
    return filters.character is not None and order.key.name == "created_at"


def choose_candidates(
    session: Session, filters: AssetFilters, *, exclude: str | None = None
) -> str | None:
    """Return the name of the most selective candidate filter that matches few enough assets.

    None means that no character or tag filter other than `exclude` matches
    at most its MAX_CANDIDATES assets. The counts stop one above that limit,
    so each costs at most that many index entries.
    """
    best: tuple[int, str] | None = None
    for name, query in candidate_queries(filters).items():
        if name == exclude:
            continue
        limit = MAX_CANDIDATES[name]
        capped = query.limit(limit + 1).subquery()
        count = session.scalar(select(func.count()).select_from(capped)) or 0
        if count <= limit and (best is None or count < best[0]):
            best = (count, name)
    return best[1] if best is not None else None


def build_asset_page_query(
    filters: AssetFilters,
    order: SortOrder,
    after: CursorPosition | None,
    limit: int,
    *,
    null_segment: bool = False,
    candidates: str | None = None,
) -> Select[str, Any]:
    """Select (id, sort value) of up to `limit` assets that follow `after` in `order`.

    Rows whose sort value is NULL (unscored assets, for the score key) come
    after all others in both directions. They form a separate segment,
    ordered by id, that the caller reads with `null_segment=True` once the
    non-NULL rows run out. Splitting keeps each part an index range scan.
    `candidates` names a character or tag filter (see `choose_candidates`)
    whose asset ids the query collects first, so the database reads only
    those rows instead of walking the sort index.
    """
    column: InstrumentedAttribute[Any] = order.key.column
    id_column: InstrumentedAttribute[Any] = Asset.id
    if walks_character_index(filters, order):
        if candidates == "character":
            raise ValueError(
                "candidates: 'character' is invalid for a character filter sorted by "
                "created_at, which walks its own index; pass candidates=None"
            )
        # asset_characters has one row per asset and character, so the join
        # adds no duplicates.
        column, id_column = AssetCharacter.created_at, AssetCharacter.asset_id
        query = (
            select(id_column, column)
            .join(Asset, Asset.id == AssetCharacter.asset_id)
            .where(
                AssetCharacter.character_id == filters.character,
                *filter_conditions(filters, skip=("character", candidates)),
            )
        )
    else:
        query = select(Asset.id, column).where(*filter_conditions(filters, skip=(candidates,)))
    if candidates is not None:
        # MATERIALIZED keeps PostgreSQL from folding the ids back into the
        # outer query, where it may plan a walk of the whole sort index.
        ids = candidate_queries(filters)[candidates].cte("candidates")
        ids = ids.prefix_with("MATERIALIZED")
        query = query.where(Asset.id.in_(select(ids.c.asset_id)))

    if null_segment:
        query = query.where(column.is_(None))
        if after is not None:
            last_id = after.asset_id
            query = query.where(id_column < last_id if order.descending else id_column > last_id)
        id_order = id_column.desc() if order.descending else id_column.asc()
        return query.order_by(id_order).limit(limit)

    if order.key.nullable:
        query = query.where(column.is_not(None))
    if after is not None:
        # The row value (column, id) must come strictly after the cursor's.
        # Written as `column <= v AND (column < v OR id < i)` so that a plain
        # index on `column` serves it on SQLite and PostgreSQL alike.
        value, last_id = after.value, after.asset_id
        if order.descending:
            query = query.where(and_(column <= value, or_(column < value, id_column < last_id)))
        else:
            query = query.where(and_(column >= value, or_(column > value, id_column > last_id)))
    if order.descending:
        return query.order_by(column.desc(), id_column.desc()).limit(limit)
    return query.order_by(column.asc(), id_column.asc()).limit(limit)


def fetch_page_keys(
    session: Session,
    filters: AssetFilters,
    order: SortOrder,
    after: CursorPosition | None,
    limit: int,
) -> list[CursorPosition]:
    """Return the positions of up to `limit` assets after `after`."""
    if session.get_bind().dialect.name == "postgresql":
        # A page query walks an index and stops after a few hundred rows.
        # Parallel workers would each read thousands of rows ahead and cost
        # their start-up. A rating filter at 100k assets took 62 ms with them
        # and 5 ms without (bench/catalog.py, PostgreSQL 15 on 2 cores).
        # SET LOCAL ends with the transaction.
        session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
    exclude = "character" if walks_character_index(filters, order) else None
    candidates = choose_candidates(session, filters, exclude=exclude)
    in_null_segment = after is not None and after.value is None
    positions: list[CursorPosition] = []
    if not in_null_segment:
        query = build_asset_page_query(filters, order, after, limit, candidates=candidates)
        positions = [CursorPosition(value, asset_id) for asset_id, value in session.execute(query)]
    if order.key.nullable and len(positions) < limit:
        null_after = after if in_null_segment else None
        query = build_asset_page_query(
            filters,
            order,
            null_after,
            limit - len(positions),
            null_segment=True,
            candidates=candidates,
        )
        positions += [CursorPosition(None, asset_id) for asset_id, _ in session.execute(query)]
    return positions


class AssetPage(BaseModel):
    """One page of assets; `next_cursor` is None on the last page."""

    items: list[AssetRow]
    next_cursor: str | None = None
    sort: str
    limit: int
