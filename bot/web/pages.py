"""The dashboard's pages, forms and exports (server-rendered; the Vietnamese texts are in dashboard.yaml)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web
from aiohttp_session import get_session

from bot import figures
from bot.figures import HAMLET_SORTS, Period
from bot.report import to_csv, to_xlsx
from bot.unanswered import question_key
from bot.web import auth, links
from bot.web.app import CONFIG, PREFIX, VIEWER, forbidden, render, texts
from bot.web.auth import EDITORS, EVERYONE, roles
from storage import accounts, registry, stats, unanswered_marks

log = logging.getLogger(__name__)

# The menu: each page's path, its label being `nav_<page>` in dashboard.yaml.
NAV = ("overview", "hamlets", "funnel", "topics", "unanswered", "content", "registry", "broadcasts")
MAX_VARIANTS = 50
CHART_ROWS = 60


@dataclass
class Filters:
    period: Period
    commune: str | None
    communes: list[tuple[str, str]]
    error: str | None = None

    def query(self, **extra) -> str:
        params = {}
        if self.period.month_key:
            params["month"] = self.period.month_key
        else:
            params["from"], params["to"] = self.period.start.isoformat(), self.period.last.isoformat()
        if self.commune:
            params["commune"] = self.commune
        params.update({k: v for k, v in extra.items() if v is not None})
        return urlencode(params)

    @property
    def commune_name(self) -> str:
        """The chosen commune's name; "" when all are shown (the page then says so in words of its own)."""
        return dict(self.communes).get(self.commune, self.commune) if self.commune else ""


class ScopeError(Exception):
    pass


async def read_filters(request: web.Request, session) -> Filters:
    """Period (month=YYYY-MM, or from/to dates; default this month) and commune, within the viewer's scope."""
    cfg = request.app[CONFIG]
    viewer = request[VIEWER]
    q = request.query
    error = None
    try:
        if q.get("from") and q.get("to"):
            period = Period.days(q["from"], q["to"])
        elif q.get("month"):
            period = Period.month(q["month"])
        else:
            period = Period.this_month(cfg.clock())
    except figures.PeriodError as exc:
        error, period = texts(request).error(exc), Period.this_month(cfg.clock())
    wanted = q.get("commune") or None
    if viewer.commune and wanted and wanted != viewer.commune:
        raise ScopeError()
    communes = await registry.communes(session)
    commune = viewer.commune or wanted
    if commune and commune not in dict(communes):
        error, commune = texts(request).get("filter_err_commune"), viewer.commune
    return Filters(period, commune, communes, error)


def page(template: str, before=None):
    """Render `template` with what the handler returns, plus the filters; scope errors answer 403.

    `before(cfg)`, when given, is awaited first, in its own transaction (bringing a table up to date)."""

    def wrap(fn):
        async def handler(request: web.Request) -> web.StreamResponse:
            cfg = request.app[CONFIG]
            if before is not None:
                await before(cfg)
            async with cfg.db.transaction() as session:
                try:
                    f = await read_filters(request, session)
                except ScopeError:
                    return forbidden(request, "scope")
                context = await fn(request, session, f)
            if isinstance(context, web.StreamResponse):
                return context
            context.update(filters=f, page=fn.__name__)
            return render(template, request, context)

        handler.__name__ = fn.__name__
        return handler

    return wrap


# --- Sign in / out -------------------------------------------------------------------------------


