"""Fault runs of the load benchmark (`bench/load.py --fault MODE`, issue 11).

The same faults as tests/test_faults.py, with the same real processes and fakes (tests/fakes/), but at the
benchmark's scale and reported as figures instead of asserted: 200 chats each walk the nine-step guide
(/huongdan, then "next" eight times: 1,800 updates), posted by this process as Telegram does (each chat's
updates in order, each posted again until answered 2xx), at about `--fault-rate` updates per second in
all; the fake Bot API (tests/fakes/telegram_api.py, real HTTP) records every reply. A third of the way in:

  kill            SIGKILL of the (first) bot process, restarted at once
  pg-restart      PostgreSQL stopped (`pg_ctl stop -m fast`) for 10 s, then started
  pg-unreachable  every PostgreSQL process frozen (SIGSTOP) for 10 s: connections hang
  api-429         every sendMessage answered 429 retry_after 1 for 15 s
  api-5xx         every sendMessage answered 500 for 5 s, then 502 for 5 s
  api-timeout     every sendMessage answered nothing for 8 s (each call hangs past the client's 20 s)
  twins           no fault mid-stream: two processes started at the same moment on an empty database,
                  each chat's updates alternating between them

The PostgreSQL faults use a cluster of their own (initdb in a temporary folder, another port:
tests/fakes/pg_cluster.py), never the shared server. Each reply is "Bước k/9", so the report counts, over
all chats: replies lost (a step never received), duplicated (a step received twice), out of order (a step
first received after a later one), error replies ("trục trặc"), and the delay of each reply from the
update's first post, for all and for the updates the fault caught (first posted before it ended, answered
after it began).
"""

from __future__ import annotations

import asyncio
import collections
import random
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.catalog import load_valid_catalog  # noqa: E402
from tests.fakes.bot_process import TOKEN, BotProcess, WebhookPlatform, bot_env, free_port  # noqa: E402
from tests.fakes.pg_cluster import Cluster  # noqa: E402
from tests.fakes.telegram_api import FakeTelegramAPI  # noqa: E402

MODES = ("kill", "pg-restart", "pg-unreachable", "api-429", "api-5xx", "api-timeout", "twins")
STEPS = 9
GUIDE = [f"Bước {k}/{STEPS}" for k in range(1, STEPS + 1)]
BOT_USER = {"id": 123, "is_bot": True, "first_name": "Trợ lý", "username": "cccd_test_bot"}
OUTAGE = 10.0


