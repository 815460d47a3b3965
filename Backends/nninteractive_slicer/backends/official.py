"""The official backend: a running official ``nninteractive-server``, driven through the torch-free
``nninteractive-client`` (``nnInteractiveRemoteInferenceSession``), so labs that already run that
server can use it from Slicer without redeploying.

What this adds to the client:

* our interface: validated prompts in, changed regions out (the client already keeps the full
  mask locally and patches it with the box each reply carries);
* typed errors with actionable messages (:mod:`.official_errors`);
* nothing lost: every confirmed call is recorded in a :class:`.journal.SessionJournal`. When the
  server forgets the session (reaped after its idle or liveness timeout, restarted), the next call
  claims a new one, replays the journal and is retried once. After any other failure the server's
  state is unknown (a timed-out prompt may still have run there), so the next call rebuilds the
  session the same way before it goes on.

The server leases a session per backend; it is claimed with the first image, not at construction,
so a backend that was only configured or tested does not hold one of the server's few slots.

The client (and httpx) are imported lazily: importing this module never needs them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import numpy as np

from ..errors import BackendUnavailableError
from ..interface import PROMPT_KINDS, Backend, Box, Capabilities, Prompt, PromptResult, box_slices, changed_box
from .journal import SessionJournal
from .official_errors import CLIENT_MISSING, server_errors
from .server_backend import CONNECT_TIMEOUT_S

log = logging.getLogger(__name__)

T = TypeVar("T")
# What a new session must hold before the call that needed it: nothing (a new image follows), the
# image only (a new object follows), or everything the journal recorded (a prompt or undo follows).
Rebuild = Literal["nothing", "image", "all"]

# The server's names for our prompt kinds, in its capability list.
_INTERACTION_OF_KIND = {"point": "points", "bbox": "bbox2d", "scribble": "scribble", "lasso": "lasso"}


def _client_session_class() -> type:
    """``nnInteractiveRemoteInferenceSession``, or BackendUnavailableError saying how to install it."""
    try:
        from nnInteractive.inference.remote import nnInteractiveRemoteInferenceSession
    except ImportError as exc:
        raise BackendUnavailableError(CLIENT_MISSING) from exc
    return nnInteractiveRemoteInferenceSession


class OfficialBackend(Backend):
    """One image and object on an official nninteractive-server at ``url`` (``http(s)://host:port``).

    ``api_key`` is the server's ``--api-key`` (None: the ``NN_INTERACTIVE_API_KEY`` environment
    variable, else no key). ``timeout`` is how long one request may take, prompts included.
    ``device`` is what the server computes on, as its operator says: the server does not report it,
    and it is only shown to the user. Constructing does no I/O; :meth:`check_connection` tests it.

    Like the journal, the backend keeps a reference to the image array, not a copy, to send it
    again when the server lost the session: change it only through :meth:`set_image`.
    """

    name = "official"

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 30.0, device: str = "unknown") -> None:
        super().__init__()
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise BackendUnavailableError(f"{url!r} is not a server address: use http://host:port or https://...")
        self._session_class = _client_session_class()
        self.url = url.rstrip("/")
        self._api_key = api_key if api_key is not None else os.environ.get("NN_INTERACTIVE_API_KEY")
        self._timeout = float(timeout)
        self._device = device
        self._capabilities: Capabilities | None = None  # asked for on first use: constructing does no I/O
        self._session: Any = None  # the client session, claimed with the first image
        self._stale = False  # the server's state may differ from the journal: rebuild before the next call
        self._journal = SessionJournal()
        self._mask: np.ndarray | None = None  # the confirmed mask, also the client's target buffer
        self._reported: np.ndarray | None = None  # the mask as the caller has it, from our results
        self._last_box: Box | None = None  # what the last prompt changed: undo reverts exactly that
        self._can_undo = False  # the server keeps one level of undo, for the last prompt only
        self._resync_box: Box | None = None  # where a rebuilt session's mask differed from ours

    # -- queries ---------------------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        if self._capabilities is None:
            self._capabilities = _capabilities_from(self._fetch_capabilities(), self.url, self._device)
        return self._capabilities

    def check_connection(self) -> str:
        """Ask the server again (the UI's "Test connection"): version, address and model license."""
        info = self._fetch_capabilities()
        self._capabilities = _capabilities_from(info, self.url, self._device)
        version = info.get("inference_session_version", "(version not reported)")
        return f"official nnInteractive server {version} at {self.url}: model {_license(info)}"

    # -- hooks -----------------------------------------------------------------------------
    def _set_image(self, image: np.ndarray, spacing: tuple[float, float, float]) -> None:
        def send(session: Any) -> np.ndarray:
            return self._send_image(session, image, spacing)

        self._mask = self._call(send, "nothing")
        self._reported = self._mask.copy()
        self._journal.image_set(image, spacing)
        self._object_started()

    def _set_initial_mask(self, mask: np.ndarray) -> None:
        def send(session: Any) -> np.ndarray:
            return self._on_fresh_buffer(
                session, lambda: session.add_initial_seg_interaction(mask, run_prediction=False)
            )

        self._mask = self._call(send, "image")
        self._reported = self._mask.copy()
        self._journal.object_started(mask)
        self._object_started()

    def _reset(self) -> None:
        def send(session: Any) -> np.ndarray:
            return self._on_fresh_buffer(session, session.reset_interactions)

        self._mask = self._call(send, "image")
        self._reported = self._mask.copy()
        self._journal.object_started(None)
        self._object_started()

    def _prompt(self, prompt: Prompt) -> PromptResult:
        box = self._call(lambda session: _send_prompt(session, prompt), "all")
        self._journal.prompted(prompt)
        self._last_box, self._can_undo = box, True
        return self._result(box)

    def _undo(self) -> PromptResult:
        if not self._can_undo:
            return self._result(None)
        # The client reports only whether something was undone. Undo restores exactly what the last
        # prompt wrote, so the box that prompt returned covers every voxel it changes back.
        undone = self._call(lambda session: session.undo(), "all")
        box, self._last_box, self._can_undo = self._last_box, None, False
        if not undone:  # the server keeps no undo (started with --no-undo)
            return self._result(None)
        self._journal.undone()
        return self._result(box)

    def _get_mask(self) -> np.ndarray:
        return self._mask.copy()

    def _close(self) -> None:
        self._drop_session()

    # -- talking to the server -------------------------------------------------------------
    def _call(self, send: Callable[[Any], T], rebuild: Rebuild) -> T:
        """Run ``send(client_session)`` on a ready session; if the server dropped it, rebuild and retry once.

        Any failure leaves our mask and journal as they were and marks the server's state as
        unknown, so the next call starts from a rebuilt session."""
        with server_errors(self.url, self._timeout):
            from nnInteractive.inference.remote import SessionExpiredError

            try:
                try:
                    return send(self._ready_session(rebuild))
                except SessionExpiredError as exc:
                    log.warning(
                        "The nnInteractive server at %s dropped the session (%s); restoring it.", self.url, exc
                    )
                    self._stale = True
                    return send(self._ready_session(rebuild))
            except BaseException:
                self._stale = True
                raise

    def _ready_session(self, rebuild: Rebuild) -> Any:
        """The client session, claimed anew and refilled from the journal when it is missing or stale."""
        if self._session is not None and not self._stale:
            return self._session
        if self._closed:
            raise BackendUnavailableError("This connection to the nnInteractive server was closed: connect again.")
        self._drop_session()
        session = self._session_class(
            self.url,
            api_key=self._api_key,
            connect_timeout=min(CONNECT_TIMEOUT_S, self._timeout),
            read_timeout=self._timeout,
        )
        self._session = session
        if rebuild != "nothing" and self._journal.image is not None:
            journal = self._journal if rebuild == "all" else SessionJournal(self._journal.image, self._journal.spacing)
            rebuilt: list[np.ndarray] = []
            boxes: list[Box | None] = []
            journal.restore_into(
                lambda image, spacing: rebuilt.append(self._send_image(session, image, spacing)),
                lambda mask: session.add_initial_seg_interaction(mask, run_prediction=False),
                lambda prompt: boxes.append(_send_prompt(session, prompt)),
            )
            if rebuild == "all":
                self._adopt_rebuilt(rebuilt[0], boxes)
        self._stale = False
        return session

    def _adopt_rebuilt(self, rebuilt: np.ndarray, boxes: list[Box | None]) -> None:
        """Make the replayed mask ours, and remember where it differs so the next result covers it.

        The server can now undo the last replayed prompt: undo reverts what that replay changed."""
        differs = changed_box(self._mask, rebuilt)
        if differs is not None:
            log.warning(
                "Restored session at %s differs from the lost one in %s (the server does not seed its "
                "refinement); the next result includes that region.",
                self.url,
                differs,
            )
            self._resync_box = _union(self._resync_box, differs)
        log.info("Restored the session at %s: image, starting mask and %d prompt(s) replayed.", self.url, len(boxes))
        self._mask = rebuilt
        if boxes:
            self._last_box = boxes[-1]

    def _send_image(self, session: Any, image: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
        """Send the image and a new empty target buffer; returns that buffer (the client patches it)."""
        session.set_image(image[None], {"spacing": list(spacing)})
        mask = np.zeros(image.shape, np.uint8)
        session.set_target_buffer(mask)
        return mask

    def _on_fresh_buffer(self, session: Any, send: Callable[[], Any]) -> np.ndarray:
        """Run a call that rewrites the client's whole buffer (reset, starting mask) on a new buffer.

        The client writes the buffer before it sends the request, so a failed call would otherwise
        change our confirmed mask."""
        fresh = np.zeros_like(self._mask)
        session.target_buffer = fresh
        send()
        return fresh

    def _result(self, box: Box | None) -> PromptResult:
        """The voxels that differ from what the caller has, as a tight box: the server reports the whole
        box it wrote, widened here to what a rebuilt session changed since our last result."""
        box, self._resync_box = _union(self._resync_box, box), None
        if box is None:
            return PromptResult()
        region = box_slices(box)
        box = changed_box(self._reported[region], self._mask[region], offset=box)
        if box is None:
            return PromptResult()
        patch = self._mask[box_slices(box)].copy()
        self._reported[box_slices(box)] = patch
        return PromptResult(box, patch)

    def _object_started(self) -> None:
        self._last_box, self._can_undo, self._resync_box = None, False, None

    def _drop_session(self) -> None:
        """Release the lease (best effort: the server may already have forgotten it)."""
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def _fetch_capabilities(self) -> dict[str, Any]:
        """GET /capabilities (needs the key, not a lease): proves the server is there and answers us."""
        import httpx

        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        with server_errors(self.url, self._timeout):
            response = httpx.get(
                f"{self.url}/capabilities",
                headers=headers,
                timeout=httpx.Timeout(self._timeout, connect=min(CONNECT_TIMEOUT_S, self._timeout)),
            )
            response.raise_for_status()
        try:
            info = response.json()
            info["supported_interactions"].items()
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BackendUnavailableError(
                f"{self.url} answered, but not like an nnInteractive server ({response.text[:100]!r}): "
                "check the address."
            ) from exc
        return info


def _send_prompt(session: Any, prompt: Prompt) -> Box | None:
    """One prompt through the client; returns the box it changed (the client has patched its buffer)."""
    positive = prompt.positive
    if prompt.kind == "point":
        changed = session.add_point_interaction(list(prompt.coord), include_interaction=positive)
    elif prompt.kind == "bbox":
        changed = session.add_bbox_interaction([list(r) for r in prompt.box], include_interaction=positive)
    else:
        add = session.add_scribble_interaction if prompt.kind == "scribble" else session.add_lasso_interaction
        changed = add(prompt.mask, include_interaction=positive, interaction_bbox=[list(r) for r in prompt.box])
    if changed is None:
        return None
    box = tuple((int(lo), int(hi)) for lo, hi in changed)
    return None if any(hi <= lo for lo, hi in box) else box  # type: ignore[return-value]


def _capabilities_from(info: dict[str, Any], url: str, device: str) -> Capabilities:
    """Our capability record from the server's /capabilities reply."""
    supported = info["supported_interactions"]
    return Capabilities(
        backend="official",
        model_id=f"model served at {url}",
        license=_license(info),
        device=device,
        prompt_kinds=tuple(k for k in PROMPT_KINDS if supported.get(_INTERACTION_OF_KIND[k], False)),
        supports_3d_bbox=bool(supported.get("bbox3d", False)),
        supports_initial_mask=bool(info.get("supports_initial_label", True)),
        scribble_thickness=tuple(int(t) for t in info.get("preferred_scribble_thickness", (2, 2, 2))),  # type: ignore[arg-type]
        undo_depth=1 if info.get("supports_undo", False) else 0,
        extra={
            "url": url,
            "server_version": info.get("inference_session_version"),
            "patch_size": info.get("patch_size"),
            "do_autozoom": info.get("do_autozoom"),
        },
    )


def _license(info: dict[str, Any]) -> str:
    license_ = info.get("license")
    return "unknown (the server could not read it)" if license_ in (None, "", "!!MISSING!!") else str(license_)


def _union(a: Box | None, b: Box | None) -> Box | None:
    if a is None or b is None:
        return a or b
    return tuple((min(x[0], y[0]), max(x[1], y[1])) for x, y in zip(a, b))  # type: ignore[return-value]
