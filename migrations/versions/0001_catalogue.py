"""catalogue: items and their embeddings

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("guild_id", sa.BigInteger, nullable=False),
        sa.Column("item_id", sa.String(100), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("price", sa.Float),
        sa.Column("url", sa.Text),
        sa.Column("description", sa.Text),
        sa.Column("thumbnail", sa.LargeBinary, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("added_by", sa.String(100), nullable=False),
        sa.Column("added_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("guild_id", "item_id", name="uq_items_guild_item"),
    )
    op.create_index("ix_items_guild_category", "items", ["guild_id", "category"])
    op.create_index("ix_items_guild_hash", "items", ["guild_id", "content_hash"])
    op.create_table(
        "embeddings",
        sa.Column("item_pk", sa.Integer, sa.ForeignKey("items.pk", ondelete="CASCADE"), primary_key=True),
        sa.Column("model", sa.String(64), primary_key=True),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("embeddings")
    op.drop_table("items")
