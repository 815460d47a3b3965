"""The remote backend against a real server: identical to local, images sent once, clear connection errors."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_remote import ALICE_KEY, BOB_KEY, CLIENT_TIMEOUT_S, ThreadedServer, server_config
from synthetic import blob_centre, mr_like_image, prompt_script

from nninteractive_slicer.backends import slicer_server_http
from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
from nninteractive_slicer.errors import AuthenticationError, BackendUnavailableError, ServerBusyError
from nninteractive_slicer.interface import Point


def test_masks_are_bit_identical_to_the_local_backend(remote_backend_factory, local_backend_factory, image64):
    """Same image, same seeded prompts (all four kinds, undo, a starting mask): same boxes, patches, masks."""
    script = prompt_script(image64.shape, seed=5, count=8)
    start = np.zeros(image64.shape, np.uint8)
    start[24:34, 20:30, 22:36] = 1

    def run(backend):
        results = []
        with backend:
            backend.set_image(image64, (1.0, 1.2, 0.8))
            for prompt in script[:5]:
                results.append(backend.prompt(prompt))
            results.append(backend.undo())
            results.append(backend.prompt(script[5]))
            masks = [backend.get_mask()]
            backend.set_initial_mask(start)
            results += [backend.prompt(p) for p in script[6:]]
            masks.append(backend.get_mask())
        return results, masks

    remote_results, remote_masks = run(remote_backend_factory())
    local_results, local_masks = run(local_backend_factory())
    for r, loc in zip(remote_results, local_results, strict=True):
        assert r.box == loc.box
        if loc.changed:
            assert r.patch.dtype == np.uint8
            np.testing.assert_array_equal(r.patch, loc.patch)
    assert remote_results[0].backend_ms > 0  # the server reports its model time
    for r, loc in zip(remote_masks, local_masks, strict=True):
        assert loc.any()
        np.testing.assert_array_equal(r, loc)


def test_an_image_the_server_holds_is_never_sent_again(remote_server, image64):
    image = mr_like_image((40, 48, 56), seed=21)  # an image no other test sends
    first = SlicerServerBackend(remote_server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S)
    second = SlicerServerBackend(remote_server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S)  # another client, same image
    with first, second:
        first.set_image(image)
        assert first.stats.image_uploads == 1
        assert first.stats.upload_bytes < image.nbytes  # compressed, losslessly (the mask matches local)
        first.set_image(image)
        second.set_image(image)
        assert (first.stats.image_uploads, second.stats.image_uploads) == (1, 0)
        # Another spacing is another image.
        second.set_image(image, (1.0, 1.0, 2.0))
        assert second.stats.image_uploads == 1


def test_large_images_go_in_chunks_and_keep_their_dtype(tiny_model_dir):
    from nninteractive_slicer.server.config import Limits

    config = server_config(tiny_model_dir, limits=Limits(chunk_bytes=64 * 1024))
    image = (mr_like_image((40, 50, 60), seed=22) * 7).astype(np.int16)  # 240 kB: 4 chunks
    with ThreadedServer(config) as server, SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as b:
        b.set_image(image)
        assert b.stats.image_uploads == 1
        (cached,) = server.runtime.cache._entries.values()
        assert cached.array.dtype == np.int16
        np.testing.assert_array_equal(cached.array, image)
        assert b.prompt(Point(blob_centre(image.shape))).changed


def test_check_connection_reports_why(remote_server, monkeypatch):
    ok = SlicerServerBackend(remote_server.url, ALICE_KEY).check_connection()
    assert "tiny" in ok and "cpu" in ok
    with pytest.raises(AuthenticationError, match="refused the API key"):
        SlicerServerBackend(remote_server.url, "wrong-key").check_connection()
    with pytest.raises(AuthenticationError):
        SlicerServerBackend(remote_server.url).check_connection()
    with pytest.raises(BackendUnavailableError, match="Cannot reach"):
        SlicerServerBackend("http://127.0.0.1:9", ALICE_KEY, timeout=2).check_connection()
    with pytest.raises(BackendUnavailableError, match="TLS"):
        SlicerServerBackend(remote_server.url.replace("http:", "https:"), ALICE_KEY, timeout=5).check_connection()
    monkeypatch.setattr(slicer_server_http, "PROTOCOL_VERSION", 99)
    with pytest.raises(BackendUnavailableError, match="Version mismatch"):
        SlicerServerBackend(remote_server.url, ALICE_KEY).check_connection()


def test_a_full_server_says_busy_and_keeps_its_sessions(tiny_model_dir, image64):
    with ThreadedServer(server_config(tiny_model_dir, max_sessions=1)) as server:
        first = SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S)
        first.set_image(image64)
        second = SlicerServerBackend(server.url, BOB_KEY, timeout=CLIENT_TIMEOUT_S)
        with pytest.raises(ServerBusyError) as busy:
            second.set_image(image64)
        assert busy.value.retry_after >= 1
        assert first.prompt(Point(blob_centre(image64.shape))).changed  # untouched by the refusal
        first.close()
        second.set_image(image64)  # the slot is free again
        second.close()
        assert len(server.runtime.sessions) == 0
