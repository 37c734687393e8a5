"""Dashboard pages for broadcasts: compose, preview (as each channel shows it) with the dry run, submit,
approve, live progress and the delivery report per hamlet and channel, pause, resume, cancel, and each
commune's rules (approval on or off, quiet hours).

Who may do what is decided by bot/broadcasts/workflow.py, as for the command line and /phatthanh: a
team member broadcasts to their commune; an officer or admin of a commune approves what stays in it;
an account without a commune (admin, officer) broadcasts and approves anywhere. Nobody approves their own.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

from aiohttp import web

from bot.broadcasts import images, jobs, visits, workflow
from bot.broadcasts import report as reports
from bot.broadcasts.audience import dry_run, unknown_codes
from bot.broadcasts.model import CHANNELS, KINDS, MAX_TEXT, Audience, AudienceError, check_text, messages_for
from bot.broadcasts.quiet import QuietHours
from bot.web import auth
from bot.web.app import CONFIG, PREFIX, VIEWER, forbidden, render, texts
from bot.web.auth import EDITORS, EVERYONE, roles
from bot.web.media import image_response
from bot.web.texts import WebTexts
from bot.web.uploads import Upload, read_form
from storage import broadcasts as repo
from storage import registry
from storage.broadcasts import BroadcastStatus, DeliveryStatus

MADE_BY = ("visit", "recurring", "summary")  # kinds of broadcasts not written by hand, tagged in the list
ACTIONS = {"approve", "pause", "resume", "cancel"}
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def page(template: str, request: web.Request, context: dict, status: int = 200) -> web.Response:
    """A broadcast page (its texts through `tx`, as every dashboard page: bot/web/app.py's `render`)."""
    return render(template, request, {"page": "broadcasts", **context}, status=status)


def back_to(path: str, **query: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"{path}?{urlencode(query)}")


def actor_of(viewer: auth.Viewer) -> workflow.Actor:
    """A dashboard account as the workflow sees it (`approve` is decided per broadcast, see `_may_approve`)."""
    everywhere = viewer.commune is None
    return workflow.Actor(
        f"web:{viewer.username}",
        officer=viewer.role in EDITORS and everywhere,
        communes=frozenset({"*"} if everywhere else {viewer.commune}),
    )


def _may_approve(viewer: auth.Viewer, audience: Audience, hamlet_communes: dict[str, str]) -> bool:
    """An officer or admin approves broadcasts that stay within their commune (all, without one)."""
    if viewer.role not in EDITORS:
        return False
    if viewer.commune is None:
        return True
    try:
        workflow.check_audience(workflow.Actor("check", communes=frozenset({viewer.commune})), audience, hamlet_communes)
    except workflow.NotAllowed:
        return False
    return True


def _in_scope(viewer: auth.Viewer, audience: Audience, hamlet_communes: dict[str, str]) -> bool:
    """Whether the account sees a broadcast: all of them without a commune, else those touching its commune."""
    if viewer.commune is None:
        return True
    if audience.scope == "all":
        return True
    if audience.scope == "communes":
        return viewer.commune in audience.codes
    return any(hamlet_communes.get(h) == viewer.commune for h in audience.codes)


async def _form_audience(form, viewer: auth.Viewer) -> Audience:
    """The audience chosen in the compose form: the whole commune(s) picked, or some hamlets."""
    hamlets = tuple(str(v)[:40] for v in form.getall("hamlet", []))
    communes = tuple(str(v)[:40] for v in form.getall("commune", []))
    kinds = tuple(k for k in (str(v) for v in form.getall("kind", [])) if k in KINDS) or KINDS
    channels = tuple(c for c in (str(v) for v in form.getall("channel", [])) if c in CHANNELS)
    if str(form.get("scope", "")) == "all":
        return Audience("all", (), kinds, channels)
    if hamlets:
        return Audience("hamlets", hamlets, kinds, channels)
    if not communes and viewer.commune:
        communes = (viewer.commune,)
    return Audience("communes", communes, kinds, channels)


def _audience_words(t: WebTexts, audience: Audience, commune_names: dict[str, str], hamlet_names: dict[str, str]) -> str:
    from bot.report import channel_name

    if audience.scope == "all":
        where = t.get("bc_everywhere")
    elif audience.scope == "communes":
        where = ", ".join(commune_names.get(c, c) for c in audience.codes)
    else:
        where = ", ".join(hamlet_names.get(h, h) for h in audience.codes)
    kinds = t.messages["bc_and"].join(t.get(f"bc_kind_{k}") for k in audience.kinds)
    channels = ", ".join(channel_name(c, t) for c in audience.channels) if audience.channels else t.get("bc_all_channels")
    return f"{where} · {kinds} · {channels}"


async def _names(session) -> tuple[dict[str, str], dict[str, str], list[tuple[str, str, str]]]:
    communes = dict(await registry.communes(session))
    hamlets = await registry.hamlets_in(session, None)
    return communes, {code: name for code, name, _ in hamlets}, hamlets


# --- List and compose ----------------------------------------------------------------------------


@roles(*EVERYONE)
async def broadcast_list(request: web.Request) -> web.Response:
    return await _list_page(request, message=request.query.get("msg"), error=request.query.get("err"))


async def _list_page(request: web.Request, *, message=None, error=None, form=None, status: int = 200) -> web.Response:
    """The broadcasts the account sees, and the compose form (filled again with what was typed after an error)."""
    cfg = request.app[CONFIG]
    viewer: auth.Viewer = request[VIEWER]
    t = texts(request)
    async with cfg.db.transaction() as session:
        commune_names, hamlet_names, hamlets = await _names(session)
        communes_of = await repo.hamlet_communes(session)
        rows = []
        for b in await repo.list_recent(session, 100):
            audience = Audience.from_dict(b.audience)
            if b.kind == "reminder" or not _in_scope(viewer, audience, communes_of):
                continue  # a person's own reminder is nobody else's business
            totals = await repo.totals(session, b.id)
            made_by = t.get(f"bc_made_{b.kind}") if b.kind in MADE_BY else ""
            rows.append((b, reports.status_name(t, b.status), totals.get("sent", 0), sum(totals.values()),
                         _audience_words(t, audience, commune_names, hamlet_names), made_by))
    own = [h for h in hamlets if viewer.commune is None or h[2] == viewer.commune]
    communes = [(c, n) for c, n in commune_names.items() if viewer.commune is None or c == viewer.commune]
    return page("broadcasts.html", request, {
        "rows": rows, "hamlets": own, "communes": communes, "commune_names": commune_names,
        "channels": CHANNELS, "max_text": MAX_TEXT, "max_mb": images.MAX_BYTES // (1024 * 1024), "message": message, "error": error,
        "form": form or {"text": "", "hamlets": set(), "communes": set(), "kinds": set(KINDS), "channels": set(), "scope": ""},
    }, status=status)


def _typed(form) -> dict:
    return {
        "text": str(form.get("text", ""))[:MAX_TEXT],
        "hamlets": set(form.getall("hamlet", [])),
        "communes": set(form.getall("commune", [])),
        "kinds": set(form.getall("kind", [])) or set(KINDS),
        "channels": set(form.getall("channel", [])),
        "scope": str(form.get("scope", "")),
    }


def _image_upload(form) -> Upload | None:
    """The image chosen in the form; None when none was (a browser sends an empty, unnamed file part)."""
    upload = form.get("image")
    if not isinstance(upload, Upload) or (not upload.filename and not upload.data and not upload.too_big):
        return None
    return upload


async def _keep_image(session, upload: Upload, now) -> images.Image:
    if upload.too_big:
        raise images.ImageError("too_big")
    return await images.store(session, upload.data, now)


@roles(*EVERYONE)
async def broadcast_preview(request: web.Request) -> web.Response:
    """The text (and image) as each channel will show it, and the dry run: only an image is stored yet."""
    cfg = request.app[CONFIG]
    viewer: auth.Viewer = request[VIEWER]
    t = texts(request)
    form = await read_form(request)
    text = str(form.get("text", ""))[: MAX_TEXT + 1]
    error = None
    try:
        audience = await _form_audience(form, viewer)
    except AudienceError as exc:
        return await _compose_again(request, form, t.get("bc_err_audience", reason=str(exc)))
    upload = _image_upload(form)
    image = None
    async with cfg.db.transaction() as session:
        commune_names, hamlet_names, _ = await _names(session)
        try:
            workflow.check_audience(actor_of(viewer), audience, await repo.hamlet_communes(session))
            text = check_text(text)
        except workflow.NotAllowed:
            error = t.get("bc_err_scope")
        except ValueError:
            error = t.get("bc_err_text", max_text=MAX_TEXT)
        if error is None and await unknown_codes(session, audience):
            error = t.get("bc_err_unknown_codes")
        lines = [] if error else await dry_run(session, audience)
    if error is None and upload is not None and not cfg.settings.public_url and any(l.channel != "telegram" and l.to_send for l in lines):
        error = t.get("bc_err_image_public_url")
    if error is None and upload is not None:
        try:
            async with cfg.db.writing() as session:  # kept now, so that the submit names it
                image = await _keep_image(session, upload, cfg.clock())
        except images.ImageError as exc:
            error = t.get(f"bc_err_image_{exc.reason}", max_mb=images.MAX_BYTES // (1024 * 1024))
    if error:
        return await _compose_again(request, form, error)
    channels = audience.channels or CHANNELS
    shown = [
        (ch, messages_for(ch, text, image is not None))
        for ch in channels
        if any(l.channel == ch for l in lines) or ch in audience.channels
    ]
    return page("broadcast_preview.html", request, {
        "text": text, "audience": audience, "shown": shown, "lines": lines, "image": image,
        "words": _audience_words(t, audience, commune_names, hamlet_names), "hamlet_names": hamlet_names,
        "to_send": sum(l.to_send for l in lines), "opted_out": sum(l.opted_out for l in lines),
        "at": str(form.get("at", ""))[:20],
    })


async def _compose_again(request: web.Request, form, error: str) -> web.Response:
    return await _list_page(request, error=error, form=_typed(form), status=400)


@roles(*EVERYONE)
async def broadcast_submit(request: web.Request) -> web.StreamResponse:
    cfg = request.app[CONFIG]
    viewer: auth.Viewer = request[VIEWER]
    t = texts(request)
    form = await read_form(request)
    try:
        audience = await _form_audience(form, viewer)
    except AudienceError:
        raise back_to(f"{PREFIX}/broadcasts", err=t.get("bc_err_audience_short")) from None
    actor = actor_of(viewer)
    now = cfg.clock()
    image = str(form.get("image", ""))[:64] or None
    try:
        b = await workflow.create(cfg.db, actor, str(form.get("text", ""))[: MAX_TEXT + 1], audience, now, image=image)
        b = await workflow.submit(cfg.db, actor, b.id, now)
    except workflow.NotAllowed:
        return forbidden(request, "scope")
    except workflow.BadRequest:
        raise back_to(f"{PREFIX}/broadcasts", err=t.get("bc_err_not_created")) from None
    done = t.get("bc_done_awaiting" if b.status == BroadcastStatus.AWAITING_APPROVAL else "bc_done_scheduled")
    raise back_to(f"{PREFIX}/broadcasts/{b.id}", msg=done)


@roles(*EVERYONE)
async def broadcast_image(request: web.Request) -> web.Response:
    """A broadcast's image, for the preview and the broadcast's page (Zalo fetches the public copy)."""
    return await image_response(request.app[CONFIG].db, request.match_info["name"])


# --- One broadcast: progress, report, actions -----------------------------------------------------


@roles(*EVERYONE)
async def broadcast_detail(request: web.Request) -> web.Response:
    cfg = request.app[CONFIG]
    viewer: auth.Viewer = request[VIEWER]
    t = texts(request)
    try:
        broadcast_id = int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound() from None
    async with cfg.db.transaction() as session:
        found = await reports.read(session, broadcast_id)
        if found is None or found.broadcast.kind == "reminder":
            raise web.HTTPNotFound()
        b = found.broadcast
        communes_of = await repo.hamlet_communes(session)
        audience = Audience.from_dict(b.audience)
        if not _in_scope(viewer, audience, communes_of):
            raise web.HTTPNotFound()
        commune_names, hamlet_names, _ = await _names(session)
        image = await images.load(session, b.image)
    actor = actor_of(viewer)
    mine = actor.id == b.author
    actions = []
    if b.status == BroadcastStatus.AWAITING_APPROVAL and not mine and _may_approve(viewer, audience, communes_of):
        actions.append("approve")
    if b.status == BroadcastStatus.SENDING:
        actions.append("pause")
    if b.status == BroadcastStatus.PAUSED:
        actions.append("resume")
    if b.status in (BroadcastStatus.DRAFT, BroadcastStatus.AWAITING_APPROVAL, BroadcastStatus.SCHEDULED, BroadcastStatus.SENDING, BroadcastStatus.PAUSED):
        actions.append("cancel")
    total, settled = found.total, found.settled
    return page("broadcast.html", request, {
        "b": b, "status": reports.status_name(t, b.status), "image": image,
        "words": _audience_words(t, audience, commune_names, hamlet_names), "table": found.table,
        "columns": reports.COLUMNS, "hamlet_names": hamlet_names, "unknown": found.unknown,
        "totals": found.totals, "total": total, "settled": settled, "percent": round(100 * settled / total) if total else 0,
        "actions": actions, "live": b.status in (BroadcastStatus.SENDING, BroadcastStatus.SCHEDULED),
        "message": request.query.get("msg"), "error": request.query.get("err"),
    })


@roles(*EVERYONE)
async def broadcast_action(request: web.Request) -> web.StreamResponse:
    cfg = request.app[CONFIG]
    viewer: auth.Viewer = request[VIEWER]
    t = texts(request)
    action = request.match_info["action"]
    if action not in ACTIONS:
        raise web.HTTPNotFound()
    try:
        broadcast_id = int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound() from None
    actor = actor_of(viewer)
    async with cfg.db.transaction() as session:
        b = await repo.get(session, broadcast_id)
        if b is None or b.kind == "reminder":
            raise web.HTTPNotFound()
        communes_of = await repo.hamlet_communes(session)
        audience = Audience.from_dict(b.audience)
    if not _in_scope(viewer, audience, communes_of):
        raise web.HTTPNotFound()
    if action == "approve":
        if not _may_approve(viewer, audience, communes_of):
            return forbidden(request, "role")
        actor = workflow.Actor(actor.id, officer=True, communes=actor.communes)
    back = f"{PREFIX}/broadcasts/{broadcast_id}"
    try:
        await getattr(workflow, action)(cfg.db, actor, broadcast_id, cfg.clock())
    except workflow.NotAllowed as exc:
        raise back_to(back, err=t.get("bc_err_own" if "own" in str(exc) else "bc_err_not_allowed")) from None
    except workflow.BadRequest:
        raise back_to(back, err=t.get("bc_err_status")) from None
    raise back_to(back, msg=t.get(f"bc_done_{action}"))


# --- Each commune's rules ------------------------------------------------------------------------


@roles(*EDITORS)
async def policies(request: web.Request) -> web.Response:
    cfg = request.app[CONFIG]
    viewer: auth.Viewer = request[VIEWER]
    async with cfg.db.transaction() as session:
        rows = []
        for code, name in await registry.communes(session):
            if viewer.commune and code != viewer.commune:
                continue
            p = await repo.policy(session, code)
            rows.append((code, name, p.approval_required, p.quiet_start, p.quiet_end))
    return page("broadcast_rules.html", request, {
        "rows": rows, "message": request.query.get("msg"), "error": request.query.get("err"),
    })


@roles(*EDITORS)
async def policy_change(request: web.Request) -> web.StreamResponse:
    cfg = request.app[CONFIG]
    viewer: auth.Viewer = request[VIEWER]
    form = await read_form(request)
    code = str(form.get("commune", "")).strip()[:40]
    if viewer.commune and code != viewer.commune:
        return forbidden(request, "scope")
    start, end = str(form.get("quiet_start", "")).strip(), str(form.get("quiet_end", "")).strip()
    back = f"{PREFIX}/broadcasts/rules"
    t = texts(request)
    if not (_HHMM.match(start) and _HHMM.match(end)):
        raise back_to(back, err=t.get("rules_err_time"))
    QuietHours(start, end)  # a valid pair (equal: no quiet hours)
    async with cfg.db.writing() as session:
        if code not in dict(await registry.communes(session)):
            raise back_to(back, err=t.get("rules_err_commune"))
        await repo.set_policy(session, code, approval_required=form.get("approval") == "on", quiet_start=start, quiet_end=end)
    raise back_to(back, msg=t.get("bc_saved"))


# --- Mobile teams' visits -------------------------------------------------------------------------


@roles(*EDITORS)
async def visit_page(request: web.Request) -> web.Response:
    return await _visits_page(request, message=request.query.get("msg"), error=request.query.get("err"))


async def _visits_page(request: web.Request, *, message=None, error=None, status: int = 200) -> web.Response:
    from storage import schedules

    cfg = request.app[CONFIG]
    viewer: auth.Viewer = request[VIEWER]
    today = cfg.clock().astimezone(jobs.LOCAL).date()
    async with cfg.db.transaction() as session:
        commune_names, hamlet_names, hamlets = await _names(session)
        rows = await schedules.visits(session, viewer.commune, today)
    communes = [(c, n) for c, n in commune_names.items() if viewer.commune is None or c == viewer.commune]
    return page("visits.html", request, {
        "rows": rows, "hamlet_names": hamlet_names, "commune_names": commune_names, "communes": communes,
        "hamlets": [h for h in hamlets if viewer.commune is None or h[2] == viewer.commune], "message": message, "error": error,
    }, status=status)


def _visit_commune(viewer: auth.Viewer, form) -> str:
    return viewer.commune or str(form.get("commune", "")).strip()[:40]


@roles(*EDITORS)
async def visit_change(request: web.Request) -> web.StreamResponse:
    from storage import schedules

    cfg = request.app[CONFIG]
    viewer: auth.Viewer = request[VIEWER]
    action = request.match_info["action"]
    back = f"{PREFIX}/broadcasts/visits"
    t = texts(request)
    form = await read_form(request)
    today = cfg.clock().astimezone(jobs.LOCAL).date()
    async with cfg.db.writing() as session:
        known = await repo.hamlet_communes(session)
        if action == "cancel":
            try:
                visit = await session.get(schedules.MobileVisit, int(str(form.get("id", ""))))
            except ValueError:
                visit = None
            if visit is None or (viewer.commune and visit.commune_code != viewer.commune):
                raise web.HTTPNotFound()
            await visits.cancel(session, visit, cfg.clock())  # with its announcement (or a notice that it is off)
            done = t.get("visits_done_cancel")
        elif action in ("add", "import"):
            commune = _visit_commune(viewer, form)
            if viewer.commune and commune != viewer.commune:
                return forbidden(request, "scope")
            try:
                if action == "add":
                    entries = [visits.check_visit(
                        str(form.get("day", ""))[:20], str(form.get("start", ""))[:10], str(form.get("end", ""))[:10],
                        str(form.get("place", ""))[: visits.MAX_PLACE + 1], [str(h) for h in form.getall("hamlet", [])], known, commune, today,
                    )]
                else:
                    upload = form.get("file")
                    data = upload.data if isinstance(upload, Upload) else b""
                    if isinstance(upload, Upload) and upload.too_big:
                        raise visits.VisitError("file_too_big", max_mb=images.MAX_BYTES // (1024 * 1024))
                    entries = visits.parse_csv(data, known, commune, today)
            except visits.VisitError as exc:
                raise back_to(back, err=t.get("visits_err", reason=exc.words(t))) from None
            for e in entries:
                await schedules.add_visit(session, commune=commune, day=e.day, start=e.start, end=e.end, place=e.place,
                                          hamlets=e.hamlets, by=f"web:{viewer.username}", now=cfg.clock())
            done = t.get("visits_done_saved", n=len(entries))
        else:
            raise web.HTTPNotFound()
    if cfg.on_visits_change:
        cfg.on_visits_change()
    raise back_to(back, msg=done)


# --- Recurring broadcasts -------------------------------------------------------------------------


@roles(*EDITORS)
async def recurring_page(request: web.Request) -> web.Response:
    from storage import schedules

    cfg = request.app[CONFIG]
    viewer: auth.Viewer = request[VIEWER]
    t = texts(request)
    async with cfg.db.transaction() as session:
        commune_names, hamlet_names, hamlets = await _names(session)
        communes_of = await repo.hamlet_communes(session)
        rules = [
            (r, _audience_words(t, Audience.from_dict(r.audience), commune_names, hamlet_names),
             jobs.repo_aware(r.next_run_at).astimezone(jobs.LOCAL).strftime("%d/%m/%Y %H:%M"))
            for r in await schedules.recurring(session)
            if _in_scope(viewer, Audience.from_dict(r.audience), communes_of)
        ]
    communes = [(c, n) for c, n in commune_names.items() if viewer.commune is None or c == viewer.commune]
    return page("recurring.html", request, {
        "rules": rules, "communes": communes, "channels": CHANNELS, "max_text": MAX_TEXT,
        "hamlets": [h for h in hamlets if viewer.commune is None or h[2] == viewer.commune],
        "message": request.query.get("msg"), "error": request.query.get("err"),
    })


@roles(*EDITORS)
async def recurring_change(request: web.Request) -> web.StreamResponse:
    from storage import schedules

    cfg = request.app[CONFIG]
    viewer: auth.Viewer = request[VIEWER]
    action = request.match_info["action"]
    back = f"{PREFIX}/broadcasts/recurring"
    t = texts(request)
    form = await read_form(request)
    now = cfg.clock()
    if action == "add":
        cron = " ".join(str(form.get("cron", "")).split())[:100]
        try:
            first = jobs.check_cron(cron, str(jobs.LOCAL), now)
        except jobs.CronError as exc:
            raise back_to(back, err=t.get(exc.key)) from None
        try:
            audience = await _form_audience(form, viewer)
            text = check_text(str(form.get("text", ""))[: MAX_TEXT + 1])
        except (AudienceError, ValueError):
            raise back_to(back, err=t.get("recurring_err_invalid")) from None
        async with cfg.db.writing() as session:
            try:
                workflow.check_audience(actor_of(viewer), audience, await repo.hamlet_communes(session))
            except workflow.NotAllowed:
                return forbidden(request, "scope")
            if await unknown_codes(session, audience):
                raise back_to(back, err=t.get("bc_err_unknown_codes"))
            await schedules.add_recurring(
                session, author=f"web:{viewer.username}", text=text, audience=audience.to_dict(), cron=cron,
                timezone=str(jobs.LOCAL), next_run_at=first, now=now,
            )
        done = t.get("recurring_done_saved")
    elif action == "stop":
        async with cfg.db.writing() as session:
            try:
                rule = await session.get(schedules.RecurringBroadcast, int(str(form.get("id", ""))))
            except ValueError:
                rule = None
            if rule is None or not _in_scope(viewer, Audience.from_dict(rule.audience), await repo.hamlet_communes(session)):
                raise web.HTTPNotFound()
            if viewer.commune is not None and not _may_approve(viewer, Audience.from_dict(rule.audience), await repo.hamlet_communes(session)):
                return forbidden(request, "scope")
            rule.active, rule.updated_at = False, now
        done = t.get("recurring_done_stopped")
    else:
        raise web.HTTPNotFound()
    raise back_to(back, msg=done)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/broadcasts", broadcast_list, name="broadcasts")
    r.add_post("/broadcasts/preview", broadcast_preview)
    r.add_post("/broadcasts", broadcast_submit)
    r.add_get("/broadcasts/visits", visit_page)
    r.add_post("/broadcasts/visits/{action}", visit_change)
    r.add_get("/broadcasts/recurring", recurring_page)
    r.add_post("/broadcasts/recurring/{action}", recurring_change)
    r.add_get("/broadcasts/rules", policies)
    r.add_get("/broadcasts/images/{name}", broadcast_image)
    r.add_post("/broadcasts/rules", policy_change)
    r.add_get("/broadcasts/{id}", broadcast_detail)
    r.add_post("/broadcasts/{id}/{action}", broadcast_action)
