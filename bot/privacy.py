"""The pseudonym salt: configured, or generated at first start and kept in the database.

Statistics count people by pseudonym, a salted hash of (channel, platform id). With a public salt anyone
could compute a person's pseudonym from their Telegram id, so the salt is a secret of the installation:
`CCCD_PSEUDONYM_SALT` when set, otherwise one generated once and stored in the key-value table, shared by
every process (like the webhook secret).

Installations from before issue #10 used the public default "cccd-bot". Their statistics must keep
counting a person once across the change, so when the database already holds pseudonyms and no salt is
stored, that old default is stored instead of a new salt: nothing changes for them, and the operator can
move to a secret salt by setting CCCD_PSEUDONYM_SALT (counts across the change then split, once).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime

from sqlalchemy import select

from storage import kv
from storage.db import Database
from storage.models import GuideEvent, QueryLog

log = logging.getLogger(__name__)

KV_SALT = "pseudonym.salt"
LEGACY_SALT = "cccd-bot"


async def _has_pseudonyms(session) -> bool:
    for column in (QueryLog.user_ref, QueryLog.chat_ref, GuideEvent.user_ref):
        found = await session.execute(select(column).where(column.is_not(None)).limit(1))
        if found.first() is not None:
            return True
    return False


async def load_salt(db: Database, configured: str | None, now: datetime) -> str:
    """Return the salt to use: the configured one, the stored one, or one stored now (see the module)."""
    if configured:
        return configured
    for _ in range(3):
        async with db.transaction() as session:
            stored = await kv.get(session, KV_SALT)
            if stored and isinstance(stored[0].get("salt"), str) and stored[0]["salt"]:
                return stored[0]["salt"]
            legacy = await _has_pseudonyms(session)
            salt = LEGACY_SALT if legacy else secrets.token_hex(32)
            if await kv.put_if_version(session, KV_SALT, {"salt": salt, "legacy": legacy}, stored[1] if stored else None, now):
                if legacy:
                    log.warning(
                        "pseudonyms: existing statistics use the old public salt; kept so that counts stay whole "
                        "(set CCCD_PSEUDONYM_SALT to a secret to change it)"
                    )
                else:
                    log.info("pseudonyms: generated a salt and stored it")
                return salt
    raise RuntimeError("cannot store the pseudonym salt")


def pseudonym(salt: str, channel: str, external_id: str) -> str:
    """A stable pseudonymous id: statistics can count people without knowing them."""
    return hashlib.sha256(f"{salt}:{channel}:{external_id}".encode()).hexdigest()[:24]


def erasure_ref(salt: str, channel: str, external_id: str) -> str:
    """The reference of an erased person: salted like a pseudonym, but never equal to one."""
    return hashlib.sha256(f"{salt}:erased:{channel}:{external_id}".encode()).hexdigest()[:40]
