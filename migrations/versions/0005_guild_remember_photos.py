"""a server's own choice to keep (or not) the features of its members' photos (/config remember-photos)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: the server never chose, so the operator's remember_photos setting decides
    with op.batch_alter_table("guild_settings") as batch:
        batch.add_column(sa.Column("remember_photos", sa.Boolean))


def downgrade() -> None:
    with op.batch_alter_table("guild_settings") as batch:
        batch.drop_column("remember_photos")