def guide_updates(chat: int) -> list[dict]:
    """A person's walk through the guide: /huongdan, then the "next" button eight times."""
    user = {"id": chat, "is_bot": False, "first_name": "Lan"}
    private = {"id": chat, "type": "private", "first_name": "Lan"}
    out = []
    for k in range(STEPS):
        update_id = chat * 100 + k
        if k == 0:
            msg = {"message_id": update_id, "date": int(time.time()), "chat": private, "from": user, "text": "/huongdan",
                   "entities": [{"type": "bot_command", "offset": 0, "length": 9}]}
            out.append({"update_id": update_id, "message": msg})
        else:
            shown = {"message_id": 1, "date": int(time.time()), "chat": private, "from": BOT_USER, "text": "…"}
            out.append({"update_id": update_id, "callback_query": {"id": str(update_id), "from": user, "chat_instance": "c", "message": shown, "data": "g:n"}})
    return out


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def run(mode: str, db: str, db_url: str | None, workdir: Path, *, chats: int = 200, rate: float = 100.0, procs: int = 1) -> dict:
    """One fault run; returns the figures. `db_url`: the (reset) database for the modes without a cluster of their own."""
    random.seed(3)
    api = await FakeTelegramAPI(TOKEN, username=BOT_USER["username"]).start()
    cluster = None
    if mode in ("pg-restart", "pg-unreachable"):
        cluster = Cluster(free_port())
        await cluster.init()
        await cluster.start()
        db_url = cluster.url()
    if mode == "twins":
        procs = 2
    ports = [free_port() for _ in range(procs)]
    envs = [bot_env(db_url, api.base_url, port, f"fault-{i}") for i, port in enumerate(ports)]
    bots = [BotProcess(env, port, workdir / f"bot{i}.log") for i, (env, port) in enumerate(zip(envs, ports))]
    chat_ids = [50_000 + i for i in range(chats)]
    total = chats * STEPS
    first_post: dict[tuple[int, int], float] = {}
    answers: list[tuple[float, float, int | str]] = []
    window: dict[str, float] = {}
    readiness: list[int | None] = []
    try:
        if mode == "twins":
            await asyncio.gather(*(bot.start() for bot in bots))  # at the same moment, on an empty database
        else:
            for bot in bots:
                await bot.start()
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(bot.wait_ready(http) for bot in bots))
            platform = WebhookPlatform(
                http, timeout=5.0 if mode == "pg-unreachable" else 10.0,
                on_answer=lambda _url, status, at: answers.append((at, time.monotonic(), status)),
            )
            urls = [bot.hook_url for bot in bots]
            gap = chats / rate  # each chat posts about every `gap` seconds: `rate` updates a second in all

            async def walk(chat: int) -> None:
                await asyncio.sleep(random.uniform(0, gap))
                for k, update in enumerate(guide_updates(chat)):
                    first_post[(chat, k)] = time.monotonic()
                    await platform.deliver(urls[k % len(urls)], update)
                    await asyncio.sleep(random.uniform(0.75 * gap, 1.25 * gap))

            started = time.monotonic()
            streams = asyncio.gather(*(walk(chat) for chat in chat_ids))
            while platform.acknowledged < total // 3 and time.monotonic() - started < 300:
                await asyncio.sleep(0.05)
            acknowledged_before = platform.acknowledged
            window["start"] = time.monotonic()
            if mode == "kill":
                await bots[0].kill()  # SIGKILL: no shutdown, no drain
                bots[0] = BotProcess(envs[0], ports[0], workdir / "bot0.log")
                await bots[0].start()
                await bots[0].wait_ready(http)
                window["ready"] = time.monotonic()
            elif mode in ("pg-restart", "pg-unreachable"):
                if mode == "pg-restart":
                    await cluster.stop("fast")
                else:
                    cluster.freeze()
                while time.monotonic() - window["start"] < OUTAGE:
                    readiness.append(await bots[0].readyz(http, timeout=2.0))
                    await asyncio.sleep(0.5)
                if mode == "pg-restart":
                    await cluster.start()
                else:
                    cluster.thaw()
            elif mode == "api-429":
                api.fail(("sendMessage", "sendPhoto"), 429, retry_after=1, seconds=15.0)
                await asyncio.sleep(15.0)
            elif mode == "api-5xx":
                api.fail(("sendMessage", "sendPhoto"), 500, seconds=5.0)
                await asyncio.sleep(5.0)
                api.fail(("sendMessage", "sendPhoto"), 502, seconds=5.0)
                await asyncio.sleep(5.0)
            elif mode == "api-timeout":
                api.fail(("sendMessage", "sendPhoto"), 504, hang=25.0, seconds=8.0)
                await asyncio.sleep(8.0)
            window["end"] = time.monotonic()
            await asyncio.wait_for(streams, 600)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if all(len(set(t[:8] for t in api.texts(chat))) >= STEPS for chat in chat_ids):
                    break
                await asyncio.sleep(0.25)
            finished = time.monotonic()
            await asyncio.sleep(2.0)  # late duplicates, if any, arrive too
        versions = await alembic_versions(db_url) if mode == "twins" else None
    finally:
        if cluster is not None:
            cluster.thaw()
        await asyncio.gather(*(bot.stop() for bot in bots), return_exceptions=True)
        await api.close()
        if cluster is not None:
            await cluster.destroy()

    error = load_valid_catalog().msg("error")
    lost = duplicated = out_of_order = errors = 0
    delays: list[float] = []
    caught: list[float] = []
    arrivals: dict[tuple[int, int], float] = {}
    for call in api.calls_of("sendMessage"):
        if getattr(call, "refused", False):
            continue
        chat, text = call.params.get("chat_id"), str(call.params.get("text") or "")
        if text == error:
            errors += 1
        if text[:8] in GUIDE:
            arrivals.setdefault((chat, GUIDE.index(text[:8])), call.at)
    per_chat_dups = []
    for chat in chat_ids:
        received = [t[:8] for t in api.texts(chat) if t[:8] in GUIDE]
        lost += len(set(GUIDE) - set(received))
        dups = len(received) - len(set(received))
        duplicated += dups
        per_chat_dups.append(dups)
        highest = -1
        for step in dict.fromkeys(received):  # first arrivals, in order
            index = GUIDE.index(step)
            if index < highest:
                out_of_order += 1
            highest = max(highest, index)
        for k in range(STEPS):
            if (chat, k) in arrivals and (chat, k) in first_post:
                delay = arrivals[(chat, k)] - first_post[(chat, k)]
                delays.append(delay)
                if first_post[(chat, k)] <= window["end"] and arrivals[(chat, k)] >= window["start"]:
                    caught.append(delay)
    during = collections.Counter(status for posted, _answered, status in answers if window["start"] <= posted < window["end"])
    within = collections.Counter(status for posted, answered, status in answers if window["start"] <= posted and answered < window["end"])
    result = {
        "fault": mode,
        "db": db,
        "procs": procs,
        "updates": total,
        "chats": chats,
        "offered_per_s": rate,
        "acknowledged_before_fault": acknowledged_before,
        "fault_seconds": round(window["end"] - window["start"], 1),
        "lost": lost,
        "duplicated": duplicated,
        "max_duplicated_per_chat": max(per_chat_dups),
        "out_of_order": out_of_order,
        "error_replies": errors,
        "reply_delay_ms": {"p50": ms(pct(delays, 50)), "p99": ms(pct(delays, 99)), "max": ms(max(delays) if delays else None)},
        "caught_by_fault": {"replies": len(caught), "p50_ms": ms(pct(caught, 50)), "max_ms": ms(max(caught) if caught else None)},
        "webhook_answers_to_posts_made_during_fault": {str(k): v for k, v in during.items()},
        "webhook_answers_made_and_answered_during_fault": {str(k): v for k, v in within.items()},
        "webhook_answers_all": {str(k): v for k, v in platform.answers.items()},
        "all_replies_in_s": round(finished - started, 1),
    }
    if readiness:
        result["readyz_during_fault"] = {str(k): v for k, v in collections.Counter(readiness).items()}
    if "ready" in window:
        after = [c.at for c in api.calls_of("sendMessage") if c.at > window["ready"] and not getattr(c, "refused", False)]
        result["restart_ready_s"] = round(window["ready"] - window["start"], 2)
        result["first_reply_after_ready_s"] = round(min(after) - window["ready"], 3) if after else None
    if versions is not None:
        result["alembic_versions"] = versions
        result["tracebacks_in_logs"] = sum("Traceback" in bot.log_path.read_text(errors="replace") for bot in bots)
    refused = collections.Counter(str(getattr(c, "fault", "")) for c in api.calls_of("sendMessage") if getattr(c, "refused", False))
    if refused:
        result["refused_calls_by_fault"] = dict(refused)
    return result


async def alembic_versions(db_url: str) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return [row[0] for row in await conn.fetch("SELECT version_num FROM alembic_version")]
    finally:
        await conn.close()


def summary_line(result: dict) -> str:
    return (f"{result['fault']}: lost {result['lost']}, duplicated {result['duplicated']} (≤ {result['max_duplicated_per_chat']} a chat), "
            f"out of order {result['out_of_order']}, error replies {result['error_replies']}, "
            f"delay p50/p99/max {result['reply_delay_ms']['p50']}/{result['reply_delay_ms']['p99']}/{result['reply_delay_ms']['max']} ms; "
            f"caught by the fault {result['caught_by_fault']['replies']}, max {result['caught_by_fault']['max_ms']} ms")

