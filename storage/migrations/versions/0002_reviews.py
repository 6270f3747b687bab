"""Add the review_marks table and the asset indexes of the catalog queries.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The partial index covers short labels only; see storage.models.ReviewMark.
LABEL_KINDS_SQL = "kind IN ('tag', 'rating')"
# Asset columns that get an index (column, created_at, id) for "filter, newest first".
FILTER_SORT_COLUMNS = ("run_id", "storyboard_id", "scene_id", "verdict", "state")


def upgrade() -> None:
    op.create_table(
        "review_marks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("asset_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_review_marks"),
        sa.ForeignKeyConstraint(
            ["asset_id"],
            ["assets.id"],
            name="fk_review_marks_asset_id_assets",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_review_marks_asset_id_kind_id", "review_marks", ["asset_id", "kind", "id"])
    op.create_index(
        "ix_review_marks_kind_value",
        "review_marks",
        ["kind", "value", "asset_id"],
        postgresql_where=sa.text(LABEL_KINDS_SQL),
        sqlite_where=sa.text(LABEL_KINDS_SQL),
    )
    op.create_index(
        "ix_asset_characters_character_id_asset_id",
        "asset_characters",
        ["character_id", "asset_id"],
    )
    op.create_index("ix_assets_seed", "assets", ["seed"])
    op.create_index("ix_assets_state", "assets", ["state"])
    for column in FILTER_SORT_COLUMNS:
        op.create_index(f"ix_assets_{column}_created_at", "assets", [column, "created_at", "id"])


def downgrade() -> None:
    for column in FILTER_SORT_COLUMNS:
        op.drop_index(f"ix_assets_{column}_created_at", table_name="assets")
    op.drop_index("ix_assets_state", table_name="assets")
    op.drop_index("ix_assets_seed", table_name="assets")
    op.drop_index("ix_asset_characters_character_id_asset_id", table_name="asset_characters")
    op.drop_table("review_marks")
