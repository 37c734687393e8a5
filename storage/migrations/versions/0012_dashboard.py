"""dashboard: daily statistics, web accounts, decisions on unanswered questions

Revision ID: 0012
Revises: 0014
Create Date: 2026-12-01 10:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
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
    op.create_index("ix_stat_query_daily_hamlet_day", "stat_query_daily", ["hamlet_code", "day"])
    op.create_index("ix_stat_event_daily_hamlet_day", "stat_event_daily", ["hamlet_code", "day"])
    op.create_table(
        "stat_seen_daily",
        sa.Column("what", sa.String(60), nullable=False),
        sa.Column("hamlet_code", sa.String(40), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("ref", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("what", "hamlet_code", "day", "channel", "ref"),
    )
    op.create_index("ix_stat_seen_daily_what_day", "stat_seen_daily", ["what", "day"])
    op.create_table(
        "web_accounts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(10), nullable=False),
        sa.Column("commune_code", sa.String(40), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "unanswered_marks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("group_key", sa.String(255), nullable=False),
        sa.Column("commune_code", sa.String(40), nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("topic", sa.String(64), nullable=True),
        sa.Column("texts", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_by", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_unanswered_marks_group_key", "unanswered_marks", ["group_key"])
    op.create_index("ix_query_log_outcome_hamlet_created_at", "query_log", ["outcome", "hamlet_code", "created_at"])
    # Who was seen when, for everything logged before this revision (0016 builds the other statistics
    # from the log and from this table). Frozen here: storage/stats.py has moved on since.
    if op.get_bind().dialect.name == "postgresql":
        day = "((created_at) AT TIME ZONE 'Asia/Ho_Chi_Minh')::date"
    else:
        day = "date(created_at, '+7 hours')"
    name = "CASE WHEN kind = 'step' THEN coalesce(step, '') ELSE coalesce(value, '') END"
    op.execute(
        f"""INSERT INTO stat_seen_daily (what, hamlet_code, day, channel, ref)
            SELECT DISTINCT w, h, d, c, r FROM (
              SELECT 'person' AS w, coalesce(hamlet_code, '') AS h, {day} AS d, channel AS c, user_ref AS r
              FROM query_log WHERE user_ref IS NOT NULL
              UNION ALL
              SELECT 'group', coalesce(hamlet_code, ''), {day}, channel, chat_ref
              FROM query_log WHERE chat_type = 'group' AND chat_ref IS NOT NULL
              UNION ALL
              SELECT 'person', coalesce(hamlet_code, ''), {day}, channel, user_ref
              FROM guide_events WHERE user_ref IS NOT NULL
              UNION ALL
              SELECT substr(kind || ':' || {name}, 1, 60), coalesce(hamlet_code, ''), {day}, channel, user_ref
              FROM guide_events WHERE user_ref IS NOT NULL
            ) AS s"""
    )


def downgrade() -> None:
    op.drop_index("ix_query_log_outcome_hamlet_created_at", table_name="query_log")
    op.drop_index("ix_unanswered_marks_group_key", table_name="unanswered_marks")
    op.drop_table("unanswered_marks")
    op.drop_table("web_accounts")
    op.drop_index("ix_stat_seen_daily_what_day", table_name="stat_seen_daily")
    op.drop_table("stat_seen_daily")
    op.drop_index("ix_stat_event_daily_hamlet_day", table_name="stat_event_daily")
    op.drop_table("stat_event_daily")
    op.drop_index("ix_stat_query_daily_hamlet_day", table_name="stat_query_daily")
    op.drop_table("stat_query_daily")
