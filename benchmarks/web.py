"""The web app against the desktop Lib on the same prompts: click -> segment written, and -> pixels in the browser.

For each image size the app is served on 127.0.0.1 (tiny "rule" model, CPU) and a headless Chromium places a
point, a box, a scribble and a lasso by mouse. Measured per prompt: from the mouse action to the segment
changed in the scene (polled from Python on the app's loop, ~2 ms resolution) and to the page's pixels at the
prompt's place showing the segment (polled screenshots, ~40 ms resolution); and the first frame after page
load (navigation to the first view image decoded). The desktop column runs the very prompts the web session
recorded (its segment history) through the Lib's PromptPipeline on a fresh slicer-core scene, in this process,
from prepare to the written segment: what the same prompt costs the Lib without a browser.

    VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow .venv-web/bin/python benchmarks/web.py [--sizes S M L]
Writes benchmarks/results/web.json and web.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "Testing"))

from synthetic import mr_like_image  # noqa: E402
from web_app import ServedApp, write_image  # noqa: E402

from nninteractive_slicer.devtools.synthetic_model import write_model  # noqa: E402
from nninteractive_slicer.web.cli import backend_choice  # noqa: E402

SIZES = {"S": (48, 64, 64), "M": (96, 128, 128), "L": (130, 256, 256)}
KINDS = ("point", "bbox", "scribble", "lasso")


def run_web(shape, model: Path, folder: Path, repeats: int) -> tuple[dict, float, list]:
    import test_web_browser as steps  # the tests' page helpers: the same waits and the same places
    from playwright.sync_api import sync_playwright

    image = write_image(folder / "bench.nrrd", mr_like_image(shape, seed=1))
    served = ServedApp(choice=backend_choice("local", str(model), "cpu"), images=[str(image)],
                       volume_rendering=False)
    times: dict[str, dict[str, list[float]]] = {k: {"written": [], "pixels": []} for k in KINDS}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=steps.CHROMIUM, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            start = time.perf_counter()
            page.goto(served.url)
            page.wait_for_function("[...document.images].some(i => i.complete && i.naturalWidth > 0)",
                                   timeout=120_000, polling=5)
            first_frame = time.perf_counter() - start
            page.wait_for_function(f"{steps.STATE} && {steps.STATE}.dataset.volume === 'bench'", timeout=60_000)
            warm(page, served, steps)
            served.call(lambda: stamp_writes(served))
            for repeat in range(repeats):
                for kind in KINDS:
                    page.click("#nni-next")  # each prompt starts a new segment: the same work every time
                    expected = 2 + repeat * len(KINDS) + KINDS.index(kind)
                    page.wait_for_function(f"{steps.STATE}.dataset.segments == '{expected}'", timeout=30_000)
                    served.call(lambda odd=repeat % 2: distinct_colour(served, odd))
                    written, pixels = one_prompt(page, served, steps, kind)
                    times[kind]["written"].append(written)
                    times[kind]["pixels"].append(pixels)
            browser.close()
        prompts = recorded_prompts(served)
    finally:
        served.stop()
    return times, first_frame, prompts


def stamp_writes(served) -> None:
    """Note the time of every change of a segment's voxels (on the app's loop, as it happens)."""
    app = served.app
    app.segment_written = []
    distinct_colour(served, 1)  # the warm-up's segment: blue, so the first round's red stands out
    for tool in ("scribble", "lasso"):  # the stroke's own line would colour the checked pixels before the result
        app.host.markups[tool].GetDisplayNode().SetVisibility(False)
    segmentation = app.host.editor_node.GetSegmentationNode().GetSegmentation()
    for event in (segmentation.SourceRepresentationModified, segmentation.RepresentationModified):
        segmentation.AddObserver(event, lambda *_: app.segment_written.append(time.perf_counter()))


def distinct_colour(served, odd: int) -> None:
    """Red, then blue on the next round: a segment drawn over the last round's visibly changes the pixels (and
    neither is the green of the markups being placed, which the pixel check must not take for the result)."""
    editor = served.app.slicer_app.segmentation_editor
    editor.get_segment(editor.active_segment_id).SetColor(*((0.1, 0.1, 0.9) if odd else (0.9, 0.1, 0.1)))


def warm(page, served, steps) -> None:
    """One point first: the model loads and the image travels (not what a prompt costs afterwards)."""
    view = steps.axial(page)
    steps.choose_tool(page, "point")
    count = steps.finished(page)
    page.mouse.click(*steps.at(view, 0.45, 0.45))
    steps.wait_finished(page, count)


def one_prompt(page, served, steps, kind: str) -> tuple[float, float]:
    view = steps.axial(page)
    steps.choose_tool(page, kind)
    places = {"point": ((0.45, 0.45), (0.49, 0.45)), "bbox": ((0.22, 0.62), (0.29, 0.69)),
              "scribble": ((0.60, 0.70), (0.69, 0.70)), "lasso": ((0.70, 0.28), (0.70, 0.28))}
    check = steps.at(view, *places[kind][1])
    before_pixel, before = steps.pixel(page, check), steps.mask(served).sum()
    count = steps.finished(page)
    colour = steps.segment_rgb(served)
    if kind == "point":
        start = time.perf_counter()
        page.mouse.click(*steps.at(view, 0.45, 0.45))
    elif kind == "bbox":
        page.mouse.click(*steps.at(view, 0.22, 0.62))
        start = time.perf_counter()
        page.mouse.click(*steps.at(view, 0.36, 0.76))
    else:
        if kind == "scribble":
            points = [steps.at(view, u, 0.70) for u in np.linspace(0.60, 0.78, 10)]
        else:
            points = [steps.at(view, 0.70 + 0.07 * np.cos(t), 0.28 + 0.07 * np.sin(t))
                      for t in np.linspace(0, 2 * np.pi, 17)]
        stroke_without_release(page, served, kind, points)
        start = time.perf_counter()
        page.mouse.up()
    try:
        steps.wait_pixel_towards(page, check, before_pixel, colour, tries=1200)  # a prompt may refine
        pixels = time.perf_counter() - start
    except AssertionError as missed:  # reported as such in the table, never as a time
        print(f"{kind}: {missed}", flush=True)
        pixels = float("nan")
    steps.wait_finished(page, count)
    assert steps.mask(served).sum() != before, f"{kind}: the segment did not change"
    written = [t for t in served.app.segment_written if t > start]  # stamped on the app's loop, no polling
    return written[0] - start, pixels


def stroke_without_release(page, served, tool: str, points) -> None:
    stroke = served.app.host.markups[tool]
    page.mouse.move(*points[0])
    page.mouse.down()
    for xy in points[1:]:
        count = served.call(stroke.GetNumberOfControlPoints)
        page.mouse.move(*xy)
        deadline = time.monotonic() + 10
        while served.call(stroke.GetNumberOfControlPoints) <= count and time.monotonic() < deadline:
            page.wait_for_timeout(20)


def recorded_prompts(served) -> list:
    """(kind, prompt) of each recorded prompt step of the web session, in order (the warm-up point excluded)."""
    from SlicerNNInteractiveLib.history_store import read_history

    def read():
        app = served.app
        node = app.host.editor_node.GetSegmentationNode()
        found = []
        for segment_id in app.slicer_app.segmentation_editor.get_segment_ids():
            history = read_history(node, segment_id)
            for step in (history.steps if history else []):
                if step.op == "prompt":
                    found.append(step.prompt)
        return found

    return served.call(read)[1:]


def run_desktop(shape, model: Path, prompts: list) -> dict:
    """The same prompts through the Lib's PromptPipeline on slicer-core, each into a new segment (as on the page)."""
    from slicer_scene import make_scene

    from nninteractive_slicer.backends.registry import BackendConfig, build_backend
    from nninteractive_slicer.web.lib import ensure_lib_importable

    ensure_lib_importable()
    from SlicerNNInteractiveLib import PromptPipeline

    scene = make_scene()
    volume = scene.volume(mr_like_image(shape, seed=1))
    segmentation = scene.segmentation(volume)
    editor = scene.editor_node(volume, segmentation)
    backend = build_backend(BackendConfig("local", device="cpu", model=str(model)))
    pipeline = PromptPipeline(scene.scene, backend, editor, scene.app_logic)
    pipeline.new_segment()
    pipeline.submit(prompts[0])  # warm: the image travels
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    for prompt in prompts:
        pipeline.new_segment()
        start = time.perf_counter()
        pipeline.submit(prompt)
        times[type(prompt).__name__.lower()].append(time.perf_counter() - start)
    backend.close()
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = write_model(folder / "rule", "tiny", seed=0, variant="rule")
        for size in args.sizes:
            shape = SIZES[size]
            web, first_frame, prompts = run_web(shape, model, folder, args.repeats)
            desktop = run_desktop(shape, model, prompts)
            results[size] = {"shape": shape, "first_frame_s": first_frame, "web": web, "desktop": desktop}
            print(size, json.dumps(summary(results[size])), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "web.json").write_text(json.dumps(results, indent=1))
    (args.out / "web.md").write_text(table(results))
    print(table(results))
    return 0


def summary(result: dict) -> dict:
    def median(values: list[float]) -> float | None:
        seen = [v for v in values if v == v]  # NaN: the pixels were not seen to change
        return statistics.median(seen) if seen else None

    return {kind: {"desktop": median(result["desktop"][kind]), "written": median(result["web"][kind]["written"]),
                   "pixels": median(result["web"][kind]["pixels"]),
                   "pixels_missed": sum(v != v for v in result["web"][kind]["pixels"])} for kind in KINDS}


def table(results: dict) -> str:
    lines = ["| size | prompt | desktop Lib: prompt -> written (s) | web: mouse -> written (s) | "
             "web: mouse -> pixels (s) | first frame after load (s) |", "|---|---|---|---|---|---|"]
    for size, result in results.items():
        shape = "x".join(str(n) for n in result["shape"])
        for kind, row in summary(result).items():
            cells = [f"{row[c]:.2f}" if row[c] is not None else "-" for c in ("desktop", "written", "pixels")]
            if row["pixels_missed"]:
                cells[2] += f" ({row['pixels_missed']} not seen)"
            lines.append(f"| {size} ({shape}) | {kind} | {' | '.join(cells)} | {result['first_frame_s']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
