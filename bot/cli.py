"""The `cccd-bot` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

from bot.catalog import Catalog, load_catalog
from bot.startup import OperatorError, check_database, check_port, load_settings, port_error, say


def _settings():
    return load_settings()


def _database_settings():
    """The settings, with the database checked: a SQLite folder is created, PostgreSQL reached."""
    settings = load_settings()
    check_database(settings.database_url)
    return settings


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
            print(say("content_problem", problem=problem), file=sys.stderr)
        raise OperatorError(say("content_refused", count=len(catalog.problems)), 1)
    return catalog


async def _service(settings, catalog):
    from bot.service import ChatService
    from storage.db import Database

    db = Database(settings.database_url)
    await db.migrate()
    return ChatService(db, catalog, settings)


def _web_text_problems(settings) -> list[str]:
    """The problems of web.yaml (the web chat page and the posters) and dashboard.yaml, one a line."""
    from bot.web.texts import TextsError, load_dashboard_texts, load_texts

    problems: list[str] = []
    for load in (load_texts, load_dashboard_texts):
        try:
            load(settings.content_dir)
        except TextsError as exc:
            problems += str(exc).splitlines()
    return problems


def _broadcast_text_problems() -> list[str]:
    """The problems of broadcasts.yaml (opt-out words, /phatthanh, reminders and schedules)."""
    import yaml

    from bot.broadcasts.optout import BroadcastContentError, load
    from bot.catalog import read_problem

    load.cache_clear()
    try:
        load()
    except BroadcastContentError as exc:
        return [f"{exc.file}: {exc.key}: {say(exc.code, **exc.params)}"]
    except (OSError, ValueError, yaml.YAMLError) as exc:
        return [f"broadcasts.yaml: -: {read_problem(exc)}".replace("\n", " ")]
    return []


def content_problems(settings, catalog: Catalog) -> list[str]:
    """Every problem of the content the server reads, one a line starting with the file's name: the catalog
    (messages, steps, FAQ, keywords, matching, services, synonyms), web.yaml, dashboard.yaml, broadcasts.yaml
    and operator.yaml."""
    from bot.startup import read_operator_texts

    return (
        [str(p) for p in catalog.problems] + _web_text_problems(settings) + _broadcast_text_problems()
        + read_operator_texts()[1]
    )


def _content_or_exit(settings) -> Catalog:
    """The catalog, once every content file the server reads is checked: a broken dashboard.yaml stops the
    start with its problems, not a failure on every dashboard page later."""
    catalog = load_catalog(settings.content_dir)
    problems = content_problems(settings, catalog)
    if problems:
        for problem in problems:
            print(say("content_problem", problem=problem), file=sys.stderr)
        raise OperatorError(say("content_refused", count=len(problems)), 1)
    return catalog


def cmd_content_check(args) -> int:
    settings = _settings()
    catalog = load_catalog(settings.content_dir)
    problems = content_problems(settings, catalog)
    for problem in problems:
        print(problem)
    if problems:
        print(say("content_problems", count=len(problems)), file=sys.stderr)
        return 1
    review = [t.id for t in catalog.topics.values() if t.needs_review]
    steps_review = [s for s in catalog.steps if s.review_note]
    examples = sum(len(t.examples) for t in catalog.topics.values())
    print(say(
        "content_ok", steps=len(catalog.steps), topics=len(catalog.topics), examples=examples,
        messages=len(catalog.messages), review_topics=len(review), review_steps=len(steps_review),
    ))
    if args.review:
        for step in steps_review:
            print(say("review_step", number=catalog.step_number(step.slug), slug=step.slug, note=step.review_note))
        for tid in review:
            print(say("review_topic", id=tid, note=catalog.topics[tid].review_note))
        for topic in catalog.topics.values():
            for start, changed in topic.later:
                if changed.needs_review:
                    print(say("review_change", id=topic.id, day=f"{start:%d/%m/%Y}", note=changed.review_note))
    return 0


def cmd_db_upgrade(args) -> int:
    from storage.migrate import upgrade_sync

    settings = _database_settings()
    upgrade_sync(settings.database_url)
    print(say("db_upgraded"))
    return 0


def cmd_db_retention(args) -> int:
    from storage import erasure

    days = _database_settings().query_text_retention_days
    texts, tombstones = in_database(lambda session: erasure.apply_retention(session, datetime.now(timezone.utc), days))
    print(say("db_retention_done", texts=texts, days=days, tombstones=tombstones))
    return 0


def cmd_hamlets_import(args) -> int:
    from storage import registry

    settings = _database_settings()
    try:
        data = Path(args.file).read_bytes()
        rows = registry.parse_csv(data)
    except OSError as exc:
        raise OperatorError(say("file_unreadable", path=args.file, reason=exc.strerror), 1) from None
    except registry.CsvError as exc:
        detail = "\n".join(say(code, **params) for code, params in exc.problems)
        raise OperatorError(say("file_invalid", path=args.file, detail=detail), 1) from None

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
    print(say("hamlets_imported", hamlets=hamlets, communes=communes))
    return 0


def _log_to_file(path: str) -> None:
    """Send the log to a file: in the terminal chat, log lines would cut into the conversation."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    # Warnings (library deprecations and the like) go to the log too, not to the screen.
    logging.captureWarnings(True)


