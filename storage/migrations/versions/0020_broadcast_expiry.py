"""broadcasts.expires_at: a reminder's or a visit's announcement is not sent once its words are no longer true

Revision ID: 0020
Revises: 0017
Create Date: 2026-12-01 18:00:00

A reminder says "ngày mai" (tomorrow) or "hôm nay" (today): quiet hours or a backlog may hold it until its
words are wrong. The sender never sends a delivery of a broadcast past its `expires_at`; the broadcast is
closed as cancelled (its deliveries `cancelled`, last error "expired").
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("broadcasts") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("broadcasts") as batch:
        batch.drop_column("expires_at")
