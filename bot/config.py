"""Configuration from `CCCD_*` environment variables and an optional `.env` file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/cccd-bot.sqlite3"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(BaseSettings):
    """Every setting of the bot; each maps to `CCCD_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="CCCD_", env_file=".env", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    content_dir: Path | None = None
    log_level: str = "INFO"
    # A salt makes pseudonymous user ids useless outside this installation.
    pseudonym_salt: str = "cccd-bot"

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
    # "text" or "json" (one JSON object a line, never message texts).
    log_format: str = "text"

    # Comma-separated words or phrases that make a group message a question for the bot even without a
    # mention, reply or command (Telegram with privacy mode off, Zalo OA groups), e.g. "cccd,căn cước".
    group_question_words: str = ""
    # Show "typing…" when the first reply to a message has not gone out after this many seconds (0: never).
    typing_after_seconds: float = Field(default=1.0, ge=0, le=60)

    # Comma-separated "channel:user_id" pairs allowed to link groups to hamlets.
    officers: str = ""

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "CCCD_DATABASE_URL must start with sqlite+aiosqlite:// or postgresql+asyncpg://"
            )
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"CCCD_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        return level

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
