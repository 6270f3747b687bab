"""Add the schedules tables.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("cron", sa.String(255), nullable=False),
        sa.Column("timezone", sa.String(255), nullable=False),
        sa.Column("storyboard_id", sa.String(32), nullable=False),
        sa.Column("options_json", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("missed_policy", sa.String(32), nullable=False),
        sa.Column("overlap_policy", sa.String(32), nullable=False),
        sa.Column("evaluated_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_schedules"),
        sa.ForeignKeyConstraint(
            ["storyboard_id"], ["storyboards.id"], name="fk_schedules_storyboard_id_storyboards"
        ),
    )
    op.create_index("ix_schedules_storyboard_id", "schedules", ["storyboard_id"])

    op.create_table(
        "schedule_fires",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("schedule_id", sa.String(32), nullable=False),
        sa.Column("fire_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_schedule_fires"),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name="fk_schedule_fires_schedule_id_schedules",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_schedule_fires_run_id_runs", ondelete="SET NULL"
        ),
        sa.UniqueConstraint(
            "schedule_id", "fire_time", name="uq_schedule_fires_schedule_id_fire_time"
        ),
    )
    op.create_index("ix_schedule_fires_run_id", "schedule_fires", ["run_id"])


def downgrade() -> None:
    op.drop_table("schedule_fires")
    op.drop_table("schedules")
