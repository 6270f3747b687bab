"""Create the catalog tables.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "storyboards",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("spec_sha256", sa.String(64), nullable=False),
        sa.Column("spec_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_storyboards"),
        sa.UniqueConstraint("spec_sha256", name="uq_storyboards_spec_sha256"),
    )

    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("storyboard_id", sa.String(32), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("options_json", sa.Text(), nullable=False),
        sa.Column("frames_total", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("driver", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.ForeignKeyConstraint(
            ["storyboard_id"], ["storyboards.id"], name="fk_runs_storyboard_id_storyboards"
        ),
    )
    op.create_index("ix_runs_storyboard_id", "runs", ["storyboard_id"])
    op.create_index("ix_runs_created_at", "runs", ["created_at"])

    op.create_table(
        "frames",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("scene_id", sa.String(255), nullable=False),
        sa.Column("edit_step", sa.Integer(), nullable=False),
        sa.Column("variant", sa.Integer(), nullable=False),
        sa.Column("parent_key", sa.String(64), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("characters_json", sa.Text(), nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("guidance", sa.Float(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_frames"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_frames_run_id_runs", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("run_id", "key", name="uq_frames_run_id_key"),
    )
    op.create_index("ix_frames_run_id_state", "frames", ["run_id", "state"])

    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("frame_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("scores_json", sa.Text(), nullable=True),
        sa.Column("object_key", sa.String(255), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("seconds_generate", sa.Float(), nullable=True),
        sa.Column("seconds_score", sa.Float(), nullable=True),
        sa.Column("node", sa.String(255), nullable=True),
        sa.Column("device", sa.String(255), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_attempts"),
        sa.ForeignKeyConstraint(
            ["frame_id"], ["frames.id"], name="fk_attempts_frame_id_frames", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("frame_id", "number", name="uq_attempts_frame_id_number"),
    )
    op.create_index("ix_attempts_state", "attempts", ["state"])

    op.create_table(
        "assets",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("storyboard_id", sa.String(32), nullable=False),
        sa.Column("frame_id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=False),
        sa.Column("scene_id", sa.String(255), nullable=False),
        sa.Column("edit_step", sa.Integer(), nullable=False),
        sa.Column("variant", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("characters_json", sa.Text(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("guidance", sa.Float(), nullable=False),
        sa.Column("reference_hashes_json", sa.Text(), nullable=False),
        sa.Column("object_key", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("seconds_generate", sa.Float(), nullable=True),
        sa.Column("seconds_score", sa.Float(), nullable=True),
        sa.Column("node", sa.String(255), nullable=True),
        sa.Column("device", sa.String(255), nullable=True),
        sa.Column("parent_asset_id", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_assets"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_assets_run_id_runs"),
        sa.ForeignKeyConstraint(
            ["storyboard_id"], ["storyboards.id"], name="fk_assets_storyboard_id_storyboards"
        ),
        sa.ForeignKeyConstraint(["frame_id"], ["frames.id"], name="fk_assets_frame_id_frames"),
        sa.ForeignKeyConstraint(
            ["attempt_id"], ["attempts.id"], name="fk_assets_attempt_id_attempts"
        ),
        sa.ForeignKeyConstraint(
            ["parent_asset_id"],
            ["assets.id"],
            name="fk_assets_parent_asset_id_assets",
            ondelete="SET NULL",
        ),
        sa.UniqueConstraint("frame_id", name="uq_assets_frame_id"),
        sa.UniqueConstraint("attempt_id", name="uq_assets_attempt_id"),
    )
    for column in ("run_id", "storyboard_id", "scene_id", "verdict", "score", "backend", "model"):
        op.create_index(f"ix_assets_{column}", "assets", [column])
    op.create_index("ix_assets_created_at", "assets", ["created_at"])

    op.create_table(
        "asset_characters",
        sa.Column("asset_id", sa.String(32), nullable=False),
        sa.Column("character_id", sa.String(255), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("asset_id", "character_id", name="pk_asset_characters"),
        sa.ForeignKeyConstraint(
            ["asset_id"],
            ["assets.id"],
            name="fk_asset_characters_asset_id_assets",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_asset_characters_character_id", "asset_characters", ["character_id"])


def downgrade() -> None:
    op.drop_table("asset_characters")
    op.drop_table("assets")
    op.drop_table("attempts")
    op.drop_table("frames")
    op.drop_table("runs")
    op.drop_table("storyboards")
