"""The remote backend: this project's server (:mod:`.server`) over HTTP(S), torch-free, for 3D Slicer.

One keep-alive ``requests`` session carries every call, with explicit connect and read timeouts (the
read timeout also bounds each socket write). Images are content-addressed: the client asks whether the
server holds one before it uploads it, so a re-connect or a second user on the same image sends nothing.

Nothing is lost when the server forgets: every confirmed call is recorded in a
:class:`~.journal.SessionJournal`. When the server no longer knows the session (reaped, restarted,
evicted) or may have missed a call (a timeout; the session's revision no longer matches), the backend
claims a new session, restores image, starting mask and prompts of the current object, and then
completes the call the user just made. Prompts are seeded by their index, so the rebuilt session is
bit-identical to the lost one.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import requests

from ..core import wire
from ..core.protocol import (
    ACCEPT_CODECS_HEADER,
    PROTOCOL_VERSION,
    REVISION_HEADER,
    SERVER_NAME,
    ErrorCode,
    Route,
    Routes,
)
from ..core.wire import (
    FRAME_CONTENT_TYPE,
    WireError,
    choose_codec,
    decode_frame,
    encode_frame,
    pack_mask,
    read_changed_region,
    unpack_mask,
)
from ..errors import (
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    InvalidPromptError,
    NoImageError,
    OutOfMemoryError,
    ServerBusyError,
)
from ..interface import Backend, Capabilities, Prompt, PromptResult, UploadProgress
from .image_upload import WORKERS, EncodedImage
from .journal import SessionJournal

log = logging.getLogger(__name__)
T = TypeVar("T")

CONNECT_TIMEOUT_S = 5.0


class _Unreachable(BackendUnavailableError):
    """The request did not get an answer: refused, reset or dropped connection."""


class _SessionLost(Exception):
    """The server no longer has our session, or it is not in the state we recorded: rebuild it."""


class _ImageMissing(Exception):
    """The server does not hold the image (any more)."""


class _MalformedReply(BackendError):
    """A success reply that does not decode or does not fit the image: nothing of it is applied."""


# The error each code of the contract raises here; every code has an entry (Testing/test_protocol.py) but
# HTTP_ERROR, which, like a reply without a code (a proxy in between), is read by its status.
ERROR_OF_CODE: dict[str, type[Exception]] = {code.value: error for code, error in {
    ErrorCode.SESSION_UNKNOWN: _SessionLost, ErrorCode.REVISION_MISMATCH: _SessionLost,
    ErrorCode.IMAGE_UNKNOWN: _ImageMissing, ErrorCode.NO_IMAGE: NoImageError,
    ErrorCode.UNAUTHORIZED: AuthenticationError, ErrorCode.BUSY: ServerBusyError,
    ErrorCode.OUT_OF_MEMORY: OutOfMemoryError, ErrorCode.INVALID_INPUT: InvalidPromptError,
    ErrorCode.INVALID_REQUEST: InvalidPromptError, ErrorCode.DIGEST_MISMATCH: InvalidPromptError,
    ErrorCode.BAD_BODY: InvalidPromptError, ErrorCode.BAD_REQUEST: InvalidPromptError,
    ErrorCode.TOO_LARGE: InvalidPromptError, ErrorCode.NOT_FOUND: BackendUnavailableError,
    ErrorCode.METHOD_NOT_ALLOWED: BackendError, ErrorCode.BACKEND_FAILED: BackendError,
    ErrorCode.INTERNAL: BackendError,
}.items()}
ERROR_OF_STATUS: dict[int, type[Exception]] = {
    400: InvalidPromptError, 401: AuthenticationError, 404: BackendUnavailableError, 413: InvalidPromptError,
    422: InvalidPromptError, 503: ServerBusyError, 507: OutOfMemoryError,
}


@dataclass(frozen=True, eq=False)
class _SentImage:
    """What the journal keeps of an image: the caller's array (not copied) and its content address."""

    array: np.ndarray
    digest: str


@dataclass
class RemoteStats:
    """What went over the wire, for tests, benchmarks and the log."""

    image_uploads: int = 0  # complete image uploads
    upload_bytes: int = 0  # frame bytes of image chunks sent
    recoveries: int = 0  # sessions rebuilt after the server lost one


