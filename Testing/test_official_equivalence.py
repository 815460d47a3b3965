"""The official backend gives our local backend's results, bit for bit, and bad input never reaches its server.

The official server cannot be seeded; the synthetic model does not zoom out or fall back to random
refinement on these prompts, so the masks must match exactly.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from synthetic import prompt_script
from test_backend_contract import BAD_PROMPTS, check_patch, one_prompt

from nninteractive_slicer.errors import InvalidPromptError, NoImageError
from nninteractive_slicer.interface import Backend, Point, Prompt, PromptResult


def with_negative_points(prompts: list[Prompt]) -> list[Prompt]:
    """The script with a negative point after each positive one, on the same voxel."""
    out: list[Prompt] = []
    for prompt in prompts:
        out.append(prompt)
        if isinstance(prompt, Point) and prompt.positive:
            out.append(Point(prompt.coord, positive=False))
    return out


def run_script(backend: Backend, image: np.ndarray, seed: int) -> list[PromptResult]:
    """A starting mask, a seeded prompt script with negative points and an undo; every result, in order."""
    backend.set_image(image, (1.0, 1.2, 0.8))
    start = np.zeros(image.shape, np.uint8)
    start[24:30, 24:30, 24:30] = 1
    backend.set_initial_mask(start)
    mirror = start.copy()
    results = []
    for i, prompt in enumerate(with_negative_points(prompt_script(image.shape, seed=seed, count=8))):
        results.append(backend.prompt(prompt))
        check_patch(results[-1], mirror, backend)
        if i == 4:
            results.append(backend.undo())
            check_patch(results[-1], mirror, backend)
    return results


@pytest.mark.parametrize("seed", [3, 11])
def test_same_prompts_give_bit_identical_results(local_backend_factory, official_backend_factory, image64, seed):
    with local_backend_factory() as local, official_backend_factory() as official:
        expected = run_script(local, image64, seed)
        got = run_script(official, image64, seed)
        for step, (want, have) in enumerate(zip(expected, got)):
            assert have.box == want.box, f"step {step}"
            if want.changed:
                np.testing.assert_array_equal(have.patch, want.patch, err_msg=f"step {step}")
        np.testing.assert_array_equal(official.get_mask(), local.get_mask())
        assert local.get_mask().any()


def requests_seen(server) -> list[str]:
    """The server's access log: every request but the client's background heartbeats."""
    lines = re.findall(r'"(?:GET|POST) (/\w+) HTTP', server.log_text())
    return [path for path in lines if path != "/heartbeat"]


def test_bad_input_never_reaches_the_server(official_backend_factory, official_server, image64):
    with official_backend_factory() as backend:
        before = len(requests_seen(official_server))
        with pytest.raises(NoImageError):
            backend.prompt(one_prompt("point", image64.shape))
        with pytest.raises(NoImageError):
            backend.undo()
        assert len(requests_seen(official_server)) == before, "prompts before an image went to the server"
        backend.set_image(image64)
        backend.prompt(one_prompt("point", image64.shape))
        assert requests_seen(official_server)[-1] == "/add_point_interaction"  # the log does show requests
        before = len(requests_seen(official_server))
        for prompt in BAD_PROMPTS.values():
            with pytest.raises(InvalidPromptError):
                backend.prompt(prompt)
        for bad_image in (np.zeros((4, 4, 4), np.float32), np.empty((4, 4, 4), object)):
            with pytest.raises(InvalidPromptError):
                backend.set_image(bad_image)
        with pytest.raises(InvalidPromptError):
            backend.set_initial_mask(np.zeros((64, 64, 63), np.uint8))
        assert requests_seen(official_server)[before:] == []
