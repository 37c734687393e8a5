"""Configuration from `CCCD_*` environment variables and an optional `.env` file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/cccd-bot.sqlite3"
_PLAIN_URL_SCHEMES = (
    ("sqlite://", "sqlite+aiosqlite://"),
    ("postgresql://", "postgresql+asyncpg://"),
    ("postgres://", "postgresql+asyncpg://"),
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(BaseSettings):
    """Every setting of the bot; each maps to `CCCD_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="CCCD_", env_file=".env", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    content_dir: Path | None = None
    log_level: str = "INFO"
    # A salt makes pseudonymous user ids useless outside this installation. Unset (the default), one is
    # generated at first start and kept in the database (see bot.privacy).
    pseudonym_salt: str | None = None
    # Masked question texts are deleted after this many days; the counts stay.
    query_text_retention_days: int = Field(default=180, ge=1, le=3650)
    # /healthz tells strangers only up or down; details go to loopback or to requests with this token
    # (header "Authorization: Bearer <token>" or ?token=<token>).
    healthz_token: str | None = None

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)

    telegram_token: str | None = None
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: str | None = None
    telegram_base_url: str = "https://api.telegram.org/bot"
    telegram_bot_username: str | None = None

    zalo_bot_token: str | None = None
    zalo_bot_webhook_url: str | None = None
    zalo_bot_webhook_secret: str | None = None
    zalo_bot_base_url: str = "https://bot-api.zaloplatforms.com/bot"
    # Comma-separated names people type after "@" to call the bot in a group (its display name): getMe
    # gives only the account handle (bot.XXXX), not the name shown in Zalo.
    zalo_bot_mention_names: str = ""

    zalo_oa_app_id: str | None = None
    zalo_oa_app_secret: str | None = None
    zalo_oa_secret_key: str | None = None
    zalo_oa_access_token: str | None = None
    zalo_oa_refresh_token: str | None = None
    zalo_oa_api_base: str = "https://openapi.zalo.me"
    zalo_oa_oauth_base: str = "https://oauth.zaloapp.com"
    zalo_oa_webhook_path: str = "/zalo/oa/webhook"
    zalo_oa_redirect_uri: str | None = None
    # Signed OA events older than this many seconds are refused (a captured request cannot be replayed).
    zalo_oa_max_event_age: int = Field(default=3600, ge=60)

    # The public web chat on `/` (bot/web/chat.py): off unless turned on.
    web_chat: bool = False
    # Messages a visitor may send a minute (a short burst of up to half of it is allowed at once).
    web_chat_rate: int = Field(default=20, ge=1, le=600)
    # The address people reach this server at (for posters and the embeddable widget), e.g. https://bot.xa.gov.vn
    public_url: str | None = None
    # The link that opens a chat with the bot on Zalo (printed as a QR code on posters), e.g. https://zalo.me/123
    zalo_url: str | None = None

    # Officers' dashboard (/admin): the key of its session cookies (Fernet, 32 url-safe base64 bytes;
    # generated and kept in the database when unset), and whether cookies need HTTPS (behind a TLS proxy).
    web_secret: str | None = None
    web_secure_cookies: bool = False
    # Receiving (see docs/pipeline.md): at most this many deliveries share a transaction, and this many
    # transactions run at once in a process (PostgreSQL; side by side only while they are small).
    pipeline_batch: int = Field(default=64, ge=1, le=1000)
    pipeline_concurrency: int = Field(default=1, ge=1, le=64)
    # Send a message's replies as soon as its transaction is committed and visible, before the database has
    # flushed it to disk; the platform's delivery is still acknowledged only once it is on disk. Off: the
    # replies wait for the flush too (each commit's fsync, and any stall of the disk, is in every reply's time).
    # On: a crash of the database server itself (power cut, kill -9; not a restart) may repeat the replies
    # of its last moments — never lose a message. See docs/pipeline.md. On by default: it took the p99 at half
    # the peak from 388–1,106 ms to 64–69 ms on PostgreSQL and 3–11x lower on SQLite (BENCHMARKS.md, issue 11,
    # session 7); a commune that prefers waiting for the disk to a rare repeated reply sets it to false.
    pipeline_reply_before_flush: bool = True
    # The pipeline's sender: one process holds its lease (see docs/pipeline.md).
    instance_name: str | None = None  # default: <host name>:<port>
    sender_lease_seconds: float = Field(default=10.0, gt=0.5, le=600)
    sender_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    sender_concurrency: int = Field(default=64, ge=1, le=1000)
    sender_drain_seconds: float = Field(default=5.0, ge=0, le=120)
    sender_max_lag_seconds: float = Field(default=120.0, gt=0)
    # Overall messages per second for replies, per channel (0: no pacing beyond the platform's 429s).
    telegram_send_rate: float = Field(default=0.0, ge=0)
    zalo_bot_send_rate: float = Field(default=0.0, ge=0)
    zalo_oa_send_rate: float = Field(default=0.0, ge=0)
    # `serve` reads its sockets in pieces of at most this many bytes (asyncio reads 256 KiB at a time, which
    # fragments the heap: see bot/server.py `setup_socket_reads`); 0 keeps asyncio's size.
    socket_read_bytes: int = Field(default=16384, ge=0, le=1 << 20)
    # "text" or "json" (one JSON object a line, never message texts).
    log_format: str = "text"

    # Comma-separated words or phrases that make a group message a question for the bot even without a
    # mention, reply or command (Telegram with privacy mode off, Zalo OA groups), e.g. "cccd,căn cước".
    group_question_words: str = ""
    # Show "typing…" when the first reply to a message has not gone out after this many seconds (0: never).
    typing_after_seconds: float = Field(default=1.0, ge=0, le=60)

    # Comma-separated "channel:user_id" pairs allowed to link groups to hamlets.
    officers: str = ""
    # Comma-separated "channel:user_id:COMMUNE_CODE" digital-tech team members allowed to broadcast to
    # their commune ("*" for every commune). Officers may broadcast anywhere and approve broadcasts.
    team: str = ""

    # Broadcast sender (`cccd-bot broadcast send`): pacing per channel, retries, the single-sender lease.
    # 25/s keeps under Telegram's ~30/s; raise it only with paid broadcasts (up to 1000/s).
    broadcast_telegram_rate: float = Field(default=25.0, gt=0, le=1000)
    broadcast_zalo_rate: float = Field(default=20.0, gt=0, le=60)
    broadcast_group_spacing: float = Field(default=3.0, ge=3.0)
    broadcast_private_spacing: float = Field(default=1.0, ge=1.0)
    broadcast_concurrency: int = Field(default=8, ge=1, le=64)
    broadcast_max_attempts: int = Field(default=5, ge=1, le=20)
    broadcast_lease_ttl: float = Field(default=10.0, ge=4.0, le=300)
    # Seconds a platform may take to answer one broadcast message before the call counts as timed out.
    broadcast_read_timeout: float = Field(default=10.0, gt=0.1, le=120)
    # On Monday morning, tell each hamlet group how many people there used the guide in the past week.
    broadcast_weekly_summary: bool = False

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        # IT people copy addresses from PostgreSQL's or a host's documentation ("postgres://…",
        # "postgresql://…", "sqlite:///…"): name the async driver the bot runs on for them.
        value = value.strip()
        for plain, driver in _PLAIN_URL_SCHEMES:
            if value.startswith(plain):
                value = driver + value[len(plain):]
                break
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "CCCD_DATABASE_URL must start with sqlite+aiosqlite:// or postgresql+asyncpg://"
            )
        return value

    @field_validator("public_url", "zalo_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("https://", "http://")) or any(c.isspace() for c in value):
            raise ValueError("must be a web address starting with https:// (or http://)")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"CCCD_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        return level

    def team_members(self) -> dict[tuple[str, str], set[str]]:
        """Return (channel, user id) -> the commune codes the team member may broadcast to ("*": all)."""
        members: dict[tuple[str, str], set[str]] = {}
        for item in self.team.split(","):
            parts = item.strip().split(":")
            if len(parts) == 3 and all(parts):
                members.setdefault((parts[0], parts[1]), set()).add(parts[2])
        return members
    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        fmt = value.strip().lower()
        if fmt not in ("text", "json"):
            raise ValueError("CCCD_LOG_FORMAT must be text or json")
        return fmt

    def zalo_bot_mentions(self) -> list[str]:
        """The configured display names of the Zalo bot, without a leading "@"."""
        return [n.strip().lstrip("@").strip() for n in self.zalo_bot_mention_names.split(",") if n.strip().lstrip("@").strip()]

    def question_words(self) -> list[str]:
        """The configured group question words (empty: only mentions, replies and commands count)."""
        return [w.strip() for w in self.group_question_words.split(",") if w.strip()]

    def officer_ids(self) -> set[tuple[str, str]]:
        """Return the (channel, user id) pairs of registered officers."""
        pairs = set()
        for item in self.officers.split(","):
            channel, _, user = item.strip().partition(":")
            if channel and user:
                pairs.add((channel, user))
        return pairs
