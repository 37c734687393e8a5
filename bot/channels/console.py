"""The terminal channel: one line in, the bot's replies out, with numbered choices."""

from __future__ import annotations

import sys
from typing import TextIO

from bot.messages import Capabilities, ChatType, Incoming
from bot.render import render
from bot.service import ChatService
from storage import people

CHANNEL = "console"
CAPABILITIES = Capabilities(buttons=False, max_text=4000)


class ConsoleChannel:
    """Chat with the bot in a terminal or through a pipe."""

    def __init__(self, service: ChatService, *, user: str = "console-user", name: str = "", group: str | None = None):
        self.service = service
        self.user = user
        self.name = name
        self.group = group
        self.chat_id = f"group-{group}" if group else user

    async def link_group(self) -> None:
        """Make the console's group chat belong to the hamlet given with --group."""
        if not self.group:
            return
        directory = await self.service.hamlets()
        hamlet = directory.get(self.group)
        if hamlet is None:
            from bot.startup import OperatorError, say

            raise OperatorError(say("unknown_hamlet", code=self.group), 1)
        async with self.service.db.transaction() as session:
            chat = await people.touch_chat(session, CHANNEL, self.chat_id, ChatType.GROUP.value, self.service.clock())
            chat.hamlet_code = hamlet.code

    def incoming(self, text: str) -> Incoming:
        return Incoming(
            channel=CHANNEL,
            chat_id=self.chat_id,
            chat_type=ChatType.GROUP if self.group else ChatType.PRIVATE,
            sender_id=self.user,
            sender_name=self.name,
            text=text,
            time=self.service.clock(),
            addressed=True,
        )

    async def say(self, text: str) -> list[str]:
        """Send one line to the bot; return the texts it answers, as the terminal shows them."""
        replies = await self.service.handle(self.incoming(text))
        hint = self.service.catalog.msg("choices_hint")
        out: list[str] = []
        for reply in replies:
            out.extend(render(reply, CAPABILITIES, hint).texts)
        return out

    async def run(self, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> None:
        """Read messages a line at a time until end of input."""
        await self.link_group()
        interactive = stdin.isatty()
        if interactive:
            print(self.service.catalog.msg("console_intro"), file=stdout)
            first = await self.say("/start")
            for text in first:
                print(f"\n{text}", file=stdout)
        while True:
            if interactive:
                print("\n> ", end="", file=stdout, flush=True)
            line = stdin.readline()
            if not line:
                break
            line = line.rstrip("\n")
            if not line.strip() and not interactive:
                continue
            for text in await self.say(line):
                print(text if not interactive else f"\n{text}", file=stdout)
                if not interactive:
                    print("---", file=stdout)
            stdout.flush()
