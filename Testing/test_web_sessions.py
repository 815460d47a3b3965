"""Several annotators: with ``--sessions`` every browser session gets a scene of its own (its own app process),
so one annotator's image and segments never appear in another's page."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from synthetic import mr_like_image
from web_app import free_port, write_image

from nninteractive_slicer.devtools.synthetic_model import write_model

STATE = "document.querySelector('#nni-state')"


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("web-sessions")
    model = write_model(folder / "rule", "tiny", seed=0, variant="rule")
    image = write_image(folder / "shared.nrrd", mr_like_image((16, 24, 24), seed=3))
    port = free_port()
    env = {**os.environ, "VTK_DEFAULT_OPENGL_WINDOW": "vtkEGLRenderWindow"}
    process = subprocess.Popen(
        [sys.executable, "-m", "nninteractive_slicer.web.cli", str(image), "--model", str(model), "--device", "cpu",
         "--sessions", "2", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("the launcher did not start") from None
            time.sleep(0.2)  # waiting for a port to open, with a deadline
    yield f"http://127.0.0.1:{port}/", folder
    process.terminate()
    process.wait(30)


def test_each_browser_session_gets_its_own_scene(launcher) -> None:
    url, folder = launcher
    other = write_image(Path(folder) / "mine.nrrd", mr_like_image((16, 24, 24), seed=4))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        pages = []
        for _ in range(2):
            page = browser.new_context().new_page()
            page.goto(url, timeout=180_000)  # the launcher starts a process, then redirects to it
            page.wait_for_function(f"{STATE} && {STATE}.dataset.volume === 'shared'", timeout=120_000)
            pages.append(page)
        first, second = pages
        assert first.url != second.url  # two processes, two ports
        first.set_input_files("#nni-upload", str(other))
        first.wait_for_function(f"{STATE}.dataset.volume === 'mine'", timeout=60_000)
        second.reload()
        second.wait_for_function(f"{STATE} && {STATE}.dataset.volume !== ''", timeout=60_000)
        assert second.eval_on_selector("#nni-state", "e => e.dataset.volume") == "shared"
        third = browser.new_context().new_page()
        answer = third.goto(url, timeout=60_000)
        assert answer is not None and answer.status == 503 and "All 2 sessions are in use" in third.content()
        browser.close()
