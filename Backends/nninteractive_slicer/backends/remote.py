"""The remote backend: this project's server (:mod:`.server`) over HTTP(S), torch-free, for 3D Slicer.

Images are content-addressed: the client asks whether the server holds one before it uploads it, so a
re-connect or a second user on the same image sends nothing. HTTP, typed errors and heartbeats are
:mod:`.remote_http`'s; this module keeps the session and its recovery.

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

from ..core.protocol import REVISION_HEADER, Route, Routes
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
from ..errors import BackendError, BackendUnavailableError, InvalidPromptError
from ..interface import Backend, Capabilities, Prompt, PromptResult, UploadProgress
from .image_upload import WORKERS, EncodedImage
from .journal import SessionJournal
from .remote_http import Heartbeat, ImageMissing, ServerConnection, SessionLost, Unreachable

log = logging.getLogger(__name__)
T = TypeVar("T")


class _MalformedReply(BackendError):
    """A success reply that does not decode or does not fit the image: nothing of it is applied."""


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
        self._server = ServerConnection(url, api_key, timeout, verify)
        self.url = self._server.url
        self._lock = threading.RLock()
        self._session_id: str | None = None
        self._revision = 0
        self._journal = SessionJournal()
        self._can_undo = False  # mirrors the server's one level of undo, also across a rebuild
        self._heartbeat = Heartbeat(self._server, lambda: self._session_id)
        self._uploading: EncodedImage | None = None
        self._upload_pools: queue.SimpleQueue[requests.Session] = queue.SimpleQueue()  # one per concurrent chunk
        for _ in range(WORKERS):
            self._upload_pools.put(self._server.new_pool())
        self.stats = RemoteStats()

    # -- queries -------------------------------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        caps = dict(self._server.info()["capabilities"])
        for key in ("prompt_kinds", "scribble_thickness"):
            caps[key] = tuple(caps[key])
        caps.update(backend="remote", extra={**caps.get("extra", {}), "url": self.url})
        return Capabilities(**caps)

    def check_connection(self) -> str:
        """Reach the server, check protocol version and key; raises a typed error that says what failed."""
        self._server.check_server()
        info = self._server.info()
        return (f"remote {self.url}: model {info['model_id']} on {info['device']}, server {info['version']}, "
                f"{info['sessions']['open']}/{info['sessions']['max']} sessions in use")

    # -- hooks ---------------------------------------------------------------------------------------
    def upload_progress(self) -> UploadProgress | None:
        encoded = self._uploading
        return encoded.progress() if encoded is not None else None

    def _set_image(self, image: np.ndarray, spacing: tuple[float, float, float]) -> None:
        check_image_fits(image, self._server.info()["limits"], self.url)  # before any hashing or sending
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
            reply = self._server.request(Routes.GET_MASK, session_id=self._session_id)
            try:
                header, payload = decode_frame(reply.content)
                if header.get("shape") != list(self._shape) or not isinstance(header.get("codec"), str):
                    raise WireError(f"it holds a mask of shape {header.get('shape')}, the image is {self._shape}")
                return unpack_mask(payload, self._shape, header["codec"])
            except WireError as exc:
                raise _MalformedReply(f"The server's reply to a mask request is malformed: {exc}") from exc

        return self._call(fetch)

    def _close(self) -> None:
        self._heartbeat.stop()
        with self._lock:
            self._discard_session()
            self._server.close()
            while not self._upload_pools.empty():
                self._upload_pools.get().close()

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
            except SessionLost as lost:
                started = time.perf_counter()
                log.warning("The server lost this session (%s); restoring it.", lost)
                self._server.forget_info()  # a restarted server may have other limits
                replayed = self._open_session(restore)
                self.stats.recoveries += 1
                log.warning("Session restored in %.1f s (%d prompts replayed).", time.perf_counter() - started,
                            replayed)
            return self._once_more_if_dropped(op)
        except SessionLost as again:
            self._discard_session()
            raise BackendUnavailableError(f"The server lost the session again while it was restored: "
                                          f"{again}") from again

    @staticmethod
    def _once_more_if_dropped(op: Callable[[], T]) -> T:
        """A keep-alive connection the server just closed fails once; a second failure is real."""
        try:
            return op()
        except Unreachable as exc:
            log.info("Connection dropped (%s); retrying once.", exc)
            return op()

    def _open_session(self, restore: bool) -> int:
        """Claim a new session; with ``restore``, replay the journal into it. Returns the prompts replayed.

        The old session is closed first: a backend holds at most one session on the server, so its own
        recoveries never fill the server (nor keep other users out)."""
        self._discard_session()
        state = self._state(self._server.request(Routes.CREATE_SESSION))
        self._session_id = state["session_id"]
        self._heartbeat.start(max(0.5, float(self._server.info()["timeouts"]["liveness_s"]) / 3))
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
            self._server.release(session_id)

    def _send_image(self, sent: _SentImage, spacing: tuple[float, float, float],
                    encoded: EncodedImage | None = None) -> None:
        """Bind the image to the session, uploading it first if the server lacks it. Without ``encoded`` (a
        restore) the image is encoded again, and its digest proves the caller's array did not change."""
        present = self._server.request(Routes.IMAGE_STATUS, digest=sent.digest).json()["present"]
        for _ in range(2):  # it may be evicted between the question and the call
            if not present:
                self._upload(sent, spacing, encoded)
                encoded = None  # its chunks are spent; a second upload encodes again
            try:
                self._state(self._post(Routes.SET_IMAGE, {"digest": sent.digest}))
                return
            except ImageMissing:
                present = False
        raise BackendUnavailableError("The server dropped the image right after it was uploaded; its image cache "
                                      "is too small for this image.")

    def _encode(self, image: np.ndarray, spacing: tuple[float, float, float]) -> EncodedImage:
        info = self._server.info()
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
            pool = self._upload_pools.get()
            try:
                self._server.request(Routes.UPLOAD_CHUNK, digest=sent.digest, index=index, data=frame,
                                     headers={"Content-Type": FRAME_CONTENT_TYPE}, pool=pool)
            finally:
                self._upload_pools.put(pool)

        try:
            encoded.send(put)
        finally:
            self.stats.upload_bytes += encoded.frame_bytes
        self.stats.image_uploads += 1

    def _send_mask(self, mask: np.ndarray) -> None:
        codec = choose_codec(self._server.info()["codecs"])
        frame = encode_frame({"codec": codec, "shape": list(mask.shape)}, pack_mask(mask, codec))
        self._state(self._post(Routes.SET_INITIAL_MASK, frame))

    def _send_prompt(self, prompt: Prompt) -> PromptResult:
        if prompt.kind == "point":
            return self._result(self._post(Routes.PROMPT, {"kind": "point", "coord": list(prompt.coord),
                                                        "positive": prompt.positive}))
        if prompt.kind == "bbox":
            return self._result(self._post(Routes.PROMPT, {"kind": "bbox", "box": [list(r) for r in prompt.box],
                                                        "positive": prompt.positive}))
        codec = choose_codec(self._server.info()["codecs"])
        header = {"kind": prompt.kind, "box": [list(r) for r in prompt.box], "positive": prompt.positive,
                  "codec": codec}
        return self._result(self._post(Routes.CROP_PROMPT, encode_frame(header, pack_mask(prompt.mask, codec))))

    def _post(self, route: Route, body: dict[str, Any] | bytes | None) -> requests.Response:
        """A mutating call in our session, stating the revision we expect it to be at."""
        headers = {REVISION_HEADER: str(self._revision)}
        if isinstance(body, bytes):
            headers["Content-Type"] = FRAME_CONTENT_TYPE
            return self._server.request(route, session_id=self._session_id, data=body, headers=headers)
        return self._server.request(route, session_id=self._session_id, json=body, headers=headers)

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
