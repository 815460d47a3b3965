"""The module without its GUI: a queue of prompts, the backend's lifecycle, and a poll() for the widget's timer.

Why poll() waits instead of peeking: inside Slicer the main thread holds the Python GIL while Qt's
event loop is idle (PythonQt's thread support is off), so a worker thread runs only while the main
thread executes Python that releases the GIL. A poll that merely checks ``done()`` lets the worker
move one GIL-free step per timer tick (a prompt then takes tens of times longer); poll() instead
waits on the work in flight for most of its tick, and that wait releases the GIL.

Why the timer keeps ticking slowly while a backend is open: with the timer stopped, no other Python
thread runs at all while Slicer idles, so a server's heartbeats stop (the session is reaped after the
liveness timeout) and the local backend's undo snapshot waits for the next prompt. Every IDLE_TIMER_MS,
poll() lets them run for IDLE_WAIT_S.

Why close() waits, but only so long: at quit Python finalises under the daemon threads still running,
and ends them with ``pthread_exit``, which aborts the process when it unwinds through torch's C++ frames.
So close() stops taking work and waits, at most QUIT_WAIT_S, for the device's current call and the
backend's close. Quitting never waits for a download or a request beyond that.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from nninteractive_slicer.errors import BackendError
from nninteractive_slicer.interface import Backend, Capabilities, Prompt

from .automatic import AUTOMATIC, CHOICES, LOCAL, BackendChoice, can_fall_back, cuda_devices, fallen_back, resolve
from .backends import (
    BackendConfig,
    build_backend,
    describe,
    missing_requirements,
    model_download_bytes,
    recommended_requirements,
)
from .errors import ObliqueViewError, PromptError
from .geometry import VolumeGeometry
from .history_store import HistoryAutosave
from .pipeline import REDO, SYNC, UNDO, Action, PromptPipeline, Request, UndoHooks
from .recording import ReplayRequest, SegmentHistories, recording_pipeline
from .segment_writer import WriteError
from .selection import SegmentSelection
from .upload import upload_status

log = logging.getLogger(__name__)
T = TypeVar("T")

# The widget's timer fires every TIMER_MS; each poll() then waits up to POLL_WAIT_S on the work in
# flight. Qt needs the GIL for ~10 ms per tick, so the worker gets it ~75% of the time, and the GUI
# is never blocked for longer than about POLL_WAIT_S.
TIMER_MS = 10
POLL_WAIT_S = 0.03
LOADING_CHECK_S = 0.5
# While a backend is open and nothing runs: a tick every second that lets other threads run for 20 ms
# (heartbeats every liveness/3 s or more need a few ms each; the GUI is never blocked longer than that).
IDLE_TIMER_MS = 1000
IDLE_WAIT_S = 0.02
QUIT_WAIT_S = 10.0  # a prompt or a model load on a GPU ends well within this
# The local backend's threads that touch torch (engine.device_worker, engine.snapshots), by name.
TORCH_THREADS = ("nninteractive-device", "nninteractive-undo-snapshots")

EventKind = Literal["status", "connection", "backend", "install", "recommend", "fallback", "loading", "devices",
                    "align"]


@dataclass(frozen=True)
class Event:
    """Something for the widget to show. ``data``: Capabilities (or None) for "backend", a kind for
    "install" (what it needs) and "recommend" (what would make it faster), the device names for "devices";
    "loading" with empty text means the model finished loading; "align" means a drawing was refused because
    the views are oblique to the volume."""

    kind: EventKind
    text: str = ""
    data: Any = None


@dataclass
class QueuedPrompt:
    """A prompt waiting for the backend: how to build it from the scene, and what to clear afterwards."""

    build: Callable[[VolumeGeometry], Prompt] | Action | ReplayRequest
    done: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class Built:
    """What a build gave: a backend, what it said about itself and why it was chosen; or why it failed.

    ``config`` is what was chosen (None when nothing could be), so a failure of the local backend can
    be told from one of the server.
    """

    config: BackendConfig | None
    backend: Backend | None = None
    description: str = ""
    error: BaseException | None = None
    devices: tuple[str, ...] = ()
    reason: str = ""  # why this backend was chosen
    capabilities: Capabilities | None = None  # asked on the builder's thread: a server may have to be asked


@dataclass
class _Running:
    request: Request
    future: Future
    item: QueuedPrompt
    started: float
    pipeline: PromptPipeline  # the one that prepared the request (use_scene may build another meanwhile)


@dataclass
class _Build:
    future: Future
    local: bool  # a model may be loading (and downloading): progress is reported
    last_check: float = 0.0


def in_daemon_thread(fn: Callable[..., T], *args: Any, name: str = "nnInteractive") -> Future[T]:
    """Run ``fn(*args)`` on a new daemon thread: nothing at quit or reload ever waits for it."""
    future: Future[T] = Future()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the main thread through the future
                future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def open_backend(choice: BackendChoice) -> Built:
    """Worker thread: choose, build and check a backend (a server is asked for its version and the key)."""
    try:
        config, reason = resolve(choice)
    except Exception as exc:
        return Built(None, error=exc)
    try:
        backend = build_backend(config)
    except Exception as exc:
        return Built(config, error=exc, reason=reason)
    try:
        description = backend.check_connection()
        devices = tuple(cuda_devices()) if config.kind == LOCAL else ()
        capabilities = backend.capabilities()
    except Exception as exc:
        backend.close()
        return Built(config, error=exc, reason=reason)
    return Built(config, backend, f"{description}. {reason}.", devices=devices, reason=reason,
                 capabilities=capabilities)


def error_text(exc: BaseException) -> str:
    """Backend and scene errors carry messages written for the user; anything else is logged with its traceback."""
    if isinstance(exc, WriteError):  # it says itself what became of the segments
        return str(exc)
    if isinstance(exc, (BackendError, PromptError)):
        return f"{exc} The segment was not changed."
    log.error("nnInteractive: the prompt failed", exc_info=exc)
    return (
        f"The prompt failed ({type(exc).__name__}); the segment was not changed. "
        "Details are in the Python console."
    )


def _close_when_built(future: Future) -> None:
    """A build nobody wants any more: close its backend as soon as it exists (on the builder's thread)."""
    if not future.cancelled() and future.exception() is None and future.result().backend is not None:
        future.result().backend.close()


class SlicerNNInteractiveLogic:
    """Runs prompts through its :class:`PromptPipeline`, one at a time, on a worker thread, building backends as
    needed.

    A host (the desktop widget, a web app) calls :meth:`use_scene` (its scene, Segment Editor node and undo
    hooks), :meth:`enqueue` (markups callbacks), :meth:`poll` (its timer, while :attr:`busy`), the segment
    actions (:meth:`new_segment`, :meth:`reset_segment`, :meth:`undo`, :meth:`redo`, :meth:`replay`), and shows
    the events poll() returns; it reads :attr:`capabilities`, never the backend. ``build`` makes a backend
    from a choice (worker thread), ``wait`` blocks until one future is done or a timeout passes (it must
    release the GIL), ``clock`` times. ``pipeline`` is for scripts and tests that build their own.
    """

    def __init__(
        self,
        pipeline: PromptPipeline | None = None,
        choice: BackendChoice | None = None,
        *,
        build: Callable[[BackendChoice], Built] = open_backend,
        wait: Callable[[list[Future], float], object] = lambda fs, t: wait_futures(fs, t, FIRST_COMPLETED),
        clock: Callable[[], float] = time.monotonic,
        poll_wait: float = POLL_WAIT_S,
        missing: Callable[[str], list[str]] = missing_requirements,
        sleep: Callable[[float], object] = time.sleep,
        recommended: Callable[[str], list[str]] = recommended_requirements,
    ) -> None:
        self.pipeline = pipeline
        self._backend: Backend | None = pipeline.backend if pipeline is not None else None
        self.capabilities: Capabilities | None = None  # the backend's, as a value (None: no backend yet)
        self._autosave = HistoryAutosave()
        self.choice = choice or BackendChoice()
        self.used: BackendConfig | None = None  # what the current backend was built from
        self.queue: list[QueuedPrompt] = []
        self.fallback_queue: list[QueuedPrompt] = []  # prompts kept while the user decides on the server
        self._build, self._wait, self._clock, self._poll_wait, self._missing = build, wait, clock, poll_wait, missing
        self._running: _Running | None = None
        self._building: _Build | None = None
        self._events: list[Event] = []
        self._rebuild_shown: tuple[int, int] = (0, 0)
        self._upload_shown: str | None = None
        self._offered: set[str] = set()  # backend kinds whose recommended packages were offered
        self._sleep, self._recommended = sleep, recommended
        self.closed = False  # quit or reload: no more work is taken
        self._fell_back_from: BackendChoice | None = None  # the user's choice while the server stands in for it

    # -- state ---------------------------------------------------------------------------------
    @property
    def backend(self) -> Backend | None:
        return self._backend

    # -- the scene and its segments ----------------------------------------------------------------
    def use_scene(self, scene, editor_node, app_logic=None, undo: UndoHooks | None = None,
                  selection: SegmentSelection | None = None) -> None:
        """Prompt into ``scene`` through ``editor_node`` (again after the scene was closed); the backend stays.

        ``undo`` are the host's Segment Editor undo hooks (see :class:`UndoHooks`); without them the pipeline keeps
        its own history, which only the module's Undo/Redo reach. ``selection`` is where the host keeps the
        selected segment (default: the editor node, as desktop Slicer does).
        """
        self.pipeline = recording_pipeline(scene, self._backend, editor_node, app_logic, undo, self._autosave,
                                           selection)

    @property
    def autosave(self) -> HistoryAutosave:
        return self._autosave

    @autosave.setter
    def autosave(self, autosave: HistoryAutosave) -> None:
        """Where and how often every history in the scene is written to files (takes effect with the next step)."""
        self._autosave = autosave
        catch_up = self.pipeline.catch_up if self.pipeline is not None else None
        if isinstance(catch_up, SegmentHistories):
            catch_up.autosave = autosave

    def new_segment(self) -> str:
        """Add an empty segment and select it; the next prompt starts a new object. Raises PromptError."""
        return self._pipeline().new_segment()

    def reset_segment(self) -> None:
        """Empty the selected segment; the next prompt starts the object again."""
        self._pipeline().reset_segment()

    def undo(self) -> None:
        """Queue an undo of the last prompt (model and segments together)."""
        self.enqueue(QueuedPrompt(UNDO))

    def redo(self) -> None:
        self.enqueue(QueuedPrompt(REDO))

    def replay(self, history) -> str:
        """Replay a saved history (nninteractive_slicer.history.History) into a new segment; returns its id."""
        segment_id = self.new_segment()
        self.enqueue(QueuedPrompt(ReplayRequest(history)))
        return segment_id

    def _pipeline(self) -> PromptPipeline:
        if self.pipeline is None:
            raise PromptError("No scene is open for nnInteractive.")
        return self.pipeline

    @property
    def busy(self) -> bool:
        return bool(self.queue or self._running or self._building)

    @property
    def timer_ms(self) -> int | None:
        """How often the host's timer should call :meth:`poll` now; None: it may stop."""
        if self.closed:
            return None
        if self.busy:
            return TIMER_MS
        return IDLE_TIMER_MS if self.backend is not None else None

    # -- configuration ---------------------------------------------------------------------------
    def configure(self, choice: BackendChoice) -> bool:
        """Take a new configuration; only a real change drops the backend (and its loaded model or session)."""
        if choice in (self.choice, self._fell_back_from):
            return False
        self.choice, self._fell_back_from = choice, None
        self._abandon_build()
        self.use_backend(None)
        return True

    def use_backend(self, backend: Backend | None, config: BackendConfig | None = None,
                    capabilities: Capabilities | None = None) -> None:
        """Switch to ``backend`` (None: build the configured one with the next prompt); the old one is closed.
        ``capabilities`` as the builder's thread asked them: the main thread never asks a server (only a backend
        handed in directly, by a test or a host, is asked here)."""
        old = self._backend
        if old is not None and old is not backend:
            in_daemon_thread(old.close, name="nnInteractive-close")
        self._hold(backend, config)
        if capabilities is None and backend is not None:
            capabilities = backend.capabilities()
        self.capabilities = capabilities
        self._emit("backend", "", capabilities)

    def _hold(self, backend: Backend | None, config: BackendConfig | None) -> None:
        """The backend in use, and what it was built from: the pipeline prompts on the same one."""
        self._backend, self.used = backend, config
        if self.pipeline is not None:
            self.pipeline.backend = backend

    def test_connection(self) -> None:
        """Build the configured backend again, whatever is in use or being built; poll() reports what it says."""
        self._abandon_build()
        self.use_backend(None)
        self._emit("connection", "Testing ...")
        self._start_build()

    def cancel_build(self) -> None:
        """The loading dialog's Cancel: the prompts waiting for the backend are dropped, and what is being built
        is closed as soon as it exists (a download or load in torch cannot be interrupted, only abandoned)."""
        if self._building is None:
            return
        self._abandon_build()
        self.drop_queue()
        self._emit("loading", "")
        self._emit("status", "Loading cancelled; the segment was not changed.")

    def accept_fallback(self) -> None:
        """Continue on the configured server with the prompts the local backend could not run, for this run only:
        the user's choice (Automatic or Local) stays what the widget saves, and configuring it again changes nothing."""
        chosen = self.choice
        self.configure(fallen_back(chosen))
        self._fell_back_from = chosen
        self.queue[:0], self.fallback_queue = self.fallback_queue, []

    def decline_fallback(self) -> None:
        self._drop(self.fallback_queue)
        self.fallback_queue = []

    # -- prompts ---------------------------------------------------------------------------------
    def enqueue(self, item: QueuedPrompt) -> None:
        """Queue a prompt; it is read from the scene and started by the next :meth:`poll`, never in the caller."""
        if self.closed:
            item.done()
            return
        self.queue.append(item)

    def image_chosen(self, volume: object | None) -> bool:
        """A volume was selected: with a backend in use, send the image now, while the user looks for the first
        prompt's place (the upload is then not what the first result waits for). True when queued."""
        if volume is None or self.backend is None:
            return False
        # The user left the volumes those uploads were for: drop the queued ones and stop waiting for the one
        # running (its result is never applied; the next upload sends the volume now chosen).
        self._drop([item for item in self.queue if item.build == SYNC])
        self.queue = [item for item in self.queue if item.build != SYNC]
        running = self._running
        left = running is not None and running.request.volume_node_id != volume.GetID()  # type: ignore[attr-defined]
        if running is not None and left and running.request.prompt == SYNC:
            self._running = None
            running.pipeline.abandon(running.request)
            running.item.done()
        self.enqueue(QueuedPrompt(SYNC))
        return True

    def drop_queue(self) -> None:
        self._drop(self.queue)
        self.queue = []

    def poll(self) -> list[Event]:
        """Finish what is done, start what is next, and wait (GIL released) for at most ``poll_wait`` seconds."""
        if self.closed:
            return []
        deadline = self._clock() + self._poll_wait
        self._finish_build()
        self._finish_prompt()
        self._start_next()
        pending = [job.future for job in (self._building, self._running) if job is not None]
        remaining = deadline - self._clock()
        if pending and remaining > 0:
            # What finishes during the wait is taken up by the next tick, a few ms later: the GUI
            # then gets its turn between this wait and writing the result.
            self._wait(pending, remaining)
        elif not pending and not self.queue and self.backend is not None:
            self._sleep(IDLE_WAIT_S)  # idle: heartbeats and undo snapshots run now (the GIL is released)
        self._report_loading()
        self._report_rebuild()
        self._report_upload()
        events, self._events = self._events, []
        return events

    def close(self, wait_s: float = QUIT_WAIT_S) -> None:
        """Quit or reload: take no more work, let the call in flight end and close the backend, waiting at most
        ``wait_s`` (the GIL released) so that Python never finalises under a thread inside torch."""
        self.closed = True
        self.drop_queue()
        self.decline_fallback()
        deadline = self._clock() + wait_s
        building, running = self._building, self._running
        self._building = self._running = None
        in_flight = [job.future for job in (building, running) if job is not None]
        if in_flight:
            wait_futures(in_flight, max(0.0, deadline - self._clock()))
        backends = [self._backend]
        if building is not None and building.future.done():
            backends.append(building.future.result().backend)
        elif building is not None:
            building.future.add_done_callback(_close_when_built)
        self._hold(None, None)
        closing = [in_daemon_thread(b.close, name="nnInteractive-close") for b in backends if b is not None]
        if closing:
            wait_futures(closing, max(0.0, deadline - self._clock()))
        for thread in threading.enumerate():  # a closed backend's torch threads are on their way out: let them end
            if thread.name.startswith(TORCH_THREADS) and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - self._clock()))

    # -- steps of poll() -------------------------------------------------------------------------
    def _start_next(self) -> None:
        while self._running is None and self.queue and self._building is None:
            if self.backend is None:
                self._start_build()
                return
            item = self.queue.pop(0)
            try:
                pipeline = self._pipeline()
                request = pipeline.prepare(item.build)
            except Exception as exc:  # nothing was sent or written
                self._emit("status", error_text(exc))
                if isinstance(exc, ObliqueViewError):
                    self._emit("align", str(exc))
                item.done()
                continue
            sending = "uploading the image, " if request.image is not None else ""
            self._emit("status", f"nnInteractive is working ({sending}segment {request.segment_id}) ...")
            future = in_daemon_thread(pipeline.run, request, name="nnInteractive-prompt")
            self._running = _Running(request, future, item, self._clock(), pipeline)

    def _finish_prompt(self) -> None:
        running = self._running
        if running is None or not running.future.done():
            return
        self._running = None
        error = running.future.exception()
        if error is not None:
            running.pipeline.abandon(running.request)  # the segment stays exactly as it was
            if can_fall_back(self.choice, self.used, error):
                self._offer_fallback(error, [running.item])
                return
            self._emit("status", error_text(error))
            running.item.done()
            return
        try:
            outcome = running.pipeline.apply(running.request, running.future.result())
        except Exception as exc:  # writing failed: say so, and let the next prompt run
            self._emit("status", error_text(exc))
        else:
            self._emit("status", f"{outcome.message} ({self._clock() - running.started:.1f} s)")
        finally:
            running.item.done()

    def _start_build(self) -> None:
        kind = self.choice.server.kind if self.choice.kind == "automatic" else self.choice.kind
        missing = self._missing(kind)
        if missing:
            self.drop_queue()
            self._emit("install", f"This backend needs {', '.join(missing)}.", kind)
            return
        future = in_daemon_thread(self._build, self.choice, name="nnInteractive-build")
        self._building = _Build(future, local=self.choice.kind in (LOCAL, AUTOMATIC))
        self._emit("status", f"Starting the backend ({CHOICES[self.choice.kind]}) ...")

    def _finish_build(self) -> None:
        building = self._building
        if building is None or not building.future.done():
            return
        self._building = None
        self._emit("loading", "")
        built: Built = building.future.result()
        if built.error is not None:
            text = f"{built.reason}: {error_text(built.error)}" if built.reason else error_text(built.error)
            self._emit("connection", text)
            if can_fall_back(self.choice, built.config, built.error):
                self._offer_fallback(built.error, self.queue)
                self.queue = []
                return
            self._emit("status", text)
            self.drop_queue()
            return
        assert built.backend is not None
        self.use_backend(built.backend, built.config, built.capabilities)
        caps = self.capabilities
        assert caps is not None
        self._emit("connection", built.description)
        self._offer_recommended(built.config.kind if built.config is not None else "")
        if built.devices:
            self._emit("devices", "", built.devices)
        self._emit("status", f"Ready: {caps.backend}, model {caps.model_id} on {caps.device}. {built.description}")

    def _offer_recommended(self, kind: str) -> None:
        """What makes the backend in use faster, offered once per Logic (the widget also once per user), never
        required: only for the kind that was built, so never while Automatic runs locally."""
        recommended = [] if kind in self._offered else self._recommended(kind)
        if recommended:
            self._offered.add(kind)
            self._emit("recommend", f"The server connection is faster with {', '.join(recommended)} "
                       "(it compresses images several times faster).", kind)

    def _report_loading(self) -> None:
        """While a model loads, say how much of it is on disk (once nnInteractive was imported, off this thread)."""
        building = self._building
        if building is None or not building.local or "nnInteractive.model_management" not in sys.modules:
            return
        if self._clock() - building.last_check < LOADING_CHECK_S:
            return
        building.last_check = self._clock()
        megabytes = model_download_bytes() / 1e6
        self._emit("loading", f"Loading the nnInteractive model ({megabytes:.0f} MB on disk) ...")

    def _report_rebuild(self) -> None:
        """While a saved history is replayed (once per reopened segment), say how far it got."""
        running = self._running
        progress = running.request.progress.read().replayed if running else (0, 0)
        if progress[1] and progress != self._rebuild_shown:
            self._rebuild_shown = progress
            self._emit("status", "Rebuilding the model from the segment's history: {}/{} steps ...".format(*progress))

    def _report_upload(self) -> None:
        """While the image travels to the backend, say how far it got."""
        text = upload_status(self.backend) if self._running is not None else None
        if text is not None and text != self._upload_shown:
            self._emit("status", text)
        self._upload_shown = text

    def _offer_fallback(self, error: BaseException, items: list[QueuedPrompt]) -> None:
        self.fallback_queue.extend(items)
        self._emit("status", error_text(error))
        self._emit(
            "fallback",
            f"The local backend failed: {error}\n\nContinue on the server ({describe(self.choice.server)})? "
            "The segment was not changed.",
        )

    def _abandon_build(self) -> None:
        if self._building is not None:
            self._building.future.add_done_callback(_close_when_built)
            self._building = None

    def _emit(self, kind: EventKind, text: str = "", data: Any = None) -> None:
        self._events.append(Event(kind, text, data))

    @staticmethod
    def _drop(items: list[QueuedPrompt]) -> None:
        for item in items:
            item.done()
