"""Copy each asset's creation time into asset_characters and index it.

A character filter in the default order, newest first, then reads one index
range instead of checking the character of every asset it walks past.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_INDEX = "ix_asset_characters_character_id_asset_id"
NEW_INDEX = "ix_asset_characters_character_id_created_at"


def upgrade() -> None:
    op.drop_index(OLD_INDEX, table_name="asset_characters")
    with op.batch_alter_table("asset_characters") as batch:
        batch.add_column(sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE asset_characters SET created_at = "
        "(SELECT assets.created_at FROM assets WHERE assets.id = asset_characters.asset_id)"
    )
    with op.batch_alter_table("asset_characters") as batch:
        batch.alter_column("created_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    op.create_index(NEW_INDEX, "asset_characters", ["character_id", "created_at", "asset_id"])


def downgrade() -> None:
    op.drop_index(NEW_INDEX, table_name="asset_characters")
    with op.batch_alter_table("asset_characters") as batch:
        batch.drop_column("created_at")
    op.create_index(OLD_INDEX, "asset_characters", ["character_id", "asset_id"])
