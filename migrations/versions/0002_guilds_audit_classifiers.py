"""per-guild settings, watched channels, audit log, saved classifiers, item attributes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("attributes", sa.Text))
    op.create_table(
        "guild_settings",
        sa.Column("guild_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("k", sa.Integer),
        sa.Column("moderator_role_id", sa.BigInteger),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "watched_channels",
        sa.Column("guild_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("channel_id", sa.BigInteger, primary_key=True, autoincrement=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("guild_id", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("item_id", sa.String(100)),
        sa.Column("detail", sa.Text),
        sa.Column("at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_audit_guild_at", "audit_log", ["guild_id", "at"])
    op.create_table(
        "classifiers",
        sa.Column("guild_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("model", sa.String(64), primary_key=True),
        sa.Column("fingerprint", sa.String(100), nullable=False),
        sa.Column("method", sa.String(20), nullable=False),
        sa.Column("blob", sa.LargeBinary, nullable=False),
        sa.Column("trained_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("classifiers")
    op.drop_table("audit_log")
    op.drop_table("watched_channels")
    op.drop_table("guild_settings")
    with op.batch_alter_table("items") as batch:
        batch.drop_column("attributes")
