"""Prompts that make nnInteractive zoom out, refine and draw from numpy's RNG, through every backend.

With random weights the synthetic model's predictions stay inside one patch, so AutoZoom, refinement and
the random sampling fallback of refinement planning would never run. The ``rule`` model segments bright
voxels; on a bright rod longer than a patch, one click makes nnInteractive go through all three, and the
right answer is the rod.
"""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_remote import ALICE_KEY, CLIENT_TIMEOUT_S
from nnInteractive.inference.inference_session import nnInteractiveInferenceSession
from synthetic import PATCH, ROD_BOX, ROD_CLICK, ROD_SHAPE, bright_box_image

from nninteractive_slicer.backends.local import LocalBackend
from nninteractive_slicer.backends.slicer_server import SlicerServerBackend


class InferenceSpy:
    """Counts what nnInteractive does in this process (local backend, in-process server), calling through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.zoom_factors: list[float] = []
        self.refinement_patches: list[int] = []
        self.draws: list[int] = []
        build, refine, choice = (nnInteractiveInferenceSession._build_network_input,
                                 nnInteractiveInferenceSession._refine_coarse, np.random.choice)

        def building(session, centre, zoom_out_factor):
            self.zoom_factors.append(zoom_out_factor)
            return build(session, centre, zoom_out_factor)

        def refining(session, bboxes, *args):
            self.refinement_patches.append(len(bboxes))
            return refine(session, bboxes, *args)

        def choosing(*args, **kwargs):
            drawn = choice(*args, **kwargs)
            self.draws.append(int(drawn))
            return drawn

        monkeypatch.setattr(nnInteractiveInferenceSession, "_build_network_input", building)
        monkeypatch.setattr(nnInteractiveInferenceSession, "_refine_coarse", refining)
        monkeypatch.setattr(np.random, "choice", choosing)

    def assert_zoomed_out_once_and_refined(self) -> None:
        assert self.zoom_factors == [1, 1.5]  # the first patch, then exactly one zoom-out
        assert len(self.refinement_patches) == 1 and self.refinement_patches[0] >= 2
        assert self.draws, "refinement planning never fell back to numpy's RNG"


@pytest.fixture(scope="module")
def rod() -> tuple[np.ndarray, np.ndarray]:
    return bright_box_image(ROD_SHAPE, ROD_BOX)


def test_one_click_segments_a_rod_longer_than_a_patch(rule_backend, rule_kind, rod, monkeypatch):
    """Contract and parity: every backend returns exactly the rod, beyond the first patch's border."""
    image, expected = rod
    spy = InferenceSpy(monkeypatch)
    rule_backend.set_image(image)
    mirror = np.zeros(image.shape, np.uint8)
    result = rule_backend.prompt(ROD_CLICK)
    assert result.box == ROD_BOX
    assert ROD_BOX[0][1] > ROD_CLICK.coord[0] + PATCH // 2  # unreachable without zooming out
    result.apply_to(mirror)
    np.testing.assert_array_equal(mirror, expected)
    np.testing.assert_array_equal(rule_backend.get_mask(), expected)
    if rule_kind != "official":  # the official server runs in its own process
        spy.assert_zoomed_out_once_and_refined()
    # The same click again finds nothing to change: no zoom-out, an unchanged result.
    again = rule_backend.prompt(ROD_CLICK)
    assert not again.changed and again.box is None and again.patch is None
    np.testing.assert_array_equal(rule_backend.get_mask(), expected)


def test_refinement_draws_the_same_numbers_whatever_the_rng_state_before(rule_model_dir, rod, monkeypatch):
    """Each prompt seeds numpy's RNG from its index, so the fallback's draws do not depend on history,
    and the caller's RNG state is left as it was."""
    image, expected = rod
    spy = InferenceSpy(monkeypatch)
    draws = []
    with LocalBackend(model_dir=rule_model_dir, device="cpu", torch_threads=2) as backend:
        backend.set_image(image)
        for history in (1, 2):
            backend.reset()
            np.random.seed(history)
            state = np.random.get_state()
            spy.draws.clear()
            backend.prompt(ROD_CLICK)
            draws.append(list(spy.draws))
            after = np.random.get_state()
            assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]
            np.testing.assert_array_equal(backend.get_mask(), expected)
    assert draws[0], "refinement planning never fell back to numpy's RNG"
    assert draws[0] == draws[1]


def test_a_server_that_forgot_the_session_gets_the_zoomed_out_prompt_replayed(rule_remote_server, rod, monkeypatch):
    """Recovery replays the click that zoomed out; the restored object is the rod, bit for bit."""
    image, expected = rod
    runtime = rule_remote_server.runtime
    with SlicerServerBackend(rule_remote_server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as backend:
        backend.set_image(image)
        mirror = np.zeros(image.shape, np.uint8)
        backend.prompt(ROD_CLICK).apply_to(mirror)
        uploads = backend.stats.image_uploads  # 0 when the contract test sent the rod to this server already
        for session in runtime.sessions.remove_all():  # what a restart with a disk cache leaves
            runtime.close_session(session, "forgotten by the test")
        spy = InferenceSpy(monkeypatch)
        # Restored by replaying the click, the object is the rod already: the click again changes nothing.
        assert not backend.prompt(ROD_CLICK).changed
        assert backend.stats.recoveries == 1
        assert backend.stats.image_uploads == uploads  # the server kept the image: the replay sent none
        assert spy.zoom_factors == [1, 1.5, 1]  # the replay zoomed out again; the new click did not
        np.testing.assert_array_equal(backend.get_mask(), expected)
        np.testing.assert_array_equal(mirror, expected)
