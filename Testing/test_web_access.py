"""Who may open the web app, and what it turns on by itself: the server's listening rules (a key or an explicit
flag beyond this machine), the key checked on every request (page, scripts, websocket), and 3D volume
rendering off on a CPU renderer with one switch to turn it on."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from playwright.sync_api import sync_playwright
from synthetic import mr_like_image
from web_app import ServedApp, write_image

from nninteractive_slicer.web import cli
from nninteractive_slicer.web.keys import COOKIE, REFUSED
from nninteractive_slicer.web.rendering import renders_on_cpu

KEY = "correct-horse-battery"


def test_listening_beyond_this_machine_needs_a_key_or_the_flag(capsys: pytest.CaptureFixture) -> None:
    cli.check_listening("127.0.0.1", "", False)
    cli.check_listening("0.0.0.0", KEY, False)
    cli.check_listening("0.0.0.0", "", True)
    with pytest.raises(cli.ListenError, match="--allow-remote-without-key"):
        cli.check_listening("0.0.0.0", "", False)
    assert cli.main(["--host", "192.168.1.5"]) == 2
    assert "give a key" in capsys.readouterr().err


def test_a_bad_backend_is_refused_before_anything_starts(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["--backend", "gpu-box:1527"]) == 2
    assert "--backend 'gpu-box:1527'" in capsys.readouterr().err


def test_the_backend_choice_is_the_segment_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNINTERACTIVE_API_KEY", "k")
    official = cli.backend_choice("official+http://gpu:8000", None, "auto")
    assert (official.kind, official.server.url, official.server.api_key) == ("official", "http://gpu:8000", "k")
    local = cli.backend_choice("local", "/models/x", "cpu")
    assert (local.kind, local.local.model, local.local.device) == ("local", "/models/x", "cpu")


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory):
    image = write_image(tmp_path_factory.mktemp("web-key") / "small.nrrd", mr_like_image((16, 24, 24), seed=2))
    app = ServedApp(images=[str(image)], api_key=KEY)
    yield app
    app.stop()


def status(url: str, headers: dict | None = None) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as answer:
            return answer.status, answer.read().decode(errors="replace"), answer.headers.get("Set-Cookie", "")
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode(), ""


def test_every_request_needs_the_key(keyed: ServedApp) -> None:
    assert status(keyed.url)[:2] == (401, REFUSED)
    assert status(keyed.url + "?key=wrong")[0] == 401
    assert status(keyed.url + "index.html", {"Cookie": f"{COOKIE}=wrong"})[0] == 401
    code, _body, cookie = status(keyed.url + "index.html?key=" + KEY)
    assert code == 200 and cookie.startswith(f"{COOKIE}={KEY}") and "HttpOnly" in cookie
    assert status(keyed.url + "index.html", {"Cookie": f"{COOKIE}={KEY}"})[0] == 200
    assert status(keyed.url + "index.html", {"Authorization": f"Bearer {KEY}"})[0] == 200


def test_the_page_works_with_its_key_keys_and_volume_rendering_waits_for_the_switch(keyed: ServedApp) -> None:
    app = keyed.app
    assert app is not None
    assert keyed.call(lambda: renders_on_cpu(app.slicer_app))  # this machine: Mesa's llvmpipe
    vr = app.slicer_app.volume_rendering

    def shown() -> bool:
        return bool(vr.has_vr_display_node(app.volume) and vr.get_vr_display_node(app.volume).GetVisibility())

    assert not app.rendering.enabled and not keyed.call(shown)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        page = browser.new_page()
        page.goto(keyed.url + "?key=" + KEY)
        state = "document.querySelector('#nni-state')"
        page.wait_for_function(f"{state} && {state}.dataset.volume === 'small'", timeout=60_000)  # websocket up
        page.keyboard.press("x")  # the module's shortcut for Box presses the Box button
        page.wait_for_function(f"{state}.dataset.tool === 'bbox'", timeout=10_000)
        page.keyboard.press("p")
        page.wait_for_function(f"{state}.dataset.tool === 'point'", timeout=10_000)
        page.click("#nni-render-3d")
        page.wait_for_function("document.querySelector('#nni-render-3d').checked", timeout=10_000)
        for _ in range(100):  # bounded: the switch reaches the server over the websocket
            if keyed.call(shown):
                break
            page.wait_for_timeout(50)
        assert keyed.call(shown)
        browser.close()