def cmd_chat(args) -> int:
    from bot.channels.console import ConsoleChannel

    settings = _database_settings()
    catalog = _catalog_or_exit(settings)
    if args.log or sys.stdin.isatty():
        path = args.log or "cccd-bot-chat.log"
        _log_to_file(path)
        if sys.stdin.isatty():
            print(say("chat_log", path=path))

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
        record = {"topic": topic, "score": match.score, "answer": catalog.topic_on(topic, datetime.now(timezone.utc)).answer}
        if match.also:  # the message asked a second thing, about another topic
            record["also"] = [c.topic for c in match.also]
        return record
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


def _accepted_examples(settings) -> dict[str, list[str]]:
    """The examples admins accepted on the dashboard, so that `ask` answers as the running bot does.

    `ask` also works where no database was ever made (a content writer's laptop): it never creates one,
    and reads none from a SQLite file that does not exist. A database that cannot be read is said on
    stderr (stdout stays the answers, for scripts) and the content alone answers."""
    from sqlalchemy.engine import make_url

    from storage import unanswered_marks
    from storage.db import Database

    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).is_file()):
        return {}

    async def read() -> dict[str, list[str]]:
        db = Database(settings.database_url)
        try:
            async with db.transaction() as session:
                return await unanswered_marks.accepted_examples(session)
        finally:
            await db.close()

    try:
        return asyncio.run(read())
    except Exception as exc:  # unreachable server, tables not made yet: the content still answers
        print(say("ask_no_examples", error=type(exc).__name__), file=sys.stderr)
        return {}


def cmd_ask(args) -> int:
    from bot.catalog import with_added_examples
    from bot.matcher import Matcher

    settings = _settings()
    catalog = _catalog_or_exit(settings)
    added = _accepted_examples(settings)
    if added:
        catalog = with_added_examples(catalog, added)
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


def in_database(fn):
    """Run `fn(session)` in one transaction on the configured, checked and migrated database."""
    from storage.db import Database

    settings = _database_settings()

    async def run():
        db = Database(settings.database_url)
        try:
            await db.migrate()
            async with db.transaction() as session:
                return await fn(session)
        finally:
            await db.close()

    return asyncio.run(run())


def cmd_faq_unanswered(args) -> int:
    from bot.unanswered import group_questions
    from storage import logs

    rows = in_database(logs.low_confidence_texts)
    groups = group_questions([t for t, _ in rows])[: args.limit]
    if args.json:
        for g in groups:
            print(json.dumps({"count": g.count, "text": g.text, "variants": g.variants}, ensure_ascii=False))
    else:
        if not groups:
            print(say("no_unanswered"))
        for g in groups:
            print(f"{g.count:5d}  {g.text}")
            for v in g.variants[1:4]:
                print(f"       ~ {v}")
    return 0


