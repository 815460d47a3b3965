"""The official backend: a running official ``nninteractive-server``, driven through the torch-free
``nninteractive-client`` (``nnInteractiveRemoteInferenceSession``), so labs that already run that
server can use it from Slicer without redeploying.

The client mirrors nnInteractive's session method by method, so the engine's wrapper
(:class:`..engine.engine.Engine`) drives it as it drives nnInteractive's own: validated prompts
in, changed regions out. What this module adds:

* typed errors with actionable messages (:mod:`.official_errors`);
* nothing lost (:mod:`.server_backend`): when the server forgets the session (reaped after its idle or
  liveness timeout, restarted), the next call claims a new one, replays the journal and is retried
  once. After any other failure the server's state is unknown (a timed-out prompt may still have run
  there), so the next call restores the session the same way before it goes on.

The server leases a session per backend; it is claimed with the first image, not at construction,
so a backend that was only configured or tested does not hold one of the server's few slots.

The client (and httpx) are imported lazily: importing this module never needs them.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ..engine.engine import Engine
from ..errors import BackendUnavailableError
from ..interface import PROMPT_KINDS, Capabilities, Prompt, PromptResult, UndoState
from .journal import Restore
from .official_errors import CLIENT_MISSING, client_version, server_errors, version_mismatch
from .registry import BackendConfig, Requirement, register_backend
from .server_backend import CONNECT_TIMEOUT_S, ServerBackend

# The server's names for our prompt kinds, in its capability list.
_INTERACTION_OF_KIND = {"point": "points", "bbox": "bbox2d", "scribble": "scribble", "lasso": "lasso"}


def _client_session_class() -> type:
    """``nnInteractiveRemoteInferenceSession``, or BackendUnavailableError saying how to install it."""
    try:
        from nnInteractive.inference.remote import nnInteractiveRemoteInferenceSession
    except ImportError as exc:
        raise BackendUnavailableError(CLIENT_MISSING) from exc
    return nnInteractiveRemoteInferenceSession


@register_backend
class OfficialBackend(ServerBackend):
    """One image and object on an official nninteractive-server at ``url`` (``http(s)://host:port``).

    ``api_key`` is the server's ``--api-key`` (None: the ``NN_INTERACTIVE_API_KEY`` environment
    variable, else no key). ``timeout`` is how long one request may take, prompts included.
    ``device`` is what the server computes on, as its operator says: the server does not report it,
    and it is only shown to the user. Constructing does no I/O; :meth:`check_connection` tests it.

    Like the journal, the backend keeps a reference to the image array, not a copy, to send it
    again when the server lost the session: change it only through :meth:`set_image`.
    """

    kind = "official"
    label = "Official nnInteractive server"
    requirements = (Requirement("nnInteractive.inference.remote", "nninteractive-client>=2.6,<3"),)
    url_prefix = "official+"

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 30.0, device: str = "unknown") -> None:
        super().__init__()
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise BackendUnavailableError(f"{url!r} is not a server address: use http://host:port or https://...")
        self._client_class = _client_session_class()
        self.url = url.rstrip("/")
        self._api_key = api_key if api_key is not None else os.environ.get("NN_INTERACTIVE_API_KEY")
        self._timeout = float(timeout)
        self._device = device
        self._capabilities: Capabilities | None = None  # asked for on first use: constructing does no I/O
        self._client: Any = None  # the client's session: our lease on the server, claimed with the first image
        self._engine: Engine | None = None  # over the client; its mask is the confirmed one

    @classmethod
    def from_config(cls, config: BackendConfig) -> OfficialBackend:
        return cls(config.url, config.api_key or None, timeout=config.timeout)

    # -- queries ---------------------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        if self._capabilities is None:
            self._capabilities = _capabilities_from(self._checked_capabilities(), self.url, self._device)
        return self._capabilities

    def check_connection(self) -> str:
        """Ask the server again (the UI's "Test connection"): version, address and model license."""
        info = self._checked_capabilities()
        self._capabilities = _capabilities_from(info, self.url, self._device)
        version = info.get("inference_session_version", "(version not reported)")
        return f"official nnInteractive server {version} at {self.url}: model {_license(info)}"

    # -- hooks -----------------------------------------------------------------------------
    def _set_image(self, image: np.ndarray, spacing: tuple[float, float, float]) -> None:
        self._call(lambda: self._ready_engine().set_image(image, spacing), "nothing")
        self._journal.image_set(image, spacing)
        self._journal.confirmed(0)

    def _set_initial_mask(self, mask: np.ndarray) -> None:
        self._call(lambda: self._ready_engine().set_initial_mask(mask), "image")
        self._journal.object_started(mask)
        self._journal.confirmed(0)  # the server cannot undo into an earlier object: the journal drops it

    def _reset(self) -> None:
        self._call(lambda: self._ready_engine().reset(), "image")
        self._journal.object_started(None)
        self._journal.confirmed(0)

    def _prompt(self, prompt: Prompt) -> PromptResult:
        result = self._call(lambda: self._ready_engine().prompt(prompt), "all")
        self._journal.prompted(prompt)
        self._journal.confirmed(1)
        return result

    def _undo(self, steps: int) -> PromptResult:
        engine = self._ready_engine()
        if not engine.can_undo:
            return engine.undo(steps)  # nothing to undo: an UndoError, no request
        prompts = engine.prompt_count
        result = self._call(lambda: engine.undo(steps), "all")
        if engine.prompt_count < prompts:
            self._journal.undone()
            self._journal.confirmed(0)
        return result

    def _undo_state(self) -> UndoState:
        return self._ready_engine().undo_state

    def _get_mask(self) -> np.ndarray:
        return self._ready_engine().mask_copy()

    def _close(self) -> None:
        self._drop_session()

    # -- the server session ----------------------------------------------------------------
    def _ready_engine(self) -> Engine:
        assert self._engine is not None, "the engine exists once a session was claimed"
        return self._engine

    def _claim_session(self, restore: Restore) -> int:
        """A new lease on the server, refilled from the journal; the engine goes on with it."""
        self._drop_session()
        self._client = self._client_class(self.url, api_key=self._api_key,
                                          connect_timeout=min(CONNECT_TIMEOUT_S, self._timeout),
                                          read_timeout=self._timeout)
        rebuilt = Engine(self._client)
        replayed = self._journal.restore_into(rebuilt.set_image, rebuilt.set_initial_mask, rebuilt.reset,
                                              rebuilt.prompt, rebuilt.undo, restore)
        if self._engine is None:
            self._engine = rebuilt
        elif restore == "all" and rebuilt.mask is not None:
            differs = self._engine.adopt(rebuilt)
            if differs is not None:
                self._log.warning("Restored session at %s differs from the lost one in %s (the server does not "
                                  "seed its refinement); the next result includes that region.", self.url, differs)
        else:
            self._engine.rebind(self._client)
        return replayed

    def _session_lost_errors(self) -> tuple[type[BaseException], ...]:
        from nnInteractive.inference.remote import SessionExpiredError

        return (SessionExpiredError,)

    def _typed_errors(self) -> AbstractContextManager[object]:
        return server_errors(self.url, self._timeout)

    def _drop_session(self) -> None:
        """Release the lease (best effort: the server may already have forgotten it)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _checked_capabilities(self) -> dict[str, Any]:
        """The server's capabilities, once its nnInteractive version is known to work with this client."""
        info = self._fetch_capabilities()
        mismatch = version_mismatch(self.url, info.get("inference_session_version"), client_version())
        if mismatch is not None:
            raise mismatch
        return info

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
