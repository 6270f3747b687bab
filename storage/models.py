"""ORM tables of the catalog. The Alembic migrations in `storage/migrations` must match them.

States and verdicts are stored as the string values of the enums in
`schemas.records`, and lists or dicts as JSON text, so the same schema works
on SQLite and PostgreSQL without database enum types.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# Constraint names follow one pattern so that migrations can refer to them by
# name on every database (SQLite batch mode needs names to alter constraints).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Lengths of identifier columns. Ids are uuid4 hex strings (32 characters);
# frame keys are hex digests; scene, character and backend names come from
# the storyboard spec, which limits them to 64 characters.
ID_LENGTH = 32
KEY_LENGTH = 64
NAME_LENGTH = 255
STATE_LENGTH = 32


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database.

    PostgreSQL stores `timestamp with time zone`. SQLite has no time zone
    support, so values are stored as naive UTC and marked UTC when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(
                f"datetime {value.isoformat()} has no time zone; pass an aware UTC datetime"
            )
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Storyboard(Base):
    __tablename__ = "storyboards"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    # One row per spec content: submitting the same spec again reuses the row.
    spec_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    spec_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    runs: Mapped[list[Run]] = relationship(back_populates="storyboard", lazy="raise")


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    storyboard_id: Mapped[str] = mapped_column(ForeignKey("storyboards.id"), index=True)
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    options_json: Mapped[str] = mapped_column(Text)
    frames_total: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    driver: Mapped[str | None] = mapped_column(String(NAME_LENGTH))

    storyboard: Mapped[Storyboard] = relationship(back_populates="runs", lazy="raise")
    frames: Mapped[list[Frame]] = relationship(back_populates="run", lazy="raise")


class Frame(Base):
    __tablename__ = "frames"
    __table_args__ = (
        UniqueConstraint("run_id", "key"),
        Index("ix_frames_run_id_state", "run_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(KEY_LENGTH))
    # Index in the run's plan; frames are listed and run in this order.
    position: Mapped[int] = mapped_column(Integer)
    scene_id: Mapped[str] = mapped_column(String(NAME_LENGTH))
    edit_step: Mapped[int] = mapped_column(Integer)
    variant: Mapped[int] = mapped_column(Integer)
    parent_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    prompt: Mapped[str] = mapped_column(Text)
    characters_json: Mapped[str] = mapped_column(Text)
    backend: Mapped[str] = mapped_column(String(STATE_LENGTH))
    model: Mapped[str] = mapped_column(Text)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    steps: Mapped[int] = mapped_column(Integer)
    guidance: Mapped[float] = mapped_column(Float)
    seed: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    error: Mapped[str | None] = mapped_column(Text)

    run: Mapped[Run] = relationship(back_populates="frames", lazy="raise")
    attempts: Mapped[list[Attempt]] = relationship(back_populates="frame", lazy="raise")


class Attempt(Base):
    __tablename__ = "attempts"
    __table_args__ = (UniqueConstraint("frame_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    frame_id: Mapped[int] = mapped_column(ForeignKey("frames.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(STATE_LENGTH), index=True)
    verdict: Mapped[str | None] = mapped_column(String(STATE_LENGTH))
    score: Mapped[float | None] = mapped_column(Float)
    # JSON list of schemas.records.CharacterScore.
    scores_json: Mapped[str | None] = mapped_column(Text)
    object_key: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    sha256: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    seconds_generate: Mapped[float | None] = mapped_column(Float)
    seconds_score: Mapped[float | None] = mapped_column(Float)
    style_similarity: Mapped[float | None] = mapped_column(Float)
    node: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    device: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    frame: Mapped[Frame] = relationship(back_populates="attempts", lazy="raise")


class Asset(Base):
    """An accepted image with its provenance, copied from its frame and attempt.

    The copies make asset queries single-table and keep an asset's record
    stable even if the run's rows are later cleaned up.
    """

    __tablename__ = "assets"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    storyboard_id: Mapped[str] = mapped_column(ForeignKey("storyboards.id"), index=True)
    # One asset per frame and per attempt: accept_frame relies on these for idempotency.
    frame_id: Mapped[int] = mapped_column(ForeignKey("frames.id"), unique=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id"), unique=True)
    scene_id: Mapped[str] = mapped_column(String(NAME_LENGTH), index=True)
    edit_step: Mapped[int] = mapped_column(Integer)
    variant: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    verdict: Mapped[str] = mapped_column(String(STATE_LENGTH), index=True)
    score: Mapped[float | None] = mapped_column(Float, index=True)
    characters_json: Mapped[str] = mapped_column(Text)
    prompt: Mapped[str] = mapped_column(Text)
    backend: Mapped[str] = mapped_column(String(STATE_LENGTH), index=True)
    model: Mapped[str] = mapped_column(Text, index=True)
    seed: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    steps: Mapped[int] = mapped_column(Integer)
    guidance: Mapped[float] = mapped_column(Float)
    # JSON object: character id -> SHA-256 digests of the reference images used.
    reference_hashes_json: Mapped[str] = mapped_column(Text)
    object_key: Mapped[str] = mapped_column(String(NAME_LENGTH))
    sha256: Mapped[str] = mapped_column(String(64))
    seconds_generate: Mapped[float | None] = mapped_column(Float)
    seconds_score: Mapped[float | None] = mapped_column(Float)
    style_similarity: Mapped[float | None] = mapped_column(Float)
    node: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    device: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    # The asset this one edits, for edit chains.
    parent_asset_id: Mapped[str | None] = mapped_column(
        ForeignKey("assets.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    characters: Mapped[list[AssetCharacter]] = relationship(
        back_populates="asset", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )


class AssetCharacter(Base):
    """One character of one asset with its identity result, for filtering assets by character."""

    __tablename__ = "asset_characters"

    asset_id: Mapped[str] = mapped_column(
        ForeignKey("assets.id", ondelete="CASCADE"), primary_key=True
    )
    character_id: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True, index=True)
    verdict: Mapped[str] = mapped_column(String(STATE_LENGTH))
    score: Mapped[float | None] = mapped_column(Float)
    # A copy of the asset's created_at, so that one index serves a character
    # filter in the default order, newest first.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    asset: Mapped[Asset] = relationship(back_populates="characters", lazy="raise")


# Review marks: tags, ratings and comments on assets.


# Marks whose value is a short label; comments are free text.
LABEL_MARK_KINDS = ("tag", "rating")


class ReviewMark(Base):
    """A tag, rating or comment that a reviewer put on an asset.

    Marks are only ever added. An asset's rating is its rating mark with
    the highest id, so a later rating replaces an earlier one.
    """

    __tablename__ = "review_marks"
    __table_args__ = (
        # Serves the marks of one asset and the "latest rating" lookup.
        Index("ix_review_marks_asset_id_kind_id", "asset_id", "kind", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    asset_id: Mapped[str] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"))
    # tag, rating or comment (storage.reviews.MarkKind).
    kind: Mapped[str] = mapped_column(String(STATE_LENGTH))
    value: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# Tag and rating filters look marks up by value. Comments stay out of this
# index: PostgreSQL rejects B-tree entries larger than about 2.7 kB, and a
# comment may be longer. storage.reviews.label_kind_is writes the terms that
# let SQLite and PostgreSQL use this partial index.
Index(
    "ix_review_marks_kind_value",
    ReviewMark.kind,
    ReviewMark.value,
    # Covers the asset ids that a tag filter reads, with no table lookups.
    ReviewMark.asset_id,
    postgresql_where=ReviewMark.kind.in_(LABEL_MARK_KINDS),
    sqlite_where=ReviewMark.kind.in_(LABEL_MARK_KINDS),
)
# The assets of one character newest first, and its asset ids, read from
# the index alone.
Index(
    "ix_asset_characters_character_id_created_at",
    AssetCharacter.character_id,
    AssetCharacter.created_at,
    AssetCharacter.asset_id,
)
# Filters on seed and on the needs_review state.
Index("ix_assets_seed", Asset.seed)
Index("ix_assets_state", Asset.state)
# One equality filter with the default order, newest first: the page is one
# index range scan, however the matching assets are spread over time.
ASSET_FILTER_SORT_COLUMNS = ("run_id", "storyboard_id", "scene_id", "verdict", "state")
for _column in ASSET_FILTER_SORT_COLUMNS:
    Index(
        f"ix_assets_{_column}_created_at",
        getattr(Asset, _column),
        Asset.created_at,
        Asset.id,
    )
del _column


# Schedules: stored storyboards fired by cron expressions.


class Schedule(Base):
    """A storyboard stored at creation time and fired on a cron expression in a time zone.

    States and policies are the string values of the enums in `storage.schedules`.
    """

    __tablename__ = "schedules"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    cron: Mapped[str] = mapped_column(String(NAME_LENGTH))
    # IANA time zone name, e.g. Europe/Berlin.
    timezone: Mapped[str] = mapped_column(String(NAME_LENGTH))
    storyboard_id: Mapped[str] = mapped_column(ForeignKey("storyboards.id"), index=True)
    # The run options of every fire (reference and style object keys, spec hash).
    options_json: Mapped[str] = mapped_column(Text)
    # Path of the spec file the storyboard was read from, for display only.
    source: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    missed_policy: Mapped[str] = mapped_column(String(STATE_LENGTH))
    overlap_policy: Mapped[str] = mapped_column(String(STATE_LENGTH))
    # Fire times up to this instant have been handled; later ones are due next tick.
    evaluated_until: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    fires: Mapped[list[ScheduleFire]] = relationship(
        back_populates="schedule", lazy="raise", passive_deletes=True
    )


class ScheduleFire(Base):
    """One handled fire time of a schedule: the run it started, or why it was skipped."""

    __tablename__ = "schedule_fires"
    # One row per (schedule, fire time): the insert that wins this constraint
    # is the only one that may start the fire's run, whatever number of
    # schedulers tick at once.
    __table_args__ = (UniqueConstraint("schedule_id", "fire_time"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    schedule_id: Mapped[str] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    fire_time: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(STATE_LENGTH))
    run_id: Mapped[str | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), index=True
    )
    # Why a fire was skipped, or which missed fire times it stands for.
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    schedule: Mapped[Schedule] = relationship(back_populates="fires", lazy="raise")
