"""broadcasts.expires_at: a reminder's or a visit's announcement is not sent once its words are no longer true

Revision ID: 0020
Revises: 0017
Create Date: 2026-12-01 18:00:00

A reminder says "ngày mai" (tomorrow) or "hôm nay" (today): quiet hours or a backlog may hold it until its
words are wrong. The sender never sends a delivery of a broadcast past its `expires_at`; the broadcast is
closed as cancelled (its deliveries `cancelled`, last error "expired").

A pending reminder's text now holds only where to go and what to bring; its first line ("ngày mai" or
"hôm nay") is written when it is sent. Pending reminders stored whole by 0017's code are cut to that body.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0017"
branch_labels = None
depends_on = None


OLD_HEAD = "Nhắc anh/chị: ngày mai,"  # 0017's reminder text: this line, the body, then a line about /huynhac


def upgrade() -> None:
    with op.batch_alter_table("broadcasts") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, text FROM reminders WHERE status = 'pending'")).all()
    for row_id, text in rows:
        lines = (text or "").split("\n")
        if lines and lines[0].startswith(OLD_HEAD):
            body = "\n".join(lines[1:-1] if len(lines) > 2 and "/huynhac" in lines[-1] else lines[1:])
            bind.execute(sa.text("UPDATE reminders SET text = :t WHERE id = :i"), {"t": body, "i": row_id})


def downgrade() -> None:
    with op.batch_alter_table("broadcasts") as batch:
        batch.drop_column("expires_at")