def cmd_poster(args) -> int:
    from bot.posters import PosterError, links, poster_for_code
    from bot.web.texts import TextsError, load_texts

    settings = _settings()
    catalog = _catalog_or_exit(settings)
    try:
        texts = load_texts(settings.content_dir)
    except TextsError as exc:
        print(say("poster_content_error", error=exc), file=sys.stderr)
        return 1

    async def run():
        service = await _service(settings, catalog)
        try:
            pdf = await poster_for_code(service, args.hamlet, texts)
            hamlet = (await service.hamlets()).get(args.hamlet)
            return pdf, hamlet
        finally:
            await service.db.close()

    try:
        pdf, hamlet = asyncio.run(run())
    except PosterError as exc:
        print(say("poster_error", error=texts.error(exc)), file=sys.stderr)
        return 1
    out = Path(args.out)
    try:
        out.write_bytes(pdf)
    except OSError as exc:
        print(say("not_written", path=out, reason=exc.strerror), file=sys.stderr)
        return 1
    found, missing = links(hamlet, settings, texts)
    print(say("poster_done", hamlet=hamlet.label, path=out))
    for link in found:
        print(f"  {link.label}: {link.url}")
    if missing:
        print(say("poster_no_qr", names=", ".join(missing)), file=sys.stderr)
    review = [str(catalog.step_number(s.slug)) for s in catalog.steps if s.review_note]
    if review:
        print(say("poster_steps_in_review", steps=", ".join(review)), file=sys.stderr)
    return 0


def cmd_serve(args) -> int:
    from aiohttp import web

    from bot.server import CHANNELS, create_app, setup_gc, setup_socket_reads

    settings = _settings()
    catalog = _content_or_exit(settings)
    host = args.host or settings.host
    port = args.port or settings.port
    if args.port:
        settings.port = args.port  # names this instance for the sender lease (<host>:<port>)
    if settings.database_url.startswith("sqlite") and args.role != "all":
        print(say("error", message=say("role_needs_postgres")), file=sys.stderr)
        return 2
    check_port(host, port)
    check_database(settings.database_url)
    app = create_app(settings, catalog, role=args.role)
    setup_gc(app)
    setup_socket_reads(settings.socket_read_bytes)
    for status in app[CHANNELS].values():
        print(say("serve_channel", name=status.name, detail=status.detail), flush=True)
    print(say("serve_listening", role=args.role, host=host, port=port), flush=True)
    try:
        web.run_app(app, host=host, port=port, print=None, access_log=None)
    except OSError as exc:
        # Taken between the check and the start by another program.
        if exc.errno is None:
            raise
        raise port_error(exc, host, port) from None
    return 0


class Parser(argparse.ArgumentParser):
    """argparse in Vietnamese: section titles, the help option and errors."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("add_help", False)
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)
        self._positionals.title = say("positionals")
        self._optionals.title = say("options")
        self.add_argument("-h", "--help", action="help", default=argparse.SUPPRESS, help=say("help_option"))

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, say("arg_error", message=_vietnamese(message), prog=self.prog) + "\n")


_ARG_ERRORS = (
    (re.compile(r"^argument (?P<name>\S+): invalid choice: '(?P<value>.*)' \(choose from (?P<choices>.*)\)$"), "arg_invalid_choice"),
    (re.compile(r"^the following arguments are required: (?P<names>.*)$"), "arg_required"),
    (re.compile(r"^unrecognized arguments: (?P<names>.*)$"), "arg_unrecognized"),
    (re.compile(r"^argument (?P<name>\S+): invalid \S+ value: '(?P<value>.*)'$"), "arg_invalid_value"),
    (re.compile(r"^argument (?P<name>\S+): expected one argument$"), "arg_expected_one"),
    (re.compile(r"^argument (?P<name>\S+): expected at least one argument$"), "arg_expected_some"),
    (re.compile(r"^one of the arguments (?P<names>.*) is required$"), "arg_one_of"),
    (re.compile(r"^argument (?P<name>\S+): not allowed with argument (?P<other>\S+)$"), "arg_not_together"),
    (re.compile(r"^argument (?P<name>\S+): ignored explicit argument '(?P<value>.*)'$"), "arg_no_value"),
)


def _vietnamese(message: str) -> str:
    """argparse's English error, in Vietnamese when it is one of the usual ones."""
    for pattern, key in _ARG_ERRORS:
        match = pattern.match(message)
        if match:
            values = match.groupdict()
            if "choices" in values:
                values["choices"] = values["choices"].replace("'", "")
            return say(key, **values)
    return message


