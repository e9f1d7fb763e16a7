"""members' photos remembered as features (never the picture), their votes and labels, and the
per-catalogue domain state that adapts queries to the catalogue

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "member_photos",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("catalogue_id", sa.BigInteger, nullable=False),
        sa.Column("guild_id", sa.BigInteger, nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.Column("predicted", sa.String(100)),
        sa.Column("channel_id", sa.BigInteger),
        sa.Column("photo_message_id", sa.BigInteger),
        sa.Column("reply_message_id", sa.BigInteger),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("adapted", sa.Boolean, nullable=False),
        sa.Column("label", sa.String(100)),
        sa.Column("label_source", sa.String(20)),
        sa.Column("labelled_by", sa.String(100)),
        sa.Column("labelled_at", sa.DateTime),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_member_photos_catalogue", "member_photos", ["catalogue_id", "id"])
    op.create_index("ix_member_photos_guild", "member_photos", ["guild_id", "catalogue_id"])
    op.create_index("ix_member_photos_photo_message", "member_photos", ["guild_id", "photo_message_id"])
    op.create_index("ix_member_photos_reply_message", "member_photos", ["guild_id", "reply_message_id"])
    op.create_table(
        "member_votes",
        sa.Column("photo_id", sa.Integer, sa.ForeignKey("member_photos.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("verdict", sa.Integer, nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "domain_states",
        sa.Column("catalogue_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("model", sa.String(64), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("state", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("domain_states")
    op.drop_table("member_votes")
    op.drop_index("ix_member_photos_reply_message", "member_photos")
    op.drop_index("ix_member_photos_photo_message", "member_photos")
    op.drop_index("ix_member_photos_guild", "member_photos")
    op.drop_index("ix_member_photos_catalogue", "member_photos")
    op.drop_table("member_photos")
