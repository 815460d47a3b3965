"""The web app in a real headless Chromium (Debian's ``chromium``), driven by Playwright, against the app
served on 127.0.0.1: every prompt type placed by mouse changes the segment in the scene (read back from
Python) and the page's pixels at that place towards the segment's colour; the module's Undo and Redo restore
the exact earlier masks; a bad upload says why and changes nothing.

The tiny "rule" model marks positive prompt voxels (and bright voxels) as foreground, so the prompt's own
place is always in the result. Waits are bounded and wait on explicit page states (#nni-state), never sleeps.
Screenshots of each step go to Testing/artifacts/web/.
"""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, sync_playwright
from synthetic import mr_like_image
from web_app import ServedApp, write_image

from nninteractive_slicer.devtools.synthetic_model import write_model
from nninteractive_slicer.web.cli import backend_choice
from nninteractive_slicer.web.lib import ensure_lib_importable

ensure_lib_importable()

from SlicerNNInteractiveLib.geometry import VolumeGeometry  # noqa: E402
from SlicerNNInteractiveLib.segments import full_box, index_to_segmentation, read_mask  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "web"
SHAPE = (48, 64, 64)  # (k, j, i): the axial view shows 64 x 64
PROMPT_S = 180_000  # ms: the first prompt also loads the model
STATE = "document.querySelector('#nni-state')"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("web")
    model = write_model(folder / "rule", "tiny", seed=0, variant="rule")
    image = write_image(folder / "lesion.nrrd", mr_like_image(SHAPE, seed=1))
    app = ServedApp(choice=backend_choice("local", str(model), "cpu"), images=[str(image)], volume_rendering=False)
    yield app
    app.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(served: ServedApp, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(served.url)
    page.wait_for_function(f"{STATE} && {STATE}.dataset.volume === 'lesion'", timeout=60_000)
    page.locator("img").first.wait_for(state="visible", timeout=60_000)  # a view shows once its first frame came
    yield page
    context.close()


# -- what the page and the scene show -------------------------------------------------------------------
def mask(served: ServedApp) -> np.ndarray:
    def read() -> np.ndarray:
        app = served.app
        assert app is not None
        segmentation = app.host.editor_node.GetSegmentationNode()
        geometry = VolumeGeometry.from_volume_node(app.volume)
        segment_id = app.slicer_app.segmentation_editor.active_segment_id
        return read_mask(segmentation, segment_id, index_to_segmentation(geometry, segmentation),
                         full_box(geometry.shape)).astype(bool)

    return served.call(read)


def segment_rgb(served: ServedApp) -> np.ndarray:
    def read():
        app = served.app
        assert app is not None
        editor = app.slicer_app.segmentation_editor
        return editor.get_segment(editor.active_segment_id).GetColor()

    return 255.0 * np.array(served.call(read))


def finished(page: Page) -> int:
    return int(page.eval_on_selector("#nni-state", "e => e.dataset.finished"))


def wait_finished(page: Page, before: int) -> None:
    """Until everything queued since ``before`` was counted finished has finished."""
    page.wait_for_function(f"+{STATE}.dataset.finished > {before} && {STATE}.dataset.busy === 'false'",
                           timeout=PROMPT_S)


def choose_tool(page: Page, tool: str) -> None:
    if page.eval_on_selector("#nni-state", "e => e.dataset.tool") == tool:
        return  # a second click would switch it off, as in the module
    page.click(f"#nni-tool-{tool}")
    page.wait_for_function(f"{STATE}.dataset.tool === '{tool}'", timeout=10_000)


def axial(page: Page) -> dict:
    """The axial view's square of the volume, in page pixels (the view fits the volume's width)."""
    box = page.locator("img").first.bounding_box()
    assert box is not None
    side = min(box["width"], box["height"])
    return {"x": box["x"] + (box["width"] - side) / 2, "y": box["y"] + (box["height"] - side) / 2, "side": side}


def at(view: dict, u: float, v: float) -> tuple[float, float]:
    return view["x"] + u * view["side"], view["y"] + v * view["side"]


def pixel(page: Page, xy: tuple[float, float]) -> np.ndarray:
    """Mean colour of the 5 x 5 page pixels around ``xy``."""
    shot = page.screenshot(clip={"x": xy[0] - 2, "y": xy[1] - 2, "width": 5, "height": 5})
    return np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"), dtype=float).reshape(-1, 3).mean(axis=0)


def towards(before: np.ndarray, after: np.ndarray, colour: np.ndarray) -> bool:
    """The pixel changed visibly (> 15 of 255) and in the direction of the segment's colour (the view blends the
    segment's colour over the image, so the new pixel lies between the old one and that colour)."""
    change, wanted = after - before, colour - before
    size = np.linalg.norm(change)
    return bool(size > 15 and change @ wanted > 0.5 * size * np.linalg.norm(wanted))


def wait_pixel_towards(page: Page, xy: tuple[float, float], before: np.ndarray, colour: np.ndarray,
                       tries: int = 100) -> np.ndarray:
    """Until the page's pixels at ``xy`` show the segment: polled, bounded (the frame follows the scene)."""
    found = [before]
    for _ in range(tries):
        found.append(pixel(page, xy))
        if towards(before, found[-1], colour):
            return found[-1]
        page.wait_for_timeout(100)  # a bounded poll of the streamed image, not a sleep before an assert
    raise AssertionError(f"pixels at {xy} stayed {found[-1]}, segment colour {colour}, before {before}")


def drag(page: Page, served: ServedApp, tool: str, points: list[tuple[float, float]]) -> None:
    """Press, move through ``points``, release; each move waits until the stroke in the scene has taken it, as a
    hand's pace would allow (the view sends at most one event per rendered frame, so a burst would lose shape)."""
    stroke = served.app.host.markups[tool]  # type: ignore[union-attr]
    page.mouse.move(*points[0])
    page.mouse.down()
    for xy in points[1:]:
        count = served.call(stroke.GetNumberOfControlPoints)
        page.mouse.move(*xy)
        deadline = time.monotonic() + 10.0
        while served.call(stroke.GetNumberOfControlPoints) <= count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the {tool} stroke did not take the move to {xy}")
            page.wait_for_timeout(20)  # a bounded poll of an explicit state
    page.mouse.up()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


# -- the steps (in order: they build on one another) ------------------------------------------------------
class TestPromptsByMouse:
    masks: list[np.ndarray] = []

    def prompt(self, page: Page, served: ServedApp, place, check_at: tuple[float, float], name: str) -> None:
        before_mask = mask(served)
        before_pixel = pixel(page, check_at)
        count = finished(page)
        place()
        wait_finished(page, count)
        shot(page, name)
        after = mask(served)
        assert (after != before_mask).any(), f"{name}: the segment did not change"
        assert page.eval_on_selector("#nni-state", "e => e.dataset.error") == ""
        wait_pixel_towards(page, check_at, before_pixel, segment_rgb(served))
        shot(page, name)  # again, as the browser shows it now
        self.masks.append(after)

    def test_loaded(self, page: Page, served: ServedApp) -> None:
        shot(page, "0-loaded")
        assert not mask(served).any()
        self.masks.append(mask(served))

    def test_point(self, page: Page, served: ServedApp) -> None:
        view = axial(page)
        choose_tool(page, "point")
        xy = at(view, 0.45, 0.45)
        beside = at(view, 0.49, 0.45)  # the point's own glyph covers the clicked pixel; the blob is around it
        self.prompt(page, served, lambda: page.mouse.click(*xy), beside, "1-point")

    def test_box(self, page: Page, served: ServedApp) -> None:
        view = axial(page)
        choose_tool(page, "bbox")
        a, b = at(view, 0.22, 0.62), at(view, 0.36, 0.76)

        def place() -> None:
            page.mouse.click(*a)
            page.mouse.click(*b)

        self.prompt(page, served, place, at(view, 0.29, 0.69), "2-box")

    def test_scribble(self, page: Page, served: ServedApp) -> None:
        view = axial(page)
        choose_tool(page, "scribble")
        line = [at(view, u, 0.70) for u in np.linspace(0.60, 0.78, 10)]
        self.prompt(page, served, lambda: drag(page, served, "scribble", line), at(view, 0.69, 0.70), "3-scribble")

    def test_lasso(self, page: Page, served: ServedApp) -> None:
        view = axial(page)
        choose_tool(page, "lasso")
        centre, radius = (0.70, 0.28), 0.07
        ring = [at(view, centre[0] + radius * np.cos(t), centre[1] + radius * np.sin(t))
                for t in np.linspace(0, 2 * np.pi, 17)]
        self.prompt(page, served, lambda: drag(page, served, "lasso", ring), at(view, *centre), "4-lasso")

    def test_undo_and_redo_restore_exact_masks(self, page: Page, served: ServedApp) -> None:
        assert len(self.masks) == 5, "runs after the four prompts"
        stack = served.app.host.undo_stack  # type: ignore[union-attr]
        for button, expected, name in (("undo", 3, "5-undo"), ("undo", 2, "6-undo"), ("redo", 3, "7-redo")):
            count = finished(page)
            page.click(f"#nni-{button}")
            wait_finished(page, count)
            assert np.array_equal(mask(served), self.masks[expected]), f"{name}: not the mask after prompt {expected}"
            shot(page, name)
        # The page's undo stack moved with the module's Undo/Redo: one step left to redo.
        assert served.call(lambda: (stack.can_undo(), stack.can_redo())) == (True, True)

    def test_saves_the_segmentation_and_histories(self, page: Page, served: ServedApp, tmp_path: Path) -> None:
        import SimpleITK as sitk

        saved = {}
        for kind in ("labels", "seg", "history"):
            with page.expect_download(timeout=60_000) as download:
                page.click(f"#nni-save-{kind}")
            saved[kind] = tmp_path / download.value.suggested_filename
            download.value.save_as(saved[kind])
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(saved["labels"])))
        assert saved["labels"].name == "lesion.nii.gz" and labels.shape == SHAPE
        assert np.array_equal(labels > 0, mask(served))  # one segment: its voxels, on the image's grid
        assert saved["seg"].read_bytes().startswith(b"NRRD")
        with zipfile.ZipFile(saved["history"]) as archive:
            assert [n for n in archive.namelist() if n.endswith(".history.json")]

    def test_bad_upload_says_why_and_changes_nothing(self, page: Page, served: ServedApp, tmp_path: Path) -> None:
        before = mask(served)
        bad = tmp_path / "broken.nii.gz"
        bad.write_bytes(b"this is not an image")
        page.set_input_files("#nni-upload", str(bad))
        page.wait_for_function(f"{STATE}.dataset.error !== ''", timeout=60_000)
        error = page.eval_on_selector("#nni-state", "e => e.dataset.error")
        assert "broken.nii.gz" in error and "cannot be read" in error and "Nothing was changed" in error
        assert page.inner_text("#nni-status") == error
        assert page.eval_on_selector("#nni-state", "e => e.dataset.volume") == "lesion"
        assert np.array_equal(mask(served), before)
        shot(page, "8-bad-upload")
