"""API keys: one or many, each with a user name that the logs and session ownership use.

Keys come as ``NAME:KEY`` entries (a bare ``KEY`` belongs to user ``default``) from ``--api-key``,
the ``NNINTERACTIVE_SLICER_API_KEYS`` environment variable (entries separated by commas or
whitespace) or ``--api-keys-file`` (one entry per line, ``#`` comments). Clients send
``Authorization: Bearer KEY``; HTTP Basic with the key as password is accepted too, so a browser
can open ``/docs``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from ..protocol.contract import ErrorCode
from .errors import ApiError, send_json

ENV_VAR = "NNINTERACTIVE_SLICER_API_KEYS"
OPEN_PATHS = frozenset({"/healthz"})  # for load balancers
BROWSER_PATHS = frozenset({"/docs", "/openapi.json"})  # challenge for Basic auth, so a browser asks for the key
ANONYMOUS = "anonymous"
MIN_KEY_LENGTH = 16
AUTHENTICATED = "nninteractive.authenticated"  # scope extension: tells the connection a valid key came on it


def parse_entries(entries: Iterable[str]) -> dict[str, str]:
    """``NAME:KEY`` or ``KEY`` entries into {key: user}; raises ValueError on duplicates or blanks."""
    keys: dict[str, str] = {}
    for entry in entries:
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        user, sep, key = entry.partition(":")
        if not sep:
            user, key = "default", entry
        user, key = user.strip(), key.strip()
        if not user or not key:
            raise ValueError(f"API key entry {entry[:4]}... must be NAME:KEY or KEY.")
        if key in keys:
            raise ValueError(f"An API key is listed twice (users {keys[key]} and {user}).")
        keys[key] = user
    return keys


def load_keys(options: Iterable[str] = (), file: str | os.PathLike | None = None,
              environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """All keys from the option values, the environment variable and the file together."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    entries = list(options) + env.get(ENV_VAR, "").replace(",", " ").split()
    if file is not None:
        entries += Path(file).read_text().splitlines()
    return parse_entries(entries)


def short_keys(keys: dict[str, str]) -> list[str]:
    """Users whose key is shorter than :data:`MIN_KEY_LENGTH`, for a start-up warning."""
    return sorted({user for key, user in keys.items() if len(key) < MIN_KEY_LENGTH})


class Authenticator:
    """Maps an Authorization header to a user name, or raises a 401 ApiError."""

    def __init__(self, keys: dict[str, str]) -> None:
        self._keys = [(key.encode(), user) for key, user in keys.items()]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def user(self, authorization: str | None, basic_realm: bool = False) -> str:
        if not self._keys:
            return ANONYMOUS
        challenge = {"WWW-Authenticate": 'Basic realm="nninteractive-slicer"' if basic_realm else "Bearer"}
        key = _key_from_header(authorization)
        if key is None:
            raise ApiError(ErrorCode.UNAUTHORIZED,
                           "This server needs an API key: send 'Authorization: Bearer KEY'.", challenge)
        user = None
        for known, name in self._keys:  # compare with every key, in constant time each
            if hmac.compare_digest(known, key):
                user = name
        if user is None:
            raise ApiError(ErrorCode.UNAUTHORIZED, "The API key was not accepted.", challenge)
        return user


def _key_from_header(authorization: str | None) -> bytes | None:
    scheme, _, value = (authorization or "").partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value.encode()
    if scheme.lower() == "basic" and value:
        try:
            _, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password.encode() or None
    return None


class AuthMiddleware:
    """Authenticates every request (but :data:`OPEN_PATHS`) before anything reads or parses its body.

    FastAPI parses a JSON body before it runs a route's dependencies, so a key checked there would come
    after the work a caller without a key can make the server do. The user goes to ``request.state.user``.
    """

    def __init__(self, app: ASGIApp, authenticator: Authenticator, max_body_bytes: int) -> None:
        self.app, self.auth, self.max_body_bytes = app, authenticator, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        try:
            user = self.auth.user(authorization or None, basic_realm=scope["path"] in BROWSER_PATHS)
        except ApiError as error:
            # The body stays unread; a big (or unsized) one would keep the connection busy: close it.
            declared = headers.get(b"content-length", b"0")
            small = declared.isdigit() and int(declared) <= self.max_body_bytes
            await send_json(send, error.status, {"error": error.code, "detail": error.detail},
                            {**(error.headers or {}), **({} if small else {"Connection": "close"})})
            return
        scope.setdefault("state", {})["user"] = user
        if self.auth.enabled and (mark := scope.get("extensions", {}).get(AUTHENTICATED)) is not None:
            mark()  # the connection is a user's now: keyless ones make room first (see serving.py)
        await self.app(scope, receive, send)
