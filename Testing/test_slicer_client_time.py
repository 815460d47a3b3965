"""The client's share of a prompt at 256x256x130: sync check + markups conversion + writing the result.

The backend answers instantly (a ball around the point), so the time measured is the Lib's own:
``prepare`` (stamps, geometry, prompt) and ``apply`` (read the box, Add/Remove through the Segment
Editor logic, verify). Run with ``-s`` to see the numbers.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import vtk
from slicer_scene import InstantBackend, make_scene

from SlicerNNInteractiveLib import PromptPipeline, control_points_world, point_prompt

SHAPE = (130, 256, 256)
PROMPTS = 20


@pytest.mark.parametrize("radius", [14, 40])
def test_client_time_per_prompt_at_256x256x130(radius):
    s = make_scene()
    rng = np.random.default_rng(0)
    lps_ct = np.array([[-0.8, 0, 0, 100.0], [0, -0.8, 0, 120.0], [0, 0, 2.5, -160.0], [0, 0, 0, 1]])
    volume = s.volume(rng.integers(-1000, 2000, SHAPE, dtype=np.int16), lps_ct)
    segmentation = s.segmentation(volume)
    editor = s.editor_node(volume, segmentation)
    backend = InstantBackend(radius)
    pipeline = PromptPipeline(s.scene, backend, editor, s.app_logic)
    node = s.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    totals, prepares, applies = [], [], []
    for n in range(PROMPTS + 1):
        kji = np.array([65, 128, 128]) + rng.integers(-3, 4, 3)
        node.RemoveAllControlPoints()
        node.AddControlPointWorld(vtk.vtkVector3d(*(lps_ct @ np.r_[kji[::-1], 1.0])[:3]))
        t0 = time.perf_counter()
        prepared = pipeline.prepare(lambda g: point_prompt(control_points_world(node)[0], g))
        t1 = time.perf_counter()
        result = pipeline.run(prepared)
        t2 = time.perf_counter()
        outcome = pipeline.apply(prepared, result)
        t3 = time.perf_counter()
        assert outcome.written
        if n == 0:
            first = (t1 - t0) + (t3 - t2)  # includes copying the image for its upload
            continue
        assert prepared.image is None and not prepared.send_mask  # steady state: nothing re-sent
        prepares.append(t1 - t0)
        applies.append(t3 - t2)
        totals.append(t1 - t0 + t3 - t2)
    ms = 1000 * np.array(totals)
    print(
        f"\nclient time per prompt at 256x256x130, changed box ~{2 * radius + 5}^3 voxels: "
        f"median {np.median(ms):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms "
        f"(prepare {1000 * np.median(prepares):.2f} ms, apply {1000 * np.median(applies):.1f} ms; "
        f"first prompt with image copy {1000 * first:.1f} ms)"
    )
    assert np.median(ms) < 100
