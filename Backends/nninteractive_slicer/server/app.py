"""The HTTP API (FastAPI): sessions, content-addressed images, prompts with changed-region replies.

Every route but ``/healthz`` needs a key (``/docs`` and ``/openapi.json`` included). Bodies are bounded
before they are read, frames and JSON are validated before anything is allocated, and every error is a
JSON body with a 4xx status (see :mod:`.errors`). Mutating calls take an optional revision header: the
revision the client believes the session is at, so a call lost to a timeout is detected, not silently
applied twice. The routes live in :mod:`.routes`, one router per resource.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from .. import __version__
from .auth import AuthMiddleware
from .config import ServerConfig
from .errors import CatchAllMiddleware, install_handlers
from .images import expire_forever
from .logs import AccessLogMiddleware
from .routes import images, meta, session_calls, sessions
from .runtime import ServerRuntime
from .schemas import ErrorBody
from .size_checks import BodyLimitMiddleware

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 404, 409, 413, 422, 500, 503, 507)
}


def create_app(config: ServerConfig, runtime: ServerRuntime | None = None) -> FastAPI:
    """The app; builds a :class:`ServerRuntime` (loading the model) unless one is given."""
    runtime = runtime or ServerRuntime(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        reapers = [asyncio.create_task(runtime.reap_forever("idle", config.idle_timeout_s)),
                   asyncio.create_task(runtime.reap_forever("dead", config.liveness_timeout_s)),
                   asyncio.create_task(expire_forever(runtime.cache, runtime.sessions.images_in_use))]
        try:
            yield
        finally:
            for task in reapers:
                task.cancel()
            runtime.shutdown()

    app = FastAPI(title="nnInteractive for 3D Slicer: inference server", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None, responses=_ERRORS,
                  generate_unique_id_function=lambda route: route.name)
    app.state.runtime = runtime
    install_handlers(app)
    app.add_middleware(AccessLogMiddleware, runtime=runtime)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=config.limits.max_body_bytes)
    app.add_middleware(AuthMiddleware, authenticator=runtime.auth, max_body_bytes=config.limits.max_body_bytes)
    app.add_middleware(CatchAllMiddleware)  # added last: outermost
    for router in (meta.router, sessions.router, images.router, session_calls.router):
        app.include_router(router)
    return app
