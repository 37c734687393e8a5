"""A broadcast's image over HTTP: publicly at /media/broadcasts/<key>.<ext> (Zalo fetches it there to show
it; the key is random, so the address cannot be guessed), and on the dashboard for the preview."""

from __future__ import annotations

from aiohttp import web

from bot.broadcasts import images
from storage.db import Database


async def image_response(db: Database, name: str) -> web.Response:
    key = images.key_of(name)
    if key is None:
        raise web.HTTPNotFound()
    async with db.transaction() as session:
        image = await images.load(session, key)
    if image is None or image.filename != name:
        raise web.HTTPNotFound()
    # An image never changes under its key: it may be kept (Zalo's servers fetch it once per message otherwise).
    headers = {"Cache-Control": "public, max-age=604800, immutable", "X-Content-Type-Options": "nosniff"}
    return web.Response(body=image.data, content_type=image.content_type, headers=headers)


def add_public_route(app: web.Application, db: Database) -> None:
    async def serve(request: web.Request) -> web.Response:
        return await image_response(db, request.match_info["name"])

    app.router.add_get(f"{images.MEDIA_PATH}/{{name}}", serve)
