"""What a host other than Slicer's widget gives the Lib (the web app on trame-slicer is one): the selected segment,
kept by the host, and a poll that never blocks an asyncio event loop."""

from __future__ import annotations

import asyncio

import numpy as np
from slicer_scene import InstantBackend, make_scene
from synthetic import blob_centre, mr_like_image

from nninteractive_slicer.interface import Point
from SlicerNNInteractiveLib import PromptPipeline, VolumeGeometry
from SlicerNNInteractiveLib.async_poll import ASYNC_POLL_WAIT, poll_until_idle
from SlicerNNInteractiveLib.automatic import BackendChoice
from SlicerNNInteractiveLib.backends import BackendConfig
from SlicerNNInteractiveLib.logic import Built, QueuedPrompt, SlicerNNInteractiveLogic
from SlicerNNInteractiveLib.segments import full_box, index_to_segmentation, read_mask

SHAPE = (24, 32, 32)


class HostSelection:
    """A host that keeps the selected segment itself (trame-slicer keeps it in Python)."""

    def __init__(self, segment_id: str) -> None:
        self.segment_id = segment_id

    def get(self) -> str | None:
        return self.segment_id

    def set(self, segment_id: str) -> None:
        self.segment_id = segment_id


def scene_with_two_segments():
    scene = make_scene()
    volume = scene.volume(mr_like_image(SHAPE, seed=1))
    segmentation = scene.segmentation(volume)
    first = segmentation.GetSegmentation().AddEmptySegment("first")
    second = segmentation.GetSegmentation().AddEmptySegment("second")
    editor = scene.editor_node(volume, segmentation)
    editor.SetSelectedSegmentID(first)  # what the desktop would read
    return scene, volume, segmentation, editor, first, second


def mask(volume, segmentation, segment_id: str) -> np.ndarray:
    geometry = VolumeGeometry.from_volume_node(volume)
    return read_mask(segmentation, segment_id, index_to_segmentation(geometry, segmentation), full_box(geometry.shape))


def test_prompts_go_to_the_segment_the_host_selected_and_new_segments_are_selected_there() -> None:
    scene, volume, segmentation, editor, first, second = scene_with_two_segments()
    selection = HostSelection(second)
    pipeline = PromptPipeline(scene.scene, InstantBackend(radius=3), editor, scene.app_logic, selection=selection)
    pipeline.submit(Point(blob_centre(SHAPE), True))
    assert mask(volume, segmentation, second).any() and not mask(volume, segmentation, first).any()
    added = pipeline.new_segment()
    assert selection.get() == added and added not in (first, second)


def test_the_asyncio_poll_leaves_the_loop_free_while_a_prompt_runs() -> None:
    scene, volume, segmentation, editor, first, _second = scene_with_two_segments()
    pipeline = PromptPipeline(scene.scene, None, editor, scene.app_logic)
    config = BackendConfig("local")
    logic = SlicerNNInteractiveLogic(pipeline, BackendChoice("local", local=config), poll_wait=ASYNC_POLL_WAIT,
                                     build=lambda choice: Built(config, InstantBackend(radius=3), "instant"),
                                     missing=lambda kind: [])
    logic.enqueue(QueuedPrompt(Point(blob_centre(SHAPE), True)))
    ticks = 0

    async def other_work() -> None:  # e.g. the page's rendering and events
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def main() -> list:
        shown: list = []
        ticker = asyncio.ensure_future(other_work())
        await asyncio.wait_for(poll_until_idle(logic, shown.append), timeout=60)
        ticker.cancel()
        return shown

    events = asyncio.run(main())
    assert mask(volume, segmentation, first).any()
    assert any(e.kind == "status" and e.text.startswith("Done.") for e in events)
    assert ticks > 10  # the loop ran other tasks between polls
