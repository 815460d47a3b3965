"""A key for the page, as the server asks one of its clients: every request must carry it.

The page's address carries it once (``?key=...``); the answer sets it as a cookie (HttpOnly, SameSite=Strict)
that the page's scripts and its websocket then send. ``Authorization: Bearer KEY`` works too (a proxy's checks).
Anything else is refused with 401 before it reaches trame. Use it behind TLS (docs/deployment.md).
"""

from __future__ import annotations

import hmac

from aiohttp import web

COOKIE = "nninteractive_key"
REFUSED = "This nnInteractive web app needs its key: open its address with ?key=YOUR_KEY."


def key_middleware(key: str):
    expected = key.encode()

    def matches(given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), expected)

    @web.middleware
    async def check(request: web.Request, handler):
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ").strip() or None
        from_query = request.query.get("key")
        if not (matches(request.cookies.get(COOKIE)) or matches(bearer) or matches(from_query)):
            return web.Response(status=401, text=REFUSED)
        response = await handler(request)
        if matches(from_query):
            response.set_cookie(COOKIE, key, httponly=True, samesite="Strict")
        return response

    return check


def require_key(server, key: str) -> None:
    """Make trame's web server refuse every request without ``key`` (nothing when ``key`` is empty)."""
    if key:
        server.controller.on_server_bind.add(lambda wslink_server: wslink_server.app.middlewares.append(
            key_middleware(key)))
