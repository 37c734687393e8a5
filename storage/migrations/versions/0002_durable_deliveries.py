"""durable deliveries: keep each delivery's payload until it has been handled

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 06:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("processed_updates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payload", sa.JSON(), nullable=True))
        # Every row recorded before this revision was handled (or is past saving): done by default.
        batch_op.add_column(sa.Column("done", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("processed_updates", schema=None) as batch_op:
        batch_op.drop_column("attempts")
        batch_op.drop_column("done")
        batch_op.drop_column("payload")
