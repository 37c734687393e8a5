"""Accepting a proposal on the dashboard makes the bot answer the question: end to end over HTTP.

One process serves the web chat and the dashboard (`cccd-bot serve`); a resident asks a question the
content does not cover, an officer proposes it as an example of a topic, the admin accepts it, and the
resident's same question is answered. A second process on the same database follows within its check.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from datetime import date, datetime, timezone

from aiohttp.test_utils import TestClient, TestServer

from bot.config import Settings
from bot.server import DATABASE, create_app
from bot.service import ChatService
from bot.web.app import PREFIX
from storage import accounts, registry, stats
from tests.conftest import EXAMPLE_CSV
from tests.web.conftest import CSRF_RE, PASSWORD
from tests.web.fixture import OTHER

QUESTION = "qr code trên thẻ quét không ra"
TOPIC = "hong_the_doi_thong_tin"


async def ask(client, text: str) -> str:
    resp = await client.post("/chat/api/message", json={"text": text})
    assert resp.status == 200, await resp.text()
    return "\n".join(t for r in (await resp.json())["replies"] for t in r["texts"])


async def ask_cli(db_url: str, text: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCCD_")} | {"CCCD_DATABASE_URL": db_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "ask", "--json", text, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0 and not err, err.decode()
    return json.loads(out)


async def sign_in(client, username: str) -> str:
    """Sign in; return the session's CSRF token, read from a page as a browser would."""
    token = CSRF_RE.search(await (await client.get(f"{PREFIX}/login")).text()).group(1)
    resp = await client.post(f"{PREFIX}/login", data={"username": username, "password": PASSWORD, "csrf": token}, allow_redirects=False)
    assert resp.status == 303
    return CSRF_RE.search(await (await client.get(f"{PREFIX}/unanswered")).text()).group(1)


async def test_an_accepted_proposal_is_answered_by_the_bot(db_url, catalog):
    topic = catalog.topics[TOPIC]
    answer_start = catalog.first_part(topic).splitlines()[0]
    app = create_app(Settings(_env_file=None, database_url=db_url, web_chat=True), catalog)
    async with TestClient(TestServer(app)) as client:
        db = app[DATABASE]
        async with db.transaction() as s:
            await registry.import_rows(s, registry.parse_csv(EXAMPLE_CSV.read_bytes()))
            now = datetime.now(timezone.utc)
            await accounts.add(s, "canbo", PASSWORD, "officer", "ngoc_trao", now)
            await accounts.add(s, "quantri", PASSWORD, "admin", None, now)

        # A resident of Tổ dân phố 2 asks; the content does not know the wording.
        assert (await client.post("/chat/api/start", json={"h": "ngoctrao_tdp02"})).status == 200
        first = await ask(client, QUESTION)
        assert answer_start not in first and catalog.msg("faq_unknown").splitlines()[0] in first

        # The commune's officer sees it on "Chưa trả lời được" and proposes it for the topic.
        token = await sign_in(client, "canbo")
        page = await (await client.get(f"{PREFIX}/unanswered")).text()
        row = re.search(r'<tr class="group">(.*?)</tr>', page, re.S).group(1)
        assert QUESTION in row
        propose = re.search(rf'href="({PREFIX}/unanswered/propose\?[^"]+)"', row).group(1).replace("&amp;", "&")
        form = await (await client.get(propose)).text()
        assert QUESTION in re.search(r'<ul class="variants" id="texts">(.*?)</ul>', form, re.S).group(1)
        assert f'<option value="{TOPIC}">' in form
        group = re.search(r'name="group" value="(-?\d+)"', form).group(1)
        resp = await client.post(
            f"{PREFIX}/unanswered/mark", data=[("csrf", token), ("action", "proposed"), ("topic", TOPIC), ("group", group)], allow_redirects=False
        )
        assert resp.status == 303
        content = await (await client.get(f"{PREFIX}/content")).text()
        assert QUESTION in content and f'action="{PREFIX}/proposals/' not in content, "only an admin decides"
        assert await ask(client, QUESTION) == first, "a proposal alone changes nothing"

        # The admin accepts it: the bot answers the same question at once.
        await client.post(f"{PREFIX}/logout", data={"csrf": token})
        token = await sign_in(client, "quantri")
        content = await (await client.get(f"{PREFIX}/content")).text()
        proposal = re.search(rf'action="{PREFIX}/proposals/(\d+)"', content).group(1)
        resp = await client.post(f"{PREFIX}/proposals/{proposal}", data={"csrf": token, "decision": "accepted"})
        page = await resp.text()
        assert "bot dùng chúng ngay" in page
        accepted = re.search(r'<table id="accepted">(.*?)</table>', page, re.S).group(1)
        assert QUESTION in accepted and "không dùng" not in accepted
        assert answer_start in await ask(client, QUESTION)
        # `cccd-bot ask` on the same database answers it too (people script the FAQ with it).
        assert (await ask_cli(db_url, QUESTION))["topic"] == TOPIC

        # Another process on the same database (a second replica) uses it after its periodic check.
        other = ChatService(db, catalog, Settings(_env_file=None, database_url=db_url))
        assert await other.load_examples() is True
        assert other.matcher.match(QUESTION).candidates[0].topic == TOPIC
        assert await other.load_examples() is False, "nothing changed: nothing rebuilt"

        # Withdrawn, the question is unanswered again, here and (after its check) there.
        withdraw = re.search(rf'action="({PREFIX}/examples/\d+/withdraw)"', page).group(1)
        page = await (await client.post(withdraw, data={"csrf": token})).text()
        assert "Chưa có câu ví dụ nào được thêm." in page
        assert answer_start not in await ask(client, QUESTION)
        assert await other.load_examples() is True
        assert QUESTION not in other.catalog.topics[TOPIC].examples


async def test_only_an_admin_accepts_and_only_the_communes_questions_are_proposed(client, sign_in, database):
    officer = await sign_in("officer")
    page = await (await officer.get(f"{PREFIX}/unanswered")).text()
    token = CSRF_RE.search(page).group(1)
    async with database.transaction() as s:
        theirs = await stats.unanswered_groups(s, date(2026, 11, 1), date(2026, 12, 1), OTHER, 10)
    assert len(theirs) == 1, "the other commune's one question"
    resp = await officer.post(
        f"{PREFIX}/unanswered/mark", data=[("csrf", token), ("action", "proposed"), ("topic", TOPIC), ("group", str(theirs[0][0]))]
    )
    assert resp.status == 404, "another commune's question cannot be proposed by number"
    assert (await officer.get(f"{PREFIX}/unanswered/propose?group={theirs[0][0]}")).status == 404
    ours = re.findall(r'name="group" value="(-?\d+)"', page)[0]
    resp = await officer.post(
        f"{PREFIX}/unanswered/mark", data=[("csrf", token), ("action", "proposed"), ("topic", TOPIC), ("group", ours)], allow_redirects=False
    )
    assert resp.status == 303
    assert (await officer.post(f"{PREFIX}/proposals/1", data={"csrf": token, "decision": "accepted"})).status == 403
    assert (await officer.post(f"{PREFIX}/examples/1/withdraw", data={"csrf": token})).status == 403


async def test_a_team_member_proposes_nothing(client, sign_in):
    team = await sign_in("team")
    page = await (await team.get(f"{PREFIX}/unanswered")).text()
    assert "/unanswered/propose" not in page and "lam can cuoc o dau vay" in page
    assert (await team.get(f"{PREFIX}/unanswered/propose?group=1")).status == 403
