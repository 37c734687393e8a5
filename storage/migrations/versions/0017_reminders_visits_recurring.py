"""reminders, mobile teams' visits, recurring broadcasts; broadcasts.kind; broadcast images

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 16:00:00

All three are sent by the broadcast sender as broadcasts of their own kind (a reminder: one delivery to
one person; a visit: its announcement to the hamlets' groups the day before; a recurring rule: a
broadcast at each run). Existing broadcasts are of kind "broadcast". A broadcast's optional image is
kept in `broadcast_images` (broadcasts.image holds its key).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("broadcasts") as batch:
        batch.add_column(sa.Column("kind", sa.String(20), nullable=False, server_default="broadcast"))
    op.create_table(
        "reminders",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("hamlet_code", sa.String(40), nullable=True),
        sa.Column("appointment", sa.Date(), nullable=False),
        sa.Column("remind_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("broadcast_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_reminders_due", "reminders", ["status", "remind_at"])
    op.create_index("ix_reminders_user_id", "reminders", ["user_id"])
    op.create_table(
        "mobile_visits",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("commune_code", sa.String(40), nullable=False),
        sa.Column("visit_date", sa.Date(), nullable=False),
        sa.Column("start_time", sa.String(5), nullable=False),
        sa.Column("end_time", sa.String(5), nullable=True),
        sa.Column("place", sa.String(300), nullable=False),
        sa.Column("hamlets", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("cancelled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("announced_broadcast_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_mobile_visits_day", "mobile_visits", ["visit_date"])
    op.create_index("ix_mobile_visits_commune_code", "mobile_visits", ["commune_code"])
    op.create_table(
        "recurring_broadcasts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("author", sa.String(100), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("audience", sa.JSON(), nullable=False),
        sa.Column("cron", sa.String(100), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("last_broadcast_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_recurring_broadcasts_next_run_at", "recurring_broadcasts", ["next_run_at"])
    op.create_table(
        "broadcast_images",
        sa.Column("key", sa.String(32), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(20), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_broadcast_images_sha256", "broadcast_images", ["sha256"])


def downgrade() -> None:
    op.drop_index("ix_broadcast_images_sha256", table_name="broadcast_images")
    op.drop_table("broadcast_images")
    op.drop_index("ix_recurring_broadcasts_next_run_at", table_name="recurring_broadcasts")
    op.drop_table("recurring_broadcasts")
    op.drop_index("ix_mobile_visits_commune_code", table_name="mobile_visits")
    op.drop_index("ix_mobile_visits_day", table_name="mobile_visits")
    op.drop_table("mobile_visits")
    op.drop_index("ix_reminders_user_id", table_name="reminders")
    op.drop_index("ix_reminders_due", table_name="reminders")
    op.drop_table("reminders")
    with op.batch_alter_table("broadcasts") as batch:
        batch.drop_column("kind")
