"""The web app for the browser tests: served for real on 127.0.0.1 from a thread of the test process.

The app's own asyncio loop runs in that thread; :meth:`ServedApp.call` runs a function there, between
the app's own callbacks, so a test reads the scene (masks, undo stack) exactly as the page left it.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from trame.app import get_server

from nninteractive_slicer.web.app import NNInteractiveWebApp

T = TypeVar("T")
_names = itertools.count()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServedApp:
    """``NNInteractiveWebApp(**kwargs)`` listening on 127.0.0.1:``port`` until :meth:`stop`."""

    def __init__(self, timeout: float = 120.0, **kwargs: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.app: NNInteractiveWebApp | None = None
        self._thread = threading.Thread(target=self._serve, args=(kwargs,), name="web-app", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the web app did not start")
        if self._error is not None:
            raise self._error

    def _serve(self, kwargs: dict) -> None:
        asyncio.set_event_loop(self.loop)
        # aiohttp handles Ctrl+C through signal handlers, which only the main thread may install.
        self.loop.add_signal_handler = lambda *args, **kwargs: None  # type: ignore[method-assign]
        try:
            server = get_server(f"nni-web-test-{next(_names)}", client_type="vue3")
            self.app = NNInteractiveWebApp(server=server, **kwargs)
            server.controller.on_server_ready.add(lambda *_args, **_kwargs: self._ready.set())  # listening
            task = self.loop.create_task(server.start(
                host="127.0.0.1", port=self.port, open_browser=False, exec_mode="coroutine", show_connection_info=False,
                disable_logging=True))
        except BaseException as exc:  # reported to the constructor
            self._error = exc
            self._ready.set()
            return
        self.loop.run_until_complete(task)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """``fn()`` on the app's loop (between its callbacks)."""

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def stop(self) -> None:
        if self.app is not None:
            app = self.app
            self.call(app.host.close)
            # Release the views' EGL contexts on the thread that made them current (else each warns at exit).
            self.call(lambda: [view.render_window().Finalize() for view in app.slicer_app.view_manager.get_views()])
            asyncio.run_coroutine_threadsafe(self.app.server.stop(), self.loop).result(30)
        self._thread.join(30)


def write_image(path: Path, array, spacing=(1.0, 1.0, 1.0)) -> Path:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path
