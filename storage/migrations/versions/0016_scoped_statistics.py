"""statistics per scope (hamlet, commune, all), people per month, unanswered questions' wordings and groups

Revision ID: 0016
Revises: 0011
Create Date: 2026-12-01 14:00:00

The dashboard's pages read one scope's few rows instead of summing a commune's hamlets, and a month's
distinct people from counters (storage/stats.py says why). The unanswered page groups every wording
of a period: wordings and their daily counts are kept, and grouped once (bot/unanswered.Grouper, run
by the server at start and every minute). The old wide tables are dropped, and with them the log
index only the old unanswered page read. Everything is built here from the log already stored.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0011"
branch_labels = None
depends_on = None


def _counter(name: str, time_col: str, *cols: str) -> None:
    op.create_table(
        name,
        sa.Column("scope", sa.String(41), nullable=False),
        sa.Column(time_col, sa.Date(), nullable=False),
        *[sa.Column(c, sa.String(64 if c == "topic" else 40 if c == "step" else 20), nullable=False) for c in cols],
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope", time_col, *cols),
    )


def upgrade() -> None:
    _counter("stat_messages", "day", "channel", "outcome")
    _counter("stat_messages_monthly", "month", "outcome")
    _counter("stat_topics", "day", "topic")
    _counter("stat_stuck", "day", "step")
    op.create_table(
        "stat_seen_monthly",
        sa.Column("scope", sa.String(41), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("what", sa.String(60), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("ref", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("scope", "month", "what", "channel", "ref"),
    )
    op.create_index("ix_stat_seen_monthly_ref", "stat_seen_monthly", ["ref"])
    op.create_table(
        "stat_people",
        sa.Column("scope", sa.String(41), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("what", sa.String(60), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "month", "what", "channel"),
    )
    # /xoa re-keys a person's rows: without an index on the pseudonym that read the whole table.
    op.create_index("ix_stat_seen_daily_ref", "stat_seen_daily", ["ref"])
    op.create_table(
        "question_wordings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("text_hash", sa.String(40), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=True),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("text_hash"),
    )
    op.create_index("ix_question_wordings_group_id", "question_wordings", ["group_id"])
    op.create_table(
        "question_groups",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("key", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "stat_unanswered",
        sa.Column("hamlet_code", sa.String(40), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("text_hash", sa.String(40), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hamlet_code", "day", "text_hash"),
    )
    op.create_index("ix_stat_unanswered_text_hash", "stat_unanswered", ["text_hash"])
    ungrouped = sa.text("group_id IS NULL")
    op.create_index("ix_stat_unanswered_ungrouped", "stat_unanswered", ["text_hash"], postgresql_where=ungrouped, sqlite_where=ungrouped)
    # Built from the log and from stat_seen_daily (0012). This calls the current code: a later
    # migration that changes these tables must freeze the statements it needs here.
    from storage.stats import rebuild_sync

    rebuild_sync(op.get_bind(), seen_daily=False)
    op.drop_index("ix_stat_query_daily_hamlet_day", table_name="stat_query_daily")
    op.drop_table("stat_query_daily")
    op.drop_index("ix_stat_event_daily_hamlet_day", table_name="stat_event_daily")
    op.drop_table("stat_event_daily")
    op.drop_index("ix_query_log_outcome_hamlet_created_at", table_name="query_log")


def downgrade() -> None:
    # The old tables come back empty: 0012's statistics pages would show nothing until rebuilt.
    op.create_index("ix_query_log_outcome_hamlet_created_at", "query_log", ["outcome", "hamlet_code", "created_at"])
    op.create_table(
        "stat_event_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("hamlet_code", sa.String(40), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "hamlet_code", "channel", "kind", "name"),
    )
    op.create_index("ix_stat_event_daily_hamlet_day", "stat_event_daily", ["hamlet_code", "day"])
    op.create_table(
        "stat_query_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("hamlet_code", sa.String(40), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("chat_type", sa.String(10), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "hamlet_code", "channel", "chat_type", "outcome", "topic"),
    )
    op.create_index("ix_stat_query_daily_hamlet_day", "stat_query_daily", ["hamlet_code", "day"])
    op.drop_index("ix_stat_unanswered_ungrouped", table_name="stat_unanswered")
    op.drop_index("ix_stat_unanswered_text_hash", table_name="stat_unanswered")
    op.drop_table("stat_unanswered")
    op.drop_table("question_groups")
    op.drop_index("ix_question_wordings_group_id", table_name="question_wordings")
    op.drop_table("question_wordings")
    op.drop_index("ix_stat_seen_daily_ref", table_name="stat_seen_daily")
    op.drop_table("stat_people")
    op.drop_index("ix_stat_seen_monthly_ref", table_name="stat_seen_monthly")
    op.drop_table("stat_seen_monthly")
    for name in ("stat_stuck", "stat_topics", "stat_messages_monthly", "stat_messages"):
        op.drop_table(name)