class RemoteBackend(Backend):
    """A session on an nnInteractive-Slicer server.

    ``url`` is the server's base URL (``http://127.0.0.1:1527``, ``https://...``); ``api_key`` its key,
    if it needs one; ``timeout`` the read timeout of every call in seconds (a prompt waiting behind other
    users' predictions counts); ``verify`` is requests' TLS verification: True, False, or a CA bundle
    path for a self-signed certificate. Constructing does no I/O; :meth:`check_connection` tests it.
    """

    name = "remote"

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 30.0,
                 verify: bool | str = True) -> None:
        super().__init__()
        self.url = url.rstrip("/")
        self._api_key = api_key
        self._verify = verify
        self._timeout = (min(CONNECT_TIMEOUT_S, timeout), timeout)
        self._http = self._new_http()
        self._lock = threading.RLock()
        self._info: dict[str, Any] | None = None
        self._session_id: str | None = None
        self._revision = 0
        self._journal = SessionJournal()
        self._can_undo = False  # mirrors the server's one level of undo, also across a rebuild
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._uploading: EncodedImage | None = None
        self._upload_http: queue.SimpleQueue[requests.Session] = queue.SimpleQueue()  # one per concurrent chunk
        for _ in range(WORKERS):
            self._upload_http.put(self._new_http())
        self.stats = RemoteStats()

    # -- queries -------------------------------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        caps = dict(self._server_info()["capabilities"])
        for key in ("prompt_kinds", "scribble_thickness"):
            caps[key] = tuple(caps[key])
        caps.update(backend="remote", extra={**caps.get("extra", {}), "url": self.url})
        return Capabilities(**caps)

    def check_connection(self) -> str:
        """Reach the server, check protocol version and key; raises a typed error that says what failed."""
        health = self._request(Routes.HEALTH).json()
        if not isinstance(health, dict) or health.get("server") != SERVER_NAME:
            raise BackendUnavailableError(f"{self.url} answers, but it is not an nnInteractive-Slicer server.")
        if health.get("protocol_version") != PROTOCOL_VERSION:
            raise BackendUnavailableError(
                f"Version mismatch: the server at {self.url} (version {health.get('version')}) speaks protocol "
                f"{health.get('protocol_version')}, this client speaks {PROTOCOL_VERSION}. Update the older one."
            )
        self._info = None
        info = self._server_info()
        return (f"remote {self.url}: model {info['model_id']} on {info['device']}, server {info['version']}, "
                f"{info['sessions']['open']}/{info['sessions']['max']} sessions in use")

    # -- hooks ---------------------------------------------------------------------------------------
    def upload_progress(self) -> UploadProgress | None:
        encoded = self._uploading
        return encoded.progress() if encoded is not None else None

    def _set_image(self, image: np.ndarray, spacing: tuple[float, float, float]) -> None:
        info = self._server_info()
        check_image_fits(image, info["limits"], self.url)  # before any hashing, compressing or sending
        encoded = self._encode(image, spacing)
        try:
            sent = _SentImage(image, encoded.digest)
            self._call(lambda: self._send_image(sent, spacing, encoded), restore=False)
        finally:
            encoded.close()
            self._uploading = None
        self._journal.image_set(sent, spacing)
        self._can_undo = False

    def _set_initial_mask(self, mask: np.ndarray) -> None:
        self._call(lambda: self._send_mask(mask))
        self._journal.object_started(mask)
        self._can_undo = False

    def _prompt(self, prompt: Prompt) -> PromptResult:
        result = self._call(lambda: self._send_prompt(prompt))
        self._journal.prompted(prompt)
        self._can_undo = True
        return result

    def _undo(self) -> PromptResult:
        if not self._can_undo:
            return PromptResult()
        result = self._call(lambda: self._result(self._post(Routes.UNDO, None)))
        self._journal.undone()
        self._can_undo = False
        return result

    def _reset(self) -> None:
        self._call(lambda: self._state(self._post(Routes.RESET, None)))
        self._journal.object_started(None)
        self._can_undo = False

    def _get_mask(self) -> np.ndarray:
        def fetch() -> np.ndarray:
            reply = self._request(Routes.GET_MASK, session_id=self._session_id)
            try:
                header, payload = decode_frame(reply.content)
                if header.get("shape") != list(self._shape) or not isinstance(header.get("codec"), str):
                    raise WireError(f"it holds a mask of shape {header.get('shape')}, the image is {self._shape}")
                return unpack_mask(payload, self._shape, header["codec"])
            except WireError as exc:
                raise _MalformedReply(f"The server's reply to a mask request is malformed: {exc}") from exc

        return self._call(fetch)

    def _close(self) -> None:
        self._stop.set()
        with self._lock:
            self._discard_session()
            self._http.close()
            while not self._upload_http.empty():
                self._upload_http.get().close()

    # -- calls and recovery --------------------------------------------------------------------------
    def _call(self, op: Callable[[], T], restore: bool = True) -> T:
        """Run ``op`` in our session; if the server lost it, rebuild (replaying the journal when ``restore``)
        and run ``op`` once more."""
        with self._lock:
            try:
                return self._call_once(op, restore)
            except _MalformedReply:
                # The server may have applied what the reply should have described: the next call
                # rebuilds the session from the journal, which does not hold it.
                self._discard_session()
                raise

    def _call_once(self, op: Callable[[], T], restore: bool) -> T:
        try:
            if self._session_id is None:  # first call, or a rebuild that failed half-way
                self._open_session(restore)
            try:
                return self._once_more_if_dropped(op)
            except _SessionLost as lost:
                started = time.perf_counter()
                log.warning("The server lost this session (%s); restoring it.", lost)
                self._info = None  # a restarted server may have other limits
                replayed = self._open_session(restore)
                self.stats.recoveries += 1
                log.warning("Session restored in %.1f s (%d prompts replayed).", time.perf_counter() - started,
                            replayed)
            return self._once_more_if_dropped(op)
        except _SessionLost as again:
            self._discard_session()
            raise BackendUnavailableError(f"The server lost the session again while it was restored: "
                                          f"{again}") from again

    @staticmethod
    def _once_more_if_dropped(op: Callable[[], T]) -> T:
        """A keep-alive connection the server just closed fails once; a second failure is real."""
        try:
            return op()
        except _Unreachable as exc:
            log.info("Connection dropped (%s); retrying once.", exc)
            return op()

    def _open_session(self, restore: bool) -> int:
        """Claim a new session; with ``restore``, replay the journal into it. Returns the prompts replayed.

        The old session is closed first: a backend holds at most one session on the server, so its own
        recoveries never fill the server (nor keep other users out)."""
        self._discard_session()
        state = self._state(self._request(Routes.CREATE_SESSION))
        self._session_id = state["session_id"]
        self._start_heartbeat()
        if not restore:
            return 0
        try:
            return self._journal.restore_into(self._send_image, self._send_mask, self._send_prompt)
        except BaseException:
            self._discard_session()  # half restored: the next call starts over, never uses it as if whole
            raise

    def _discard_session(self) -> None:
        """Close our server session, best effort and quickly (the server reaps what this misses)."""
        session_id, self._session_id = self._session_id, None
        if session_id is not None:
            try:
                route = Routes.CLOSE_SESSION
                self._http.request(route.method, self.url + route.url(session_id=session_id), timeout=(1.0, 2.0),
                                   verify=self._verify)
            except requests.RequestException as exc:
                log.debug("could not close session %s...: %s", session_id[:8], exc)

    def _send_image(self, sent: _SentImage, spacing: tuple[float, float, float],
                    encoded: EncodedImage | None = None) -> None:
        """Bind the image to the session, uploading it first if the server lacks it. Without ``encoded`` (a
        restore) the image is encoded again, and its digest proves the caller's array did not change."""
        present = self._request(Routes.IMAGE_STATUS, digest=sent.digest).json()["present"]
        for _ in range(2):  # it may be evicted between the question and the call
            if not present:
                self._upload(sent, spacing, encoded)
                encoded = None  # its chunks are spent; a second upload encodes again
            try:
                self._state(self._post(Routes.SET_IMAGE, {"digest": sent.digest}))
                return
            except _ImageMissing:
                present = False
        raise BackendUnavailableError("The server dropped the image right after it was uploaded; its image cache "
                                      "is too small for this image.")

    def _encode(self, image: np.ndarray, spacing: tuple[float, float, float]) -> EncodedImage:
        info = self._server_info()
        self._uploading = EncodedImage(image, spacing, choose_codec(info["codecs"]), info["limits"]["chunk_bytes"])
        return self._uploading

    def _upload(self, sent: _SentImage, spacing: tuple[float, float, float], encoded: EncodedImage | None) -> None:
        """Send the image in compressed chunks, several at once, each on its own connection."""
        if encoded is None:
            encoded = self._encode(sent.array, spacing)
            if encoded.digest != sent.digest:
                encoded.close()
                raise BackendError("The image changed since it was sent, so the lost session cannot be restored: "
                                   "select the volume again.")

        def put(index: int, frame: bytes) -> None:
            http = self._upload_http.get()
            try:
                self._request(Routes.UPLOAD_CHUNK, digest=sent.digest, index=index, data=frame,
                              headers={"Content-Type": FRAME_CONTENT_TYPE}, http=http)
            finally:
                self._upload_http.put(http)

        try:
            encoded.send(put)
        finally:
            self.stats.upload_bytes += encoded.frame_bytes
        self.stats.image_uploads += 1

    def _send_mask(self, mask: np.ndarray) -> None:
        codec = choose_codec(self._server_info()["codecs"])
        frame = encode_frame({"codec": codec, "shape": list(mask.shape)}, pack_mask(mask, codec))
        self._state(self._post(Routes.SET_INITIAL_MASK, frame))

    def _send_prompt(self, prompt: Prompt) -> PromptResult:
        if prompt.kind == "point":
            return self._result(self._post(Routes.PROMPT, {"kind": "point", "coord": list(prompt.coord),
                                                        "positive": prompt.positive}))
        if prompt.kind == "bbox":
            return self._result(self._post(Routes.PROMPT, {"kind": "bbox", "box": [list(r) for r in prompt.box],
                                                        "positive": prompt.positive}))
        codec = choose_codec(self._server_info()["codecs"])
        header = {"kind": prompt.kind, "box": [list(r) for r in prompt.box], "positive": prompt.positive,
                  "codec": codec}
        return self._result(self._post(Routes.CROP_PROMPT, encode_frame(header, pack_mask(prompt.mask, codec))))

    def _post(self, route: Route, body: dict[str, Any] | bytes | None) -> requests.Response:
        """A mutating call in our session, stating the revision we expect it to be at."""
        headers = {REVISION_HEADER: str(self._revision)}
        if isinstance(body, bytes):
            headers["Content-Type"] = FRAME_CONTENT_TYPE
            return self._request(route, session_id=self._session_id, data=body, headers=headers)
        return self._request(route, session_id=self._session_id, json=body, headers=headers)

    def _state(self, response: requests.Response) -> dict[str, Any]:
        try:
            state = response.json()
        except ValueError as exc:
            raise _MalformedReply(f"The server's reply is not JSON: {exc}") from exc
        if not isinstance(state, dict) or not isinstance(state.get("session_id"), str) or \
                type(state.get("revision")) is not int:
            raise _MalformedReply("The server's reply does not describe a session.")
        self._revision = state["revision"]
        return state

    def _result(self, response: requests.Response) -> PromptResult:
        """The reply of a prompt or undo, checked against the image before anything is applied."""
        try:
            header, payload = decode_frame(response.content)
            region = read_changed_region(header, payload, self._shape)  # type: ignore[arg-type]
        except WireError as exc:
            raise _MalformedReply(f"The server's reply is malformed, so it was not applied: {exc}") from exc
        self._revision = header["revision"]
        if region is None:
            return PromptResult(backend_ms=header["backend_ms"])
        return PromptResult(region[0], region[1], header["backend_ms"])  # type: ignore[arg-type]

    # -- HTTP ----------------------------------------------------------------------------------------
    def _new_http(self) -> requests.Session:
        http = requests.Session()  # verify goes with each request: REQUESTS_CA_BUNDLE would override a session's
        http.headers[ACCEPT_CODECS_HEADER] = ",".join(wire.AVAILABLE_CODECS)  # as installed now
        if self._api_key:
            http.headers["Authorization"] = f"Bearer {self._api_key}"
        return http

    def _server_info(self) -> dict[str, Any]:
        if self._info is None:
            info = self._request(Routes.INFO).json()
            if info.get("protocol_version") != PROTOCOL_VERSION:
                raise BackendUnavailableError(
                    f"Version mismatch: the server at {self.url} speaks protocol {info.get('protocol_version')}, "
                    f"this client speaks {PROTOCOL_VERSION}. Update the older one.")
            self._info = info
        return self._info

    def _request(self, route: Route, *, data: bytes | None = None, json: Any = None,
                 headers: dict[str, str] | None = None, http: requests.Session | None = None,
                 **params: Any) -> requests.Response:
        """One call of the contract: ``route`` with its path parameters filled in from ``params``, on ``http``
        (default: the backend's keep-alive session)."""
        method, path = route.method, route.url(**params)
        try:
            response = (http or self._http).request(method, self.url + path, data=data, json=json, headers=headers,
                                                    timeout=self._timeout, verify=self._verify)
        except requests.exceptions.SSLError as exc:
            raise BackendUnavailableError(
                f"TLS with {self.url} failed ({_reason(exc)}). If the server uses a self-signed certificate, set "
                "'verify' to its certificate file; if it serves plain HTTP, use an http:// URL.") from exc
        except requests.exceptions.ConnectTimeout as exc:
            raise _Unreachable(f"Cannot reach the server at {self.url}: no answer within {self._timeout[0]} s. "
                               "Check the address, the port and any firewall or SSH tunnel.") from exc
        except requests.exceptions.Timeout as exc:
            raise BackendUnavailableError(
                f"The server at {self.url} did not answer within {self._timeout[1]} s (it may be busy with other "
                "users' prompts); try again or raise the timeout.") from exc
        except requests.exceptions.ConnectionError as exc:
            raise _Unreachable(f"Cannot reach the server at {self.url} ({_reason(exc)}). Is it running? If you use "
                               "an SSH tunnel, is it open?") from exc
        except requests.RequestException as exc:
            raise BackendUnavailableError(f"Request to {self.url} failed: {exc}") from exc
        if response.status_code >= 400:
            raise self._error(response)
        return response

    def _error(self, response: requests.Response) -> Exception:
        """The typed error for an error reply: by its JSON ``error`` code, else (a proxy, not our server) its status."""
        try:
            body = response.json()
            code, detail = str(body["error"]), str(body["detail"])
        except (ValueError, KeyError, TypeError):
            code, detail = ErrorCode.HTTP_ERROR.value, (response.text[:200] or response.reason or "no detail")
        status = response.status_code
        error = ERROR_OF_CODE.get(code) or ERROR_OF_STATUS.get(status, BackendError)
        if error is AuthenticationError:
            return AuthenticationError(f"The server at {self.url} refused the API key: {detail}")
        if error is ServerBusyError:
            try:
                retry = float(response.headers.get("Retry-After", 5))
            except ValueError:
                retry = 5.0
            return ServerBusyError(detail, retry_after=retry)
        if error is BackendUnavailableError:
            return BackendUnavailableError(f"{self.url} has no {response.request.path_url}: is it an "
                                           "nnInteractive-Slicer server?")
        if error is BackendError:
            return BackendError(f"The server failed on this request ({status}): {detail}")
        return error(detail)

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None:
            interval = max(0.5, float(self._server_info()["timeouts"]["liveness_s"]) / 3)
            self._heartbeat = threading.Thread(target=self._beat, args=(interval,), daemon=True,
                                               name="nninteractive-remote-heartbeat")
            self._heartbeat.start()

    def _beat(self, interval: float) -> None:
        """Keep the session alive while the user thinks; a separate HTTP session, never blocking calls."""
        http = self._new_http()
        while not self._stop.wait(interval):
            session_id = self._session_id
            if session_id is None:
                continue
            try:
                http.request(Routes.HEARTBEAT.method, self.url + Routes.HEARTBEAT.url(session_id=session_id),
                             timeout=self._timeout, verify=self._verify)
            except requests.RequestException as exc:
                log.debug("heartbeat failed: %s", exc)
        http.close()


def check_image_fits(image: np.ndarray, limits: dict[str, int], url: str) -> None:
    """Refuse an image the server would refuse, before any work, saying what to do about it."""
    checks = [
        (max(image.shape), limits["max_dim"], "voxels along one axis", 1),
        (image.size, limits["max_image_voxels"], "M voxels", 1e6),
        (image.nbytes, limits["max_image_bytes"], "MiB", 2**20),
    ]
    for value, limit, unit, scale in checks:
        if value > limit:
            shape = " x ".join(str(n) for n in image.shape[::-1])
            raise InvalidPromptError(
                f"The volume ({shape}, {image.dtype}) is too large for the server at {url}: {value / scale:,.4g} "
                f"{unit}, at most {limit / scale:,.4g}. Crop or resample it first (Crop Volume module), or ask the "
                "server's administrator to raise the limit.")


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests error, which names the real problem."""
    for _ in range(8):
        inner = exc.__cause__ or getattr(exc, "reason", None) or (exc.args[0] if exc.args else None)
        if not isinstance(inner, BaseException):
            break
        exc = inner
    return str(exc) or type(exc).__name__
