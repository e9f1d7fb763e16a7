"""each catalogue's version on SQLite, bumped by every write to its items: what a process compares with the
version its loaded index reflects, so that its own write never hides another process's

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catalogue_versions",
        sa.Column("catalogue_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("version", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("catalogue_versions")
