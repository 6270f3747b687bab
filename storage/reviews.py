"""Review marks: the tags, ratings and comments that reviewers put on assets.

Besides the checks and rows of marks, this module builds the SQL terms that
the asset queries filter marks with.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, and_, exists, literal_column, select
from sqlalchemy.orm import aliased

from schemas.errors import OnModelError
from storage.models import LABEL_MARK_KINDS, Asset, ReviewMark

MAX_TAG_LENGTH = 64
MAX_COMMENT_LENGTH = 4000
MAX_AUTHOR_LENGTH = 255
# The rating filter's value for assets that no one has rated.
UNRATED = "unrated"


class MarkKind(StrEnum):
    TAG = "tag"
    RATING = "rating"
    COMMENT = "comment"


class Rating(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class InvalidMarkError(OnModelError, ValueError):
    """A review mark with an invalid kind, value or author; names the field and value."""

    def __init__(self, field: str, value: object, message: str) -> None:
        self.field = field
        self.value = value
        self.message = message
        super().__init__(f"{field}: {message}")


class ReviewMarkRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    asset_id: str
    kind: MarkKind
    value: str
    author: str
    created_at: datetime


def review_mark_row(mark: ReviewMark) -> ReviewMarkRow:
    return ReviewMarkRow(
        id=mark.id,
        asset_id=mark.asset_id,
        kind=MarkKind(mark.kind),
        value=mark.value,
        author=mark.author,
        created_at=mark.created_at,
    )


def _has_control(text: str, allow_newlines: bool) -> bool:
    allowed = "\n\r\t" if allow_newlines else ""
    return any((ord(char) < 32 or ord(char) == 127) and char not in allowed for char in text)


def check_mark(kind: str, value: str, author: str) -> tuple[MarkKind, str, str]:
    """Validate a review mark; return (kind, value, author) without surrounding spaces.

    Ratings are lower-cased. Raises InvalidMarkError naming the invalid field.
    """
    try:
        mark_kind = MarkKind(kind)
    except ValueError:
        valid = ", ".join(member.value for member in MarkKind)
        raise InvalidMarkError("kind", kind, f"must be one of: {valid}") from None

    author = author.strip()
    if not 1 <= len(author) <= MAX_AUTHOR_LENGTH or _has_control(author, False):
        raise InvalidMarkError(
            "author",
            author,
            f"must be 1 to {MAX_AUTHOR_LENGTH} characters without control characters",
        )

    value = value.strip()
    if mark_kind is MarkKind.TAG:
        has_space = any(char.isspace() for char in value)
        if not 1 <= len(value) <= MAX_TAG_LENGTH or has_space or _has_control(value, False):
            raise InvalidMarkError(
                "tag", value, f"must be 1 to {MAX_TAG_LENGTH} characters without spaces"
            )
    elif mark_kind is MarkKind.RATING:
        try:
            value = Rating(value.lower()).value
        except ValueError:
            raise InvalidMarkError("rating", value, "must be approve or reject") from None
    elif not 1 <= len(value) <= MAX_COMMENT_LENGTH or _has_control(value, True):
        raise InvalidMarkError(
            "comment",
            value[:80],
            f"must be 1 to {MAX_COMMENT_LENGTH} characters without control characters "
            "other than newlines and tabs",
        )
    return mark_kind, value, author


class ReviewSummary(BaseModel):
    """An asset's current review state, derived from its marks."""

    tags: list[str]
    # The newest rating mark's value, or None when the asset was never rated.
    rating: Rating | None
    comments: int


def summarize_marks(marks: Sequence[ReviewMarkRow]) -> ReviewSummary:
    """Summarize marks given in id order, as `Catalog.list_review_marks` returns them."""
    tags = list(dict.fromkeys(mark.value for mark in marks if mark.kind is MarkKind.TAG))
    ratings = [mark.value for mark in marks if mark.kind is MarkKind.RATING]
    return ReviewSummary(
        tags=tags,
        rating=Rating(ratings[-1]) if ratings else None,
        comments=sum(1 for mark in marks if mark.kind is MarkKind.COMMENT),
    )


# SQL terms


def _literal(kind: str) -> ColumnElement[str]:
    return literal_column(f"'{MarkKind(kind).value}'")


def label_kind_is(kind: MarkKind) -> ColumnElement[bool]:
    """Match review marks of one label kind so that ix_review_marks_kind_value serves it.

    SQLite uses a partial index only when the query repeats the index's own
    WHERE term, and both databases only when that term is made of literals,
    not bound parameters. The literals are MarkKind members, never user input.
    """
    labels = [_literal(label) for label in LABEL_MARK_KINDS]
    return and_(ReviewMark.kind.in_(labels), ReviewMark.kind == _literal(kind))


def asset_rating_is(rating: str) -> ColumnElement[bool]:
    """Match assets whose newest rating mark is `rating`, or that have none for UNRATED."""
    if rating == UNRATED:
        return ~exists().where(
            ReviewMark.asset_id == Asset.id, ReviewMark.kind == MarkKind.RATING.value
        )

    mark = aliased(ReviewMark)
    newer = aliased(ReviewMark)
    labels = [_literal(label) for label in LABEL_MARK_KINDS]
    latest_with_value = select(mark.asset_id).where(
        # The same literal terms as in label_kind_is, for the partial index.
        mark.kind.in_(labels),
        mark.kind == _literal(MarkKind.RATING),
        mark.value == rating,
        ~exists().where(
            newer.asset_id == mark.asset_id,
            newer.kind == MarkKind.RATING.value,
            newer.id > mark.id,
        ),
    )
    return Asset.id.in_(latest_with_value)