class _Formatter(argparse.HelpFormatter):
    def add_usage(self, usage, actions, groups, prefix=None):
        super().add_usage(usage, actions, groups, say("usage") + " " if prefix is None else prefix)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cccd-bot", description=say("description"))
    parser.add_argument("-v", "--verbose", action="store_true", help=say("help_verbose"))
    sub = parser.add_subparsers(dest="command", required=True, title=say("help_commands"), metavar="LỆNH")

    chat = sub.add_parser("chat", help=say("help_chat"), description=say("help_chat"))
    chat.add_argument("--group", metavar="MÃ_THÔN", help=say("help_chat_group"))
    chat.add_argument("--user", default="console-user", metavar="MÃ", help=say("help_chat_user"))
    chat.add_argument("--log", metavar="TỆP", help=say("help_chat_log"))
    chat.set_defaults(func=cmd_chat)

    serve = sub.add_parser("serve", help=say("help_serve"), description=say("help_serve"))
    serve.add_argument("--host", metavar="ĐỊA_CHỈ", help=say("help_serve_host"))
    serve.add_argument("--port", type=int, metavar="CỔNG", help=say("help_serve_port"))
    serve.add_argument("--role", choices=("all", "web", "sender"), default="all", help=say("help_serve_role"))
    serve.set_defaults(func=cmd_serve)

    ask = sub.add_parser("ask", help=say("help_ask"), description=say("help_ask"))
    ask.add_argument("question", nargs="*", metavar="CÂU_HỎI", help=say("help_ask_question"))
    ask.add_argument("--json", action="store_true", help=say("help_ask_json"))
    ask.set_defaults(func=cmd_ask)

    content = sub.add_parser("content", help=say("help_content"), description=say("help_content"))
    content_sub = content.add_subparsers(dest="content_command", required=True, title=say("help_commands"), metavar="LỆNH")
    check = content_sub.add_parser("check", help=say("help_content_check"), description=say("help_content_check"))
    check.add_argument("--review", action="store_true", help=say("help_content_review"))
    check.set_defaults(func=cmd_content_check)

    db = sub.add_parser("db", help=say("help_db"), description=say("help_db"))
    db_sub = db.add_subparsers(dest="db_command", required=True, title=say("help_commands"), metavar="LỆNH")
    db_sub.add_parser("upgrade", help=say("help_db_upgrade"), description=say("help_db_upgrade")).set_defaults(func=cmd_db_upgrade)
    db_sub.add_parser("retention", help=say("help_db_retention"), description=say("help_db_retention")).set_defaults(
        func=cmd_db_retention
    )

    hamlets = sub.add_parser("hamlets", help=say("help_hamlets"), description=say("help_hamlets"))
    hamlets_sub = hamlets.add_subparsers(dest="hamlets_command", required=True, title=say("help_commands"), metavar="LỆNH")
    imp = hamlets_sub.add_parser("import", help=say("help_hamlets_import"), description=say("help_hamlets_import"))
    imp.add_argument("file", metavar="TỆP", help=say("help_hamlets_file"))
    imp.set_defaults(func=cmd_hamlets_import)

    faq = sub.add_parser("faq", help=say("help_faq"), description=say("help_faq"))
    faq_sub = faq.add_subparsers(dest="faq_command", required=True, title=say("help_commands"), metavar="LỆNH")
    un = faq_sub.add_parser("unanswered", help=say("help_faq_unanswered"), description=say("help_faq_unanswered"))
    un.add_argument("--limit", type=int, default=30, metavar="SỐ_DÒNG", help=say("help_faq_limit"))
    un.add_argument("--json", action="store_true", help=say("help_faq_json"))
    un.set_defaults(func=cmd_faq_unanswered)

    poster = sub.add_parser("poster", help=say("help_poster"), description=say("help_poster"))
    poster.add_argument("--hamlet", required=True, metavar="MÃ_THÔN", help=say("help_poster_hamlet"))
    poster.add_argument("--out", required=True, metavar="TỆP.pdf", help=say("help_poster_out"))
    poster.set_defaults(func=cmd_poster)

    from bot.broadcasts.cli import register_cli as register_broadcast_cli
    from bot.channels.zalo_oa import register_cli as register_zalo_oa_cli

    register_broadcast_cli(sub)

    register_zalo_oa_cli(sub)
    from bot.web.cli import register_cli as register_officers_cli

    register_officers_cli(sub)
    return parser


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
    except OperatorError as exc:  # operator.yaml itself is wrong: its problems, without its words
        print(exc, file=sys.stderr)
        return exc.code
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_formatter())
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, handlers=[handler])
    try:
        if not args.verbose:
            # CCCD_LOG_LEVEL applies to the bot's own loggers; libraries stay at warnings.
            level = _settings().log_level
            for name in ("bot", "storage"):
                logging.getLogger(name).setLevel(level)
        return args.func(args) or 0
    except OperatorError as exc:
        print(say("error", message=exc), file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as command-line tools do.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
