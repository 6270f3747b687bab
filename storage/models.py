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

    asset: Mapped[Asset] = relationship(back_populates="characters", lazy="raise")


# Review marks: tags, ratings and comments on assets.


# Schedules: stored storyboards fired by cron expressions.
