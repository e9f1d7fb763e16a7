"""which process fits a catalogue's head in the background: a lease per catalogue and model, so that the
processes on one database fit a changed catalogue once and load the head it saves

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fit_leases",
        sa.Column("catalogue_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("model", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(100), nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("fit_leases")
