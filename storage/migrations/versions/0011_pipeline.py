"""message pipeline: inbox keys and the outbox of platform calls (leases come with 0014)

Revision ID: 0011
Revises: 0012
Create Date: 2026-12-01 11:00:00

`processed_updates` becomes `inbox` (keys only: a delivery is now stored in the same transaction as
its handling, so there is never a payload to keep). Deliveries the previous version left unfinished
cannot be handled by this one; they are logged by count and dropped (platforms redeliver what was
never answered 200, and the old version finished everything it answered at shutdown).
On PostgreSQL, inserting into the outbox notifies the sender (channel `cccd_outbox`), so a sender in
another process starts at once instead of at its next poll.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0012"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("channel", sa.String(20), primary_key=True),
        sa.Column("update_key", sa.String(128), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_inbox_received_at", "inbox", ["received_at"])
    bind = op.get_bind()
    unfinished = bind.execute(sa.text("SELECT count(*) FROM processed_updates WHERE done = false")).scalar() or 0
    if unfinished:
        log.warning("%d delivery(ies) left unfinished by the previous version are dropped", unfinished)
    bind.execute(
        sa.text("INSERT INTO inbox (channel, update_key, received_at) SELECT channel, update_key, created_at FROM processed_updates")
    )
    op.drop_index("ix_processed_updates_created_at", table_name="processed_updates")
    op.drop_table("processed_updates")

    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("chat_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("call", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_chat", "outbox", ["channel", "chat_id", "status"])
    op.create_index("ix_outbox_user", "outbox", ["channel", "user_id"])
    if bind.dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION cccd_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_notify('cccd_outbox', ''); RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION cccd_outbox_notify()"
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
        op.execute("DROP FUNCTION IF EXISTS cccd_outbox_notify()")
    op.drop_index("ix_outbox_user", table_name="outbox")
    op.drop_index("ix_outbox_chat", table_name="outbox")
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.drop_table("outbox")
    op.create_table(
        "processed_updates",
        sa.Column("channel", sa.String(20), primary_key=True),
        sa.Column("update_key", sa.String(128), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("done", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
    )
    op.create_index("ix_processed_updates_created_at", "processed_updates", ["created_at"])
    bind.execute(
        sa.text("INSERT INTO processed_updates (channel, update_key, created_at) SELECT channel, update_key, received_at FROM inbox")
    )
    op.drop_index("ix_inbox_received_at", table_name="inbox")
    op.drop_table("inbox")
