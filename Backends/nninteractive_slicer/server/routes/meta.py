"""Who the server is and how it is doing: health (open), info and metrics (with a key), and the API docs."""

from __future__ import annotations

import platform
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from ... import __version__
from ...protocol.contract import PROTOCOL_VERSION, SERVER_NAME, Routes
from ...protocol.wire import AVAILABLE_CODECS
from ..deps import Runtime, User
from ..schemas import Health, Info
from . import endpoint

router = APIRouter(tags=["meta"])


@endpoint(router, Routes.HEALTH, response_model=Health)
def healthz() -> Health:
    return Health(status="ok", server=SERVER_NAME, version=__version__, protocol_version=PROTOCOL_VERSION)


@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs", include_in_schema=False)
def docs(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title=request.app.title)


@endpoint(router, Routes.INFO, response_model=Info)
def info(runtime: Runtime, _: User) -> Info:
    import torch

    caps = runtime.model.capabilities
    config = runtime.config
    return Info(
        server=SERVER_NAME, version=__version__, protocol_version=PROTOCOL_VERSION, model_id=caps.model_id,
        license=caps.license, device=caps.device, capabilities=asdict(caps), codecs=list(AVAILABLE_CODECS),
        limits=config.limits.to_json(),
        timeouts={"idle_s": config.idle_timeout_s, "liveness_s": config.liveness_timeout_s},
        sessions={"open": len(runtime.sessions), "max": config.max_sessions, "max_per_user": config.sessions_per_user,
                  "memory_budget_bytes": runtime.sessions.memory_budget},
        versions={"nninteractive_slicer": __version__, "nninteractive": _version("nninteractive"),
                  "torch": torch.__version__, "python": platform.python_version()},
        auth=runtime.auth.enabled,
    )


@endpoint(router, Routes.METRICS, response_class=Response,
          responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
def metrics(runtime: Runtime, _: User) -> Response:
    return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"
