"""A real database that also notes what was still running when the server closed it."""

from __future__ import annotations

from collections.abc import Callable

from storage.db import Database


class ClosingDatabase(Database):
    """A database that notes how many chats were still being handled when it was closed."""

    watch: Callable[[], int] = staticmethod(lambda: 0)
    busy_at_close: int | None = None

    async def close(self) -> None:
        if self.busy_at_close is None:
            self.busy_at_close = self.watch()
        await super().close()
