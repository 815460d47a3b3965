"""Structured logs: one JSON object per line (or key=value text), and an access log naming the user of every request."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import time
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from .runtime import ServerRuntime

log = logging.getLogger("nninteractive_slicer.server")

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is a field of the event.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


# Control characters (C0, DEL, C1) in a text log line are written escaped: a client-chosen value (a session id
# from a URL) could otherwise end the line and forge the next one, or write raw NUL bytes.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(32), *range(127, 160))} | {10: "\\n", 13: "\\r", 9: "\\t"}


def escape_controls(text: str) -> str:
    return text.translate(_ESCAPES)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = escape_controls(f"{self.formatTime(record)} {record.levelname:7s} {record.getMessage()} {extras}")
        line = line.rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: str = "info", fmt: str = "json") -> None:
    """Route this package's and uvicorn's logs through one handler in the chosen format."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    for name in ("nninteractive_slicer", "uvicorn.error", "py.warnings"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # our access log names the user


class _LogStream(io.TextIOBase):
    """A text stream that turns each line written to it into a debug record (see :func:`route_stdout`)."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger, self._partial, self._lock = logger, "", threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            if line.strip():
                self._logger.debug("%s", line, extra={"event": "nninteractive_output"})
        return len(text)


def route_stdout() -> None:
    """Send what is printed (nnInteractive prints progress and prompt coordinates) to debug records of the
    ``nninteractive_slicer.nninteractive`` logger: structured like the rest, and off unless --log-level debug."""
    sys.stdout = _LogStream(logging.getLogger("nninteractive_slicer.nninteractive"))


class AccessLogMiddleware:
    """One structured log line and one request count per request, with the user and the route template."""

    def __init__(self, app: ASGIApp, runtime: ServerRuntime) -> None:
        self.app, self.runtime = app, runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            user = scope.get("state", {}).get("user", "-")
            self.runtime.metrics.requests.labels(scope["method"], route, str(status)).inc()
            log.info("request", extra={"event": "request", "user": user, "method": scope["method"], "route": route,
                                       "session": scope.get("path_params", {}).get("session_id", "")[:8],
                                       "status": status, "ms": round((time.perf_counter() - started) * 1000, 1)})
