"""The `cccd-bot` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from bot.catalog import Catalog, load_catalog


def _settings():
    from bot.config import Settings

    try:
        return Settings()
    except ValidationError as exc:
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            print(f"error: configuration CCCD_{field.upper()}: {err['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message (our messages never carry what people wrote)."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def _formatter() -> logging.Formatter:
    """CCCD_LOG_FORMAT=json gives JSON lines; anything unreadable falls back to text."""
    import os

    if os.environ.get("CCCD_LOG_FORMAT", "").strip().lower() == "json":
        return JsonFormatter()
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


def _catalog_or_exit(settings) -> Catalog:
    catalog = load_catalog(settings.content_dir)
    if catalog.problems:
        for problem in catalog.problems:
            print(f"content error: {problem}", file=sys.stderr)
        print(f"error: {len(catalog.problems)} content problem(s); the bot will not start", file=sys.stderr)
        raise SystemExit(1)
    return catalog


async def _service(settings, catalog):
    from bot.service import ChatService
    from storage.db import Database

    db = Database(settings.database_url)
    await db.migrate()
    return ChatService(db, catalog, settings)


def cmd_content_check(args) -> int:
    settings = _settings()
    catalog = load_catalog(settings.content_dir)
    for problem in catalog.problems:
        print(problem)
    if catalog.problems:
        print(f"{len(catalog.problems)} problem(s)", file=sys.stderr)
        return 1
    review = [t.id for t in catalog.topics.values() if t.needs_review]
    steps_review = [s for s in catalog.steps if s.review_note]
    print(
        f"content OK: {len(catalog.steps)} steps, {len(catalog.topics)} topics "
        f"({sum(len(t.examples) for t in catalog.topics.values())} examples), "
        f"{len(catalog.messages)} messages, {len(review)} topics and {len(steps_review)} steps marked for review"
    )
    if args.review:
        for step in steps_review:
            print(f"review: step {catalog.step_number(step.slug)} {step.slug}: {step.review_note}")
        for tid in review:
            print(f"review: {tid}: {catalog.topics[tid].review_note}")
    return 0


def cmd_db_upgrade(args) -> int:
    from storage.migrate import upgrade_sync

    settings = _settings()
    upgrade_sync(settings.database_url)
    print("database is up to date")
    return 0


def cmd_hamlets_import(args) -> int:
    from storage import registry

    settings = _settings()
    try:
        data = Path(args.file).read_bytes()
        rows = registry.parse_csv(data)
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    except registry.CsvError as exc:
        print(f"error: {args.file}:\n{exc}", file=sys.stderr)
        return 1

    async def run() -> tuple[int, int]:
        from storage.db import Database

        db = Database(settings.database_url)
        try:
            await db.migrate()
            async with db.transaction() as session:
                return await registry.import_rows(session, rows)
        finally:
            await db.close()

    communes, hamlets = asyncio.run(run())
    print(f"imported {hamlets} hamlet(s) in {communes} commune(s)")
    return 0


def cmd_chat(args) -> int:
    from bot.channels.console import ConsoleChannel

    settings = _settings()
    catalog = _catalog_or_exit(settings)

    async def run() -> None:
        service = await _service(settings, catalog)
        try:
            await ConsoleChannel(service, group=args.group, user=args.user).run()
        finally:
            await service.db.close()

    asyncio.run(run())
    return 0


def _ask_record(matcher, catalog: Catalog, question: str) -> dict:
    from bot.matcher import Decision

    match = matcher.match(question)
    if match.decision is Decision.ANSWER:
        topic = match.candidates[0].topic
        return {"topic": topic, "score": match.score, "answer": catalog.topics[topic].answer}
    if match.decision in (Decision.CHOOSE, Decision.ASK_BACK):
        text = catalog.msg("faq_choices_prompt")
    else:
        text = catalog.msg("faq_unknown")
    return {
        "topic": None,
        "score": match.score,
        "answer": text,
        "decision": match.decision.value,
        "candidates": [c.topic for c in match.candidates],
    }


def cmd_ask(args) -> int:
    from bot.matcher import Matcher

    settings = _settings()
    catalog = _catalog_or_exit(settings)
    matcher = Matcher(catalog)
    questions = [" ".join(args.question)] if args.question else (line.rstrip("\n") for line in sys.stdin)
    for question in questions:
        record = _ask_record(matcher, catalog, question)
        if args.json:
            print(json.dumps(record, ensure_ascii=False), flush=True)
        else:
            print(record["answer"] if record["topic"] else f"{catalog.msg('ask_unsure')} {record['answer']}")
            print()
    return 0


def cmd_faq_unanswered(args) -> int:
    from bot.unanswered import group_questions
    from storage import logs
    from storage.db import Database

    settings = _settings()

    async def run():
        db = Database(settings.database_url)
        try:
            await db.migrate()
            async with db.transaction() as session:
                return await logs.low_confidence_texts(session)
        finally:
            await db.close()

    rows = asyncio.run(run())
    groups = group_questions([t for t, _ in rows])[: args.limit]
    if args.json:
        for g in groups:
            print(json.dumps({"count": g.count, "text": g.text, "variants": g.variants}, ensure_ascii=False))
    else:
        if not groups:
            print("no unanswered questions")
        for g in groups:
            print(f"{g.count:5d}  {g.text}")
            for v in g.variants[1:4]:
                print(f"       ~ {v}")
    return 0


def cmd_serve(args) -> int:
    from aiohttp import web

    from bot.server import CHANNELS, create_app

    settings = _settings()
    catalog = _catalog_or_exit(settings)
    host = args.host or settings.host
    port = args.port or settings.port
    if args.port:
        settings.port = args.port  # names this instance for the sender lease (<host>:<port>)
    if settings.database_url.startswith("sqlite") and args.role != "all":
        print("error: --role web/sender needs PostgreSQL (CCCD_DATABASE_URL=postgresql+asyncpg://...)", file=sys.stderr)
        return 2
    app = create_app(settings, catalog, role=args.role)
    for status in app[CHANNELS].values():
        print(f"channel {status.name}: {status.detail}", flush=True)
    print(f"role {args.role}: listening on http://{host}:{port} (health: /healthz, /readyz, /metrics)", flush=True)
    web.run_app(app, host=host, port=port, print=None, access_log=None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cccd-bot", description="Chatbot hướng dẫn làm căn cước trực tuyến")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    chat = sub.add_parser("chat", help="chat with the bot in the terminal (reads a line a message from a pipe)")
    chat.add_argument("--group", metavar="HAMLET_CODE", help="behave as a message in that hamlet's group")
    chat.add_argument("--user", default="console-user", help="the sender id to use")
    chat.set_defaults(func=cmd_chat)

    serve = sub.add_parser("serve", help="run the server with every configured channel")
    serve.add_argument("--host", help="address to listen on (CCCD_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (CCCD_PORT, default 8080)")
    serve.add_argument(
        "--role",
        choices=("all", "web", "sender"),
        default="all",
        help="web: receive only; sender: deliver the outbox only; all: both (default)",
    )
    serve.set_defaults(func=cmd_serve)

    ask = sub.add_parser("ask", help="answer questions from the FAQ (one a line from stdin when none is given)")
    ask.add_argument("question", nargs="*")
    ask.add_argument("--json", action="store_true", help='print {"topic", "score", "answer"} a line')
    ask.set_defaults(func=cmd_ask)

    content = sub.add_parser("content", help="content commands")
    content_sub = content.add_subparsers(dest="content_command", required=True)
    check = content_sub.add_parser("check", help="validate the content files")
    check.add_argument("--review", action="store_true", help="list the topics marked for review")
    check.set_defaults(func=cmd_content_check)

    db = sub.add_parser("db", help="database commands")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)

    hamlets = sub.add_parser("hamlets", help="the registry of communes and hamlets")
    hamlets_sub = hamlets.add_subparsers(dest="hamlets_command", required=True)
    imp = hamlets_sub.add_parser("import", help="import communes and hamlets from a CSV file")
    imp.add_argument("file")
    imp.set_defaults(func=cmd_hamlets_import)

    faq = sub.add_parser("faq", help="FAQ maintenance")
    faq_sub = faq.add_subparsers(dest="faq_command", required=True)
    un = faq_sub.add_parser("unanswered", help="most frequent unanswered or low-confidence questions")
    un.add_argument("--limit", type=int, default=30)
    un.add_argument("--json", action="store_true")
    un.set_defaults(func=cmd_faq_unanswered)

    from bot.channels.zalo_oa import register_cli as register_zalo_oa_cli

    register_zalo_oa_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_formatter())
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, handlers=[handler])
    if not args.verbose:
        # CCCD_LOG_LEVEL applies to the bot's own loggers; libraries stay at warnings.
        level = _settings().log_level
        for name in ("bot", "storage"):
            logging.getLogger(name).setLevel(level)
    try:
        return args.func(args) or 0
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as command-line tools do.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
