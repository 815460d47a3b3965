"""Replaying a journal into a fresh session reproduces the lost state bit for bit (what recovery relies on)."""

from __future__ import annotations

import numpy as np
from synthetic import prompt_script

from nninteractive_slicer.backends.journal import SessionJournal


def test_replay_into_a_fresh_backend_reproduces_the_mask(local_backend_factory, image64):
    original, journal = local_backend_factory(), SessionJournal()
    original.set_image(image64)
    journal.image_set(image64, (1.0, 1.0, 1.0))
    start = np.zeros(image64.shape, np.uint8)
    start[30:34, 30:34, 30:34] = 1
    original.set_initial_mask(start)
    journal.object_started(start)
    for prompt in prompt_script(image64.shape, seed=5, count=5):
        original.prompt(prompt)
        journal.prompted(prompt)
    original.undo(2)
    journal.undone(2)

    fresh = local_backend_factory()
    assert journal.restore_into(fresh.set_image, fresh.set_initial_mask, fresh.reset, fresh.prompt, fresh.undo) == 5
    np.testing.assert_array_equal(fresh.get_mask(), original.get_mask())
    assert fresh.undo_state() == original.undo_state()  # the redo was restored too
    original.redo()
    fresh.redo()
    np.testing.assert_array_equal(fresh.get_mask(), original.get_mask())
    # Both continue identically.
    nxt = prompt_script(image64.shape, seed=6, count=1)[0]
    original.prompt(nxt)
    fresh.prompt(nxt)
    np.testing.assert_array_equal(fresh.get_mask(), original.get_mask())
    original.close()
    fresh.close()
