"""shop feeds synced on a schedule, and the ETag/Last-Modified of the images they name

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feeds",
        sa.Column("guild_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("every_s", sa.Integer, nullable=False),
        sa.Column("options", sa.Text),
        sa.Column("channel_id", sa.BigInteger),
        sa.Column("next_run_at", sa.DateTime),
        sa.Column("running_until", sa.DateTime),
        sa.Column("last_run_at", sa.DateTime),
        sa.Column("last_error", sa.Text),
        sa.Column("error_reported", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "image_validators",
        sa.Column("url_key", sa.String(64), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("etag", sa.Text),
        sa.Column("last_modified", sa.String(100)),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("seen_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("image_validators")
    op.drop_table("feeds")