def safe_next(target: str | None) -> str:
    if target and target.startswith(f"{PREFIX}/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{PREFIX}/"


async def login_form(request: web.Request) -> web.Response:
    token = await auth.csrf_token(request)
    return render(
        "login.html", request, {"csrf": token, "next": safe_next(request.query.get("next")), "error": None, "username": ""}
    )


async def login(request: web.Request) -> web.Response:
    cfg = request.app[CONFIG]
    client = request.remote or "?"
    await cfg.throttle.wait(client)
    form = await request.post()
    username = str(form.get("username", ""))[:64].strip()
    password = str(form.get("password", ""))[: accounts.MAX_PASSWORD]
    async with cfg.db.transaction() as session:
        account, result = await accounts.authenticate(session, username, password, cfg.clock())
    if account is None:
        cfg.throttle.failed(client)
        log.info("dashboard login refused (%s) for %r from %s", result, username, client)
        token = await auth.csrf_token(request)
        context = {"csrf": token, "next": safe_next(str(form.get("next", ""))), "error": texts(request).get(f"login_err_{result}"), "username": username}
        return render("login.html", request, context, status=401)
    cfg.throttle.succeeded(client)
    await auth.start_session(request, account)
    raise web.HTTPSeeOther(safe_next(str(form.get("next", ""))))


@roles(*EVERYONE)
async def logout(request: web.Request) -> web.Response:
    session = await get_session(request)
    session.invalidate()
    raise web.HTTPSeeOther(f"{PREFIX}/login")


# --- Figures -------------------------------------------------------------------------------------


@roles(*EVERYONE)
@page("overview.html")
async def overview(request, session, f: Filters) -> dict:
    return {"o": await figures.overview(session, f.period, f.commune)}


@roles(*EVERYONE)
@page("hamlets.html")
async def hamlets(request, session, f: Filters) -> dict:
    cfg = request.app[CONFIG]
    sort = request.query.get("sort", "people")
    sort = sort if sort in HAMLET_SORTS else "people"
    rows = await figures.hamlet_rows(session, f.period, f.commune, cfg.catalog(), sort=sort)
    # The chart follows the table's order; past CHART_ROWS hamlets (all communes at once) it stops.
    return {"rows": rows, "sort": sort, "bars": [(r.name, r.people) for r in rows[:CHART_ROWS]], "chart_rows": CHART_ROWS}


@roles(*EVERYONE)
@page("funnel.html")
async def funnel(request, session, f: Filters) -> dict:
    result = await figures.funnel(session, f.period, f.commune, request.app[CONFIG].catalog())
    return {"funnel": result, "chart": [(f"{s.number}. {s.title}", s.people) for s in result.steps]}


@roles(*EVERYONE)
@page("topics.html")
async def topics(request, session, f: Filters) -> dict:
    rows = await figures.topics(session, f.period, f.commune, request.app[CONFIG].catalog())
    return {"rows": rows, "previous": f.period.previous(), "chart": [(r.title, r.count) for r in rows[:15]]}


# At most this many new wordings are grouped when the page is opened (the rest by the background run).
PAGE_GROUPING = 100


@roles(*EVERYONE)
@page("unanswered.html", before=lambda cfg: cfg.grouper.run(cfg.db, PAGE_GROUPING))
async def unanswered(request, session, f: Filters) -> dict:
    viewer: auth.Viewer = request[VIEWER]
    groups = await figures.unanswered(session, f.period, f.commune)
    marks = await unanswered_marks.in_scope(session, f.commune, unanswered_marks.STATUSES)
    status: dict[str, str] = {}
    for mark in reversed(marks):  # the latest decision wins
        for text in mark.texts:
            status[question_key(text)] = "handled" if mark.status != "proposed" else "proposed"
    show_all = request.query.get("all") == "1"
    shown_groups = []
    for g in groups:
        g.status = next((status[k] for k in g.keys if k in status), None)
        if show_all or g.status != "handled":
            shown_groups.append(g)
    return {
        "groups": shown_groups,
        "hidden": len(groups) - len(shown_groups),
        "show_all": show_all,
        "texts_visible": viewer.sees_texts_of(f.commune),
        "total": await figures.low_confidence_total(session, f.period, f.commune),
    }


@roles(*EDITORS)
@page("propose.html")
async def unanswered_propose(request, session, f: Filters) -> dict:
    """Choose the topic a group of questions is proposed for, seeing the texts that will be proposed."""
    viewer: auth.Viewer = request[VIEWER]
    try:
        group = int(request.query.get("group", ""))
    except ValueError:
        raise web.HTTPNotFound() from None
    asked = await stats.group_texts(session, group, viewer.commune, MAX_VARIANTS)
    if not asked:
        raise web.HTTPNotFound(text=texts(request).get("unanswered_err_no_group"))
    catalog = request.app[CONFIG].catalog()
    return {"group": group, "texts": asked, "topic_choices": sorted((t.id, t.title) for t in catalog.topics.values())}


@roles(*EDITORS)
async def unanswered_mark(request: web.Request) -> web.StreamResponse:
    cfg = request.app[CONFIG]
    viewer: auth.Viewer = request[VIEWER]
    form = await request.post()
    action = form.get("action")
    topic = str(form.get("topic") or "") or None
    try:
        group = int(str(form.get("group", "")))
    except ValueError:
        group = 0
    if action not in ("handled", "proposed") or not group or (action == "proposed" and topic not in cfg.catalog().topics):
        raise web.HTTPBadRequest(text=texts(request).get("unanswered_err_missing"))
    commune = viewer.commune or (str(form.get("commune") or "") or None)
    async with cfg.db.transaction() as session:
        # The texts are read here (already masked when logged), only those asked in the viewer's commune.
        found = await stats.group_texts(session, group, viewer.commune, MAX_VARIANTS)
        if not found:
            raise web.HTTPNotFound(text=texts(request).get("unanswered_err_no_group"))
        await unanswered_marks.add(
            session, key=found[0][1] or question_key(found[0][0]), commune=commune, status=action,
            topic=topic if action == "proposed" else None, texts=[t for t, _ in found], by=viewer.username, now=cfg.clock(),
        )
    raise web.HTTPSeeOther(f"{PREFIX}/unanswered?{form.get('back', '')}" if isinstance(form.get("back"), str) else f"{PREFIX}/unanswered")


@roles(*EVERYONE)
@page("content.html")
async def content(request, session, f: Filters) -> dict:
    catalog = request.app[CONFIG].catalog()
    steps = [(catalog.step_number(s.slug), s) for s in catalog.steps if s.review_note]
    review = [t for t in catalog.topics.values() if t.needs_review]
    proposals = await unanswered_marks.in_scope(session, f.commune, ("proposed",))
    accepted = await unanswered_marks.in_scope(session, f.commune, ("accepted",))
    # Which accepted texts the matcher reads: one already an example of a topic is left out.
    in_use = {e for t in catalog.topics.values() for e in t.added_examples}
    return {
        "steps": steps, "review": review, "proposals": proposals, "accepted": accepted, "in_use": in_use,
        "titles": {t.id: t.title for t in catalog.topics.values()}, "message": request.query.get("msg"),
    }


@roles("admin")
async def proposal_close(request: web.Request) -> web.StreamResponse:
    """Accept a proposal (its texts become examples of the topic at once) or reject it."""
    cfg = request.app[CONFIG]
    form = await request.post()
    decision = form.get("decision")
    try:
        mark_id = int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound() from None
    if decision not in ("accepted", "rejected"):
        raise web.HTTPBadRequest(text=texts(request).get("content_err_decision"))
    async with cfg.db.transaction() as session:
        if await unanswered_marks.close(session, mark_id, decision, request[VIEWER].username, cfg.clock()) is None:
            raise web.HTTPNotFound()
    done = texts(request).get("content_done_rejected")
    if decision == "accepted":
        done = await _examples_changed(request, texts(request).get("content_done_accepted"))
    raise web.HTTPSeeOther(f"{PREFIX}/content?{urlencode({'msg': done})}")


@roles("admin")
async def examples_withdraw(request: web.Request) -> web.StreamResponse:
    """Take an accepted proposal's examples out of the topic again."""
    cfg = request.app[CONFIG]
    try:
        mark_id = int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound() from None
    async with cfg.db.transaction() as session:
        if await unanswered_marks.withdraw(session, mark_id, request[VIEWER].username, cfg.clock()) is None:
            raise web.HTTPNotFound()
    done = await _examples_changed(request, texts(request).get("content_done_withdrawn"))
    raise web.HTTPSeeOther(f"{PREFIX}/content?{urlencode({'msg': done})}")


async def _examples_changed(request: web.Request, done: str) -> str:
    """Tell the chat core (this process at once; the others within a minute)."""
    cfg = request.app[CONFIG]
    if cfg.on_examples_change is None:
        return done
    try:
        await cfg.on_examples_change()
    except Exception:
        log.exception("accepted examples saved, but this process could not reload them")
        return texts(request).get("content_done_later", done=done)
    return done


# --- Hamlets and groups --------------------------------------------------------------------------


@roles(*EVERYONE)
@page("registry.html")
async def registry_page(request, session, f: Filters) -> dict:
    cfg = request.app[CONFIG]
    rows = await registry.hamlets_in(session, f.commune)
    groups = await registry.groups_by_hamlet(session, f.commune)
    return {
        "rows": rows,
        "groups": groups,
        "links": lambda code: links.hamlet_links(cfg.settings, code),
        "message": request.query.get("msg"),
        "error": request.query.get("err"),
    }


@roles(*EVERYONE)
async def hamlet_qr(request: web.Request) -> web.Response:
    """The QR code of one of a hamlet's links (loaded only when the officer opens it)."""
    cfg = request.app[CONFIG]
    code, kind = request.match_info["code"], request.match_info["kind"]
    async with cfg.db.transaction() as session:
        if not await _hamlet_in_scope(session, request[VIEWER], code):
            raise web.HTTPNotFound()
    link = next((x for x in links.hamlet_links(cfg.settings, code) if x.kind == kind and x.qr), None)
    if link is None:
        raise web.HTTPNotFound()
    url = link.url if "://" in link.url else f"{request.scheme}://{request.host}{link.url}"
    return web.Response(body=links.qr_svg(url), content_type="image/svg+xml", headers={"Cache-Control": "private, max-age=3600"})


@roles(*EVERYONE)
async def hamlet_poster(request: web.Request) -> web.Response:
    """The hamlet's A4 poster (bot/posters.py), for the officers and teams of its commune."""
    import asyncio

    from bot.hamlets import Hamlet
    from bot.posters import PosterError, make_poster, poster_response
    from bot.web.texts import TextsError, load_texts

    cfg = request.app[CONFIG]
    code = request.match_info["code"]
    async with cfg.db.transaction() as session:
        if not await _hamlet_in_scope(session, request[VIEWER], code):
            raise web.HTTPNotFound()
        found = next((row for row in await registry.list_hamlets(session) if row[0] == code), None)
    if found is None:
        raise web.HTTPNotFound()
    try:
        poster_texts = load_texts(cfg.settings.content_dir)
        # Drawing takes a moment of CPU: keep the event loop (and the chat channels) answering.
        body = await asyncio.to_thread(make_poster, Hamlet(*found), cfg.catalog(), poster_texts, cfg.settings)
    except PosterError as exc:
        raise web.HTTPConflict(text=texts(request).get("registry_err_poster", reason=poster_texts.error(exc))) from None
    except TextsError as exc:
        raise web.HTTPConflict(text=texts(request).get("registry_err_poster", reason=exc)) from None
    return poster_response(body, code)


async def _hamlet_in_scope(session, viewer: auth.Viewer, code: str) -> bool:
    rows = await registry.hamlets_in(session, viewer.commune)
    return any(c == code for c, _, _ in rows)


@roles(*EDITORS)
async def registry_change(request: web.Request) -> web.StreamResponse:
    cfg = request.app[CONFIG]
    viewer: auth.Viewer = request[VIEWER]
    form = await request.post()
    action = request.match_info["action"]
    code = str(form.get("code", "")).strip()[:40]
    name = str(form.get("name", ""))[:300]
    commune = viewer.commune or str(form.get("commune", "")).strip()[:40]
    back = {"commune": commune} if commune else {}
    try:
        async with cfg.db.transaction() as session:
            if action == "add":
                await registry.add_hamlet(session, commune, code, name)
                done = texts(request).get("registry_done_add")
            elif not await _hamlet_in_scope(session, viewer, code):
                return forbidden(request, "scope")
            elif action == "rename":
                await registry.rename_hamlet(session, code, name)
                done = texts(request).get("registry_done_rename")
            elif action == "remove":
                await registry.remove_hamlet(session, code)
                done = texts(request).get("registry_done_remove")
            else:
                raise web.HTTPNotFound()
    except registry.RegistryError as exc:
        raise web.HTTPSeeOther(f"{PREFIX}/registry?{urlencode({**back, 'err': texts(request).error(exc)})}") from None
    if cfg.on_registry_change:
        cfg.on_registry_change()
    raise web.HTTPSeeOther(f"{PREFIX}/registry?{urlencode({**back, 'msg': done})}")


# --- Exports -------------------------------------------------------------------------------------


@roles(*EVERYONE)
async def export(request: web.Request) -> web.StreamResponse:
    cfg = request.app[CONFIG]
    fmt = request.match_info["fmt"]
    if fmt not in ("xlsx", "csv"):
        raise web.HTTPNotFound()
    async with cfg.db.transaction() as session:
        try:
            f = await read_filters(request, session)
        except ScopeError:
            return forbidden(request, "scope")
        if f.error:
            return web.json_response({"error": f.error}, status=400)
        report = await figures.report(session, f.period, f.commune, cfg.catalog(), cfg.clock())
    stem = f"bao-cao-{f.period.month_key or f.period.start.isoformat()}{'-' + f.commune if f.commune else ''}"
    if fmt == "xlsx":
        body = to_xlsx(report, texts(request))
        ctype = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    else:
        body = to_csv(report, texts(request)).encode("utf-8")
        ctype = "text/csv; charset=utf-8"
    return web.Response(body=body, headers={"Content-Type": ctype, "Content-Disposition": f'attachment; filename="{stem}.{fmt}"'})


@roles(*EVERYONE)
async def root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(f"{PREFIX}/")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/login", login_form)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/", overview, name="overview")
    r.add_get("/hamlets", hamlets, name="hamlets")
    r.add_get("/funnel", funnel, name="funnel")
    r.add_get("/topics", topics, name="topics")
    r.add_get("/unanswered", unanswered, name="unanswered")
    r.add_get("/unanswered/propose", unanswered_propose, name="unanswered_propose")
    r.add_post("/unanswered/mark", unanswered_mark)
    r.add_get("/content", content, name="content")
    r.add_post("/proposals/{id}", proposal_close)
    r.add_post("/examples/{id}/withdraw", examples_withdraw)
    r.add_get("/registry", registry_page, name="registry")
    r.add_post("/registry/{action}", registry_change)
    r.add_get("/registry/{code}/qr/{kind}.svg", hamlet_qr)
    r.add_get("/registry/{code}/poster.pdf", hamlet_poster)
    r.add_get("/export/report.{fmt}", export)
    from bot.web import broadcasts

    broadcasts.add_routes(app)
