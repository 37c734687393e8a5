"""SQLAlchemy 2 models of everything the bot stores."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Boolean, Date, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint, text, true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Commune(Base):
    __tablename__ = "communes"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class Hamlet(Base):
    __tablename__ = "hamlets"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    commune_code: Mapped[str] = mapped_column(ForeignKey("communes.code"), index=True)


class Chat(Base):
    __tablename__ = "chats"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(10))
    title: Mapped[str | None] = mapped_column(String(255))
    hamlet_code: Mapped[str | None] = mapped_column(ForeignKey("hamlets.code", ondelete="SET NULL"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(64))
    hamlet_code: Mapped[str | None] = mapped_column(ForeignKey("hamlets.code", ondelete="SET NULL"))
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ConversationState(Base):
    __tablename__ = "conversation_states"

    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    chat_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class QueryLog(Base):
    __tablename__ = "query_log"
    __table_args__ = (
        Index("ix_query_log_created_at", "created_at"),
        Index("ix_query_log_user_ref", "user_ref"),
        # The dashboard lists a period's unanswered questions.
        Index("ix_query_log_outcome_hamlet_created_at", "outcome", "hamlet_code", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    channel: Mapped[str] = mapped_column(String(20))
    chat_type: Mapped[str] = mapped_column(String(10))
    chat_ref: Mapped[str | None] = mapped_column(String(64))
    hamlet_code: Mapped[str | None] = mapped_column(String(40), index=True)
    user_ref: Mapped[str | None] = mapped_column(String(64))
    text: Mapped[str | None] = mapped_column(Text)
    topic: Mapped[str | None] = mapped_column(String(64), index=True)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    outcome: Mapped[str] = mapped_column(String(20), index=True)
    handling_ms: Mapped[float] = mapped_column(Float, default=0.0)


class GuideEvent(Base):
    __tablename__ = "guide_events"
    __table_args__ = (Index("ix_guide_events_created_at", "created_at"), Index("ix_guide_events_user_ref", "user_ref"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    channel: Mapped[str] = mapped_column(String(20))
    hamlet_code: Mapped[str | None] = mapped_column(String(40), index=True)
    user_ref: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    step: Mapped[str | None] = mapped_column(String(40))
    value: Mapped[str | None] = mapped_column(String(40))


class InboxEntry(Base):
    """A platform delivery taken once: the key a retry or a second process would deliver again.

    The row is written in the same transaction as everything its handling changed, so a delivery is
    either handled (and its key stored) or not stored at all (and the platform delivers it again).
    Only the key is kept: no names, no texts.
    """

    __tablename__ = "inbox"

    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    update_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class OutboxMessage(Base):
    """One platform call to make (a reply, later a broadcast), committed with the state that produced it.

    The sender makes the calls of one chat in `id` order and records how each ended.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_chat", "channel", "chat_id", "status"),
        Index("ix_outbox_user", "channel", "user_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(20))
    chat_id: Mapped[str] = mapped_column(String(64))
    # The person the message answers (None for a group announcement): erasure deletes their pending rows.
    user_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20), default="reply")
    # The channel's rendered call (method and parameters, without the chat id); emptied once ended.
    call: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class KeyValue(Base):
    """Small secrets and tokens that must survive restarts (webhook secrets, OAuth tokens)."""

    __tablename__ = "kv_store"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[dict] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Erasure(Base):
    """A person who asked to be erased (`/xoa`), by a one-way reference, and when.

    Messages a person sent before their erasure may still be delivered or recovered afterwards; they are
    dropped instead of creating the person again. The reference is a salted hash distinct from the
    pseudonyms of the statistics, so it links to nothing that was kept; rows are pruned once no delivery
    can be that late.
    """

    __tablename__ = "erasures"

    person_ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Broadcast(Base):
    """A message the teams push to hamlet groups and subscribers; its deliveries are the truth of its progress."""

    __tablename__ = "broadcasts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Who wrote it ("channel:user id" or a dashboard account) and who approved it.
    author: Mapped[str] = mapped_column(String(100))
    approver: Mapped[str | None] = mapped_column(String(100), nullable=True)
    text: Mapped[str] = mapped_column(Text)
    # The key of its image (broadcast_images), if it has one.
    image: Mapped[str | None] = mapped_column(String(500), nullable=True)
    # {"scope": "all"|"communes"|"hamlets", "codes": [...], "kinds": ["group", "private"], "channels": [...]}
    audience: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), index=True)
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # "broadcast" (written by a team), "reminder" (one person's appointment), "visit" (a mobile team's
    # visit announced to its hamlets' groups), "recurring" (made by a recurring rule).
    kind: Mapped[str] = mapped_column(String(20), default="broadcast", server_default="broadcast")
    # Not sent after this (a reminder's "ngày mai" is wrong on the day itself); closed as cancelled then.
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class BroadcastImage(Base):
    """A broadcast's image, uploaded on the dashboard (bot/broadcasts/images.py: why in the database)."""

    __tablename__ = "broadcast_images"

    key: Mapped[str] = mapped_column(String(32), primary_key=True)  # random: its public address cannot be guessed
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    content_type: Mapped[str] = mapped_column(String(20))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BroadcastDelivery(Base):
    """One recipient of one broadcast: sent at most once, never skipped silently."""

    __tablename__ = "broadcast_deliveries"
    __table_args__ = (
        UniqueConstraint("broadcast_id", "channel", "chat_id"),
        Index("ix_broadcast_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(20))
    chat_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(10))
    hamlet_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    commune_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    status: Mapped[str] = mapped_column(String(20))
    # Parts of a split text already accepted by the platform: a resumed delivery goes on from the next.
    parts_sent: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    platform_message_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BroadcastPolicy(Base):
    """A commune's broadcasting rules: quiet hours and whether broadcasts need an approval."""

    __tablename__ = "broadcast_policies"

    commune_code: Mapped[str] = mapped_column(String(40), primary_key=True)
    quiet_start: Mapped[str] = mapped_column(String(5), default="21:00")
    quiet_end: Mapped[str] = mapped_column(String(5), default="07:00")
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Ho_Chi_Minh")
    approval_required: Mapped[bool] = mapped_column(Boolean, default=True)


class Reminder(Base):
    """A person's appointment, to be reminded of the evening before (sent by the broadcast sender)."""

    __tablename__ = "reminders"
    __table_args__ = (Index("ix_reminders_due", "status", "remind_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(20))
    user_id: Mapped[str] = mapped_column(String(64), index=True)  # the person; their private chat has the same id
    hamlet_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    appointment: Mapped[date] = mapped_column(Date)
    remind_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    text: Mapped[str] = mapped_column(Text)  # written when set, from the content of that time
    status: Mapped[str] = mapped_column(String(20))  # pending, sent (handed to the sender), cancelled
    broadcast_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MobileVisit(Base):
    """A visit of the mobile issuing team ("tổ cấp lưu động"): when, where, which hamlets it serves."""

    __tablename__ = "mobile_visits"
    __table_args__ = (Index("ix_mobile_visits_day", "visit_date"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    commune_code: Mapped[str] = mapped_column(String(40), index=True)
    visit_date: Mapped[date] = mapped_column(Date)
    start_time: Mapped[str] = mapped_column(String(5))
    end_time: Mapped[str | None] = mapped_column(String(5), nullable=True)
    place: Mapped[str] = mapped_column(String(300))
    hamlets: Mapped[list] = mapped_column(JSON)  # hamlet codes served
    created_by: Mapped[str] = mapped_column(String(100))
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    # The announcement to the hamlets' groups, the day before (made once).
    announced_broadcast_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RecurringBroadcast(Base):
    """A broadcast made again and again by a cron-like rule (e.g. the nine steps on the 1st of each month)."""

    __tablename__ = "recurring_broadcasts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    author: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    audience: Mapped[dict] = mapped_column(JSON)
    cron: Mapped[str] = mapped_column(String(100))  # minute hour day month weekday, local time
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Ho_Chi_Minh")
    next_run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_broadcast_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Lease(Base):
    """A named lease: exactly one live holder (the reply sender, the broadcast sender); another takes over
    once it expires."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Bumped at each takeover: a holder that lost its lease sees the change and stops.
    epoch: Mapped[int] = mapped_column(Integer, default=1)


# Pre-aggregated statistics, kept up to date in the same transaction as each logged row
# (storage/stats.py). Day is the Vietnamese calendar day (UTC+7), month its first day.
# `scope` is where a row counts: a hamlet code, "@" + a commune code (the commune the hamlet belonged
# to when the row was logged), or "*" (everything, hamlet or not). Each logged row counts in its
# hamlet, its commune and "*", so a page reads one scope's few rows instead of summing hamlets.


class StatMessages(Base):
    """Messages per day, scope, channel and outcome."""

    __tablename__ = "stat_messages"

    scope: Mapped[str] = mapped_column(String(41), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(20), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, default=0)


class StatMessagesMonthly(Base):
    """Messages per month, scope and outcome: a month of every hamlet at once (all communes) stays small."""

    __tablename__ = "stat_messages_monthly"

    scope: Mapped[str] = mapped_column(String(41), primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    outcome: Mapped[str] = mapped_column(String(20), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, default=0)


class StatTopics(Base):
    """Answered questions per day, scope and topic."""

    __tablename__ = "stat_topics"

    scope: Mapped[str] = mapped_column(String(41), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    topic: Mapped[str] = mapped_column(String(64), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, default=0)


class StatStuck(Base):
    """Presses of "stuck at this step" per day, scope and step."""

    __tablename__ = "stat_stuck"

    scope: Mapped[str] = mapped_column(String(41), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    step: Mapped[str] = mapped_column(String(40), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, default=0)


class StatSeenMonthly(Base):
    """Who was seen doing what in a month, per scope: a new row here is one more person in `stat_people`."""

    __tablename__ = "stat_seen_monthly"
    __table_args__ = (Index("ix_stat_seen_monthly_ref", "ref"),)

    scope: Mapped[str] = mapped_column(String(41), primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    what: Mapped[str] = mapped_column(String(60), primary_key=True)
    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    ref: Mapped[str] = mapped_column(String(64), primary_key=True)


class StatPeople(Base):
    """Distinct people (or groups) per month, scope, `what` and channel: the count of stat_seen_monthly rows.

    Pseudonyms are per channel (bot/privacy.py), so people add up across channels."""

    __tablename__ = "stat_people"

    scope: Mapped[str] = mapped_column(String(41), primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    what: Mapped[str] = mapped_column(String(60), primary_key=True)
    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, default=0)


class QuestionWording(Base):
    """One wording (exact masked text) of a low-confidence question, and the group of near-duplicates it is in.

    `key` (the normalised form) and `group_id` are filled by the grouper (bot/unanswered.py), shortly after."""

    __tablename__ = "question_wordings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    text_hash: Mapped[str] = mapped_column(String(40), unique=True)
    text: Mapped[str] = mapped_column(Text)
    key: Mapped[str | None] = mapped_column(Text, nullable=True)
    group_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    n: Mapped[int] = mapped_column(Integer, default=0)
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class QuestionGroup(Base):
    """A group of near-duplicate questions: the normalised form (tokens sorted) new wordings are compared with.

    Ids are given by the grouper (never twice); a retired group (no wording left) has no key."""

    __tablename__ = "question_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    key: Mapped[str | None] = mapped_column(Text, nullable=True)


class StatUnanswered(Base):
    """Low-confidence questions per day, hamlet ('' for none) and wording, with the wording's group.

    The group is copied here (when the row is written, or when the grouper places the wording) so the page
    sums a period's rows per group without reading each wording; a row still without it is looked up."""

    __tablename__ = "stat_unanswered"
    __table_args__ = (
        Index("ix_stat_unanswered_text_hash", "text_hash"),
        Index("ix_stat_unanswered_ungrouped", "text_hash", postgresql_where=text("group_id IS NULL"), sqlite_where=text("group_id IS NULL")),
        # Everything the unanswered page reads of a commune's period, in the index: no table row is visited.
        Index("ix_stat_unanswered_page", "hamlet_code", "day", "group_id", "n", "last_at", "text_hash"),
    )

    hamlet_code: Mapped[str] = mapped_column(String(40), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    text_hash: Mapped[str] = mapped_column(String(40), primary_key=True)
    group_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    n: Mapped[int] = mapped_column(Integer, default=0)
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StatSeenDaily(Base):
    """Who was seen doing what on a day, so distinct people can be counted over any period.

    `what` is 'person', 'group', 'step:<slug>' or 'outcome:<value>'; `ref` the pseudonym.
    """

    __tablename__ = "stat_seen_daily"
    __table_args__ = (Index("ix_stat_seen_daily_what_day", "what", "day"), Index("ix_stat_seen_daily_ref", "ref"))

    what: Mapped[str] = mapped_column(String(60), primary_key=True)
    hamlet_code: Mapped[str] = mapped_column(String(40), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    ref: Mapped[str] = mapped_column(String(64), primary_key=True)


class WebAccount(Base):
    """A person who may open the officers' dashboard."""

    __tablename__ = "web_accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(10))
    commune_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class UnansweredMark(Base):
    """An editor's decision on a group of unanswered questions: handled, or proposed as examples of a topic."""

    __tablename__ = "unanswered_marks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_key: Mapped[str] = mapped_column(String(255), index=True)
    commune_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    status: Mapped[str] = mapped_column(String(10))  # handled | proposed | accepted | rejected
    topic: Mapped[str | None] = mapped_column(String(64), nullable=True)
    texts: Mapped[list] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
