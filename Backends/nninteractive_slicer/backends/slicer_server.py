"""The remote backend: this project's server (:mod:`..server`) over HTTP(S), torch-free, for 3D Slicer.

Images are content-addressed: the client asks whether the server holds one before it uploads it, so a
re-connect or a second user on the same image sends nothing. HTTP, typed errors and heartbeats are
:mod:`.slicer_server_http`'s; this module keeps the session and its recovery.

Nothing is lost when the server forgets (:mod:`.server_backend`): when the server no longer knows the
session (reaped, restarted, evicted) or may have missed a call (a timeout; the session's revision no longer
matches), the backend claims a new session, replays image and steps (undone ones too, then undoes them
again, so undo and redo reach as far as before), and then completes the call the user just made. Prompts
are seeded by their index, so the restored session is bit-identical to the lost one. A backend holds at
most one session on the server: the old one is closed before a new one is claimed, so its own recoveries
never fill the server.
"""

from __future__ import annotations

import logging
import queue
import secrets
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import requests

from ..errors import BackendError, BackendUnavailableError, InvalidPromptError, UndoError
from ..interface import BBox, Capabilities, Point, Prompt, PromptResult, UndoState, UploadProgress, undo_limit_message
from ..protocol.bodies import (
    BBoxPrompt,
    BodyError,
    ChangedRegion,
    CropHeader,
    ImageStatus,
    Limits,
    MaskHeader,
    PointPrompt,
    SessionState,
    SetImageBody,
)
from ..protocol.contract import REVISION_HEADER, ImageUnknown, Route, Routes, SessionUnknown
from ..protocol.wire import (
    FRAME_CONTENT_TYPE,
    WireError,
    choose_codec,
    decode_frame,
    encode_frame,
    pack_mask,
    read_changed_region,
    register_optional_codecs,
    unpack_mask,
)
from .image_upload import WORKERS, EncodedImage
from .journal import Restore
from .registry import BackendConfig, Requirement, register_backend
from .server_backend import RecoveryStats, ServerBackend
from .slicer_server_http import (
    Heartbeat,
    MalformedReply,
    ReplicaFull,
    ServerConnection,
    Unreachable,
    read_body,
    read_json,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

PLACEMENT_PROBES = 8  # keys a new backend compares on a replicated server, to start on the least busy replica
PLACEMENT_TRIES = 8  # affinity keys tried before a replicated server counts as full


@dataclass(frozen=True, eq=False)
class _SentImage:
    """What the journal keeps of an image: the caller's array (not copied) and its content address."""

    array: np.ndarray
    digest: str


@dataclass
class SlicerServerStats(RecoveryStats):
    """What went over the wire, for tests, benchmarks and the log."""

    image_uploads: int = 0  # complete image uploads
    upload_bytes: int = 0  # frame bytes of image chunks sent
    replicas: Counter[str] = field(default_factory=Counter)  # answers per replica of a replicated server


@register_backend
class SlicerServerBackend(ServerBackend):
    """A session on an nnInteractive-Slicer server.

    ``url`` is the server's base URL (``http://127.0.0.1:1527``, ``https://...``); ``api_key`` its key,
    if it needs one; ``timeout`` the read timeout of every call in seconds (a prompt waiting behind other
    users' predictions counts); ``verify`` is requests' TLS verification: True, False, or a CA bundle
    path for a self-signed certificate. ``affinity_key`` pins the session to one replica of a replicated
    server (default: a random key per backend, placed on the least busy replica). Constructing does no I/O;
    :meth:`check_connection` tests it.
    """

    kind = "slicer_server"
    former_kinds = ("remote",)
    label = "nnInteractive-Slicer server"
    # Slicer ships no zstandard, so images would compress several times slower with zlib and replies be
    # ~25 % larger (benchmarks/results/python312-codecs.md).
    recommended = (Requirement("zstandard", "zstandard>=0.22"),)
    # The server refuses a call at another revision than ours, so a lost call shows on the next one; but
    # the server may have applied what a malformed reply should have described.
    failures_losing_session = (MalformedReply,)
    stats: SlicerServerStats

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 30.0,
                 verify: bool | str = True, affinity_key: str | None = None) -> None:
        super().__init__()
        self._server = ServerConnection(url, api_key, timeout, verify, affinity_key or secrets.token_urlsafe(12))
        self._placed = affinity_key is not None  # a key the caller chose is kept as it is
        self.url = self._server.url
        self._server_session_id: str | None = None
        self._revision = 0
        self._redo_available = 0  # as the server last said; the journal knows how far undo reaches
        self._server_history = (0, 0)  # undo and redo in the server's last reply
        self._heartbeat = Heartbeat(self._server, lambda: self._server_session_id)
        self._uploading: EncodedImage | None = None
        self._upload_pools: queue.SimpleQueue[requests.Session] = queue.SimpleQueue()  # one per concurrent chunk
        for _ in range(WORKERS):
            self._upload_pools.put(self._server.new_pool())
        self.stats = SlicerServerStats(replicas=self._server.replicas)

    @classmethod
    def from_config(cls, config: BackendConfig) -> SlicerServerBackend:
        register_optional_codecs()  # zstandard may have been installed since the wire format was loaded
        return cls(config.url, config.api_key or None, timeout=config.timeout)

    # -- queries -------------------------------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        caps = dict(self._server.info().capabilities)
        for key in ("prompt_kinds", "scribble_thickness"):
            caps[key] = tuple(caps[key])
        caps.update(backend=self.kind, extra={**caps.get("extra", {}), "url": self.url})
        return Capabilities(**caps)

    def check_connection(self) -> str:
        """Reach the server, check protocol version and key; raises a typed error that says what failed."""
        self._server.check_server()
        info = self._server.info()
        return (f"remote {self.url}: model {info.model_id} on {info.device}, server {info.version}, "
                f"{info.sessions.get('open')}/{info.sessions.get('max')} sessions in use")

    # -- hooks ---------------------------------------------------------------------------------------
    def upload_progress(self) -> UploadProgress | None:
        encoded = self._uploading
        return encoded.progress() if encoded is not None else None

    def _set_image(self, image: np.ndarray, spacing: tuple[float, float, float]) -> None:
        self._place()  # so that even the limits are read from the replica that will hold the session
        check_image_fits(image, self._server.info().limits, self.url)  # before any hashing or sending
        encoded = self._encode(image, spacing)
        try:
            sent = _SentImage(image, encoded.digest)
            self._call(lambda: self._send_image(sent, spacing, encoded), "nothing")
        finally:
            encoded.close()
            self._uploading = None
        self._done(lambda: self._journal.image_set(sent, spacing))

    def _set_initial_mask(self, mask: np.ndarray) -> None:
        self._call(lambda: self._send_mask(mask), "image")
        self._done(lambda: self._journal.object_started(mask))

    def _prompt(self, prompt: Prompt) -> PromptResult:
        result = self._call(lambda: self._send_prompt(prompt))
        self._done(lambda: self._journal.prompted(prompt))
        return result

    def _undo(self, steps: int) -> PromptResult:
        if steps > self._journal.undo_available:  # a rebuilt session may reach further back: never go there
            raise UndoError(undo_limit_message("undo", steps, self._journal.undo_available))
        result = self._call(lambda: self._result(self._post(Routes.UNDO, None, steps=steps)))
        self._done(lambda: self._journal.undone(steps))
        return result

    def _redo(self, steps: int) -> PromptResult:
        if steps > self._redo_available:
            raise UndoError(undo_limit_message("redo", steps, self._redo_available))
        result = self._call(lambda: self._result(self._post(Routes.REDO, None, steps=steps)))
        self._done(lambda: self._journal.redone(steps))
        return result

    def _undo_state(self) -> UndoState:
        return UndoState(self._journal.undo_available, self._redo_available)

    def _reset(self) -> None:
        self._call(lambda: self._state(self._post(Routes.RESET, None)), "image")
        self._done(lambda: self._journal.object_started(None))

    def _get_mask(self) -> np.ndarray:
        def fetch() -> np.ndarray:
            reply = self._server.request(Routes.GET_MASK, session_id=self._server_session_id)
            shape = self._image_shape()
            try:
                frame, payload = decode_frame(reply.content)
                header = MaskHeader.read(frame)
                if header.shape != list(shape):
                    raise WireError(f"it holds a mask of shape {header.shape}, the image is {shape}")
                return unpack_mask(payload, shape, header.codec)
            except (WireError, BodyError) as exc:
                raise MalformedReply(f"The server's reply to a mask request is malformed: {exc}") from exc

        return self._call(fetch)

    def _close(self) -> None:
        self._heartbeat.stop()
        with self._lock:
            self._discard_session()
            self._server.close()
            while not self._upload_pools.empty():
                self._upload_pools.get().close()

    # -- the server session --------------------------------------------------------------------------
    def _claim_session(self, restore: Restore) -> int:
        self._discard_session()
        state = self._create_session()
        self._server_session_id = state.session_id
        self._heartbeat.start(max(0.5, self._server.info().timeouts.liveness_s / 3))
        return self._journal.restore_into(
            lambda sent, spacing: self._send_image(sent, spacing), self._send_mask,
            lambda: self._state(self._post(Routes.RESET, None)), self._send_prompt,
            lambda steps: self._result(self._post(Routes.UNDO, None, steps=steps)), restore)

    def _lose_session(self) -> None:
        super()._lose_session()
        self._discard_session()
        self._server.forget_info()  # a restarted server may have other limits

    def _session_lost_errors(self) -> tuple[type[BaseException], ...]:
        return (SessionUnknown,)

    def _typed_errors(self) -> AbstractContextManager[object]:
        return nullcontext()  # the connection raises typed errors itself

    def _attempt(self, op: Callable[[], T]) -> T:
        """A keep-alive connection the server just closed fails once; a second failure is real."""
        try:
            return op()
        except Unreachable as exc:
            log.info("Connection dropped (%s); retrying once.", exc)
            return op()

    def _image_shape(self) -> tuple[int, int, int]:
        assert self._shape is not None, "calls in a session come after an image"
        return self._shape

    def _discard_session(self) -> None:
        """Close our server session, best effort and quickly (the server reaps what this misses)."""
        session_id, self._server_session_id = self._server_session_id, None
        if session_id is not None:
            self._server.release(session_id)

    def _create_session(self) -> SessionState:
        """A new session. On a replicated server, the first one starts on the least busy replica, and when
        that replica is full anyway, another key may reach one with room; recoveries keep the key."""
        self._place()
        for _ in range(PLACEMENT_TRIES - 1):
            try:
                return self._state(self._server.request(Routes.CREATE_SESSION))
            except ReplicaFull:
                self._server.affinity_key = secrets.token_urlsafe(12)
        return self._state(self._server.request(Routes.CREATE_SESSION))

    def _place(self) -> None:
        """Choose the replica once, before the first call that a replica answers for this session."""
        if not self._placed:
            self._placed = True
            self._server.place(PLACEMENT_PROBES)

    def _send_image(self, sent: _SentImage, spacing: tuple[float, float, float],
                    encoded: EncodedImage | None = None) -> None:
        """Bind the image to the session, uploading it first if the server lacks it. Without ``encoded`` (a
        restore) the image is encoded again, and its digest proves the caller's array did not change."""
        status = read_body(ImageStatus, read_json(self._server.request(Routes.IMAGE_STATUS, digest=sent.digest)),
                           "an image query")
        present = status.present
        for _ in range(2):  # it may be evicted between the question and the call
            if not present:
                self._upload(sent, spacing, encoded)
                encoded = None  # its chunks are spent; a second upload encodes again
            try:
                self._state(self._post(Routes.SET_IMAGE, SetImageBody(sent.digest).to_json()))
                return
            except ImageUnknown:
                present = False
        raise BackendUnavailableError("The server dropped the image right after it was uploaded; its image cache "
                                      "is too small for this image.")

    def _encode(self, image: np.ndarray, spacing: tuple[float, float, float]) -> EncodedImage:
        info = self._server.info()
        self._uploading = EncodedImage(image, spacing, choose_codec(info.codecs), info.limits.chunk_bytes)
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
        codec = choose_codec(self._server.info().codecs)
        frame = encode_frame(MaskHeader(codec, list(mask.shape)).to_json(), pack_mask(mask, codec))
        self._state(self._post(Routes.SET_INITIAL_MASK, frame))

    def _send_prompt(self, prompt: Prompt) -> PromptResult:
        if isinstance(prompt, Point):
            body = PointPrompt(list(prompt.coord), prompt.positive)
            return self._result(self._post(Routes.PROMPT, body.to_json()))
        box = [list(r) for r in prompt.box]
        if isinstance(prompt, BBox):
            return self._result(self._post(Routes.PROMPT, BBoxPrompt(box, prompt.positive).to_json()))
        codec = choose_codec(self._server.info().codecs)
        header = CropHeader(prompt.kind, box, codec, prompt.positive)  # type: ignore[arg-type]
        return self._result(self._post(Routes.CROP_PROMPT,
                                       encode_frame(header.to_json(), pack_mask(prompt.mask, codec))))

    def _post(self, route: Route, body: dict[str, Any] | bytes | None, steps: int | None = None) -> requests.Response:
        """A mutating call in our session, stating the revision we expect it to be at."""
        headers = {REVISION_HEADER: str(self._revision)}
        query = None if steps is None else {"steps": steps}
        if isinstance(body, bytes):
            headers["Content-Type"] = FRAME_CONTENT_TYPE
            return self._server.request(route, session_id=self._server_session_id, data=body, headers=headers,
                                        query=query)
        return self._server.request(route, session_id=self._server_session_id, json=body, headers=headers,
                                    query=query)

    def _state(self, response: requests.Response) -> SessionState:
        state = read_body(SessionState, read_json(response), response.request.path_url)
        self._confirmed(state)
        return state

    def _confirmed(self, state: SessionState | ChangedRegion) -> None:
        """Revision and undo history of a reply (kept until the call is recorded, see :meth:`_done`)."""
        if min(state.revision, state.undo, state.redo) < 0:
            raise MalformedReply("The server's reply does not say how far undo and redo reach.")
        self._revision = state.revision
        self._server_history = state.undo, state.redo

    def _done(self, record: Callable[[], None]) -> None:
        """Record a call the server confirmed, with the undo history its last reply reported."""
        record()
        undo, self._redo_available = self._server_history
        self._journal.confirmed(undo)

    def _result(self, response: requests.Response) -> PromptResult:
        """The reply of a prompt or undo, checked against the image before anything is applied."""
        try:
            frame, payload = decode_frame(response.content)
            header = ChangedRegion.read(frame)
            region = read_changed_region(header, payload, self._image_shape())
        except (WireError, BodyError) as exc:
            raise MalformedReply(f"The server's reply is malformed, so it was not applied: {exc}") from exc
        self._confirmed(header)
        if region is None:
            return PromptResult(backend_ms=header.backend_ms)
        return PromptResult(region[0], region[1], header.backend_ms)  # type: ignore[arg-type]


def check_image_fits(image: np.ndarray, limits: Limits, url: str) -> None:
    """Refuse an image the server would refuse, before any work, saying what to do about it."""
    checks = [
        (max(image.shape), limits.max_dim, "voxels along one axis", 1),
        (image.size, limits.max_image_voxels, "M voxels", 1e6),
        (image.nbytes, limits.max_image_bytes, "MiB", 2**20),
    ]
    for value, limit, unit, scale in checks:
        if value > limit:
            shape = " x ".join(str(n) for n in image.shape[::-1])
            raise InvalidPromptError(
                f"The volume ({shape}, {image.dtype}) is too large for the server at {url}: {value / scale:,.4g} "
                f"{unit}, at most {limit / scale:,.4g}. Crop or resample it first (Crop Volume module), or ask the "
                "server's administrator to raise the limit.")
