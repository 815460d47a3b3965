"""Prompts of two sessions at once, as a CPU server's two device threads run them: each keeps its own
seeded random stream and its own device-time budget, and the masks are those of one thread."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fixtures_remote import ALICE_KEY, BOB_KEY, CLIENT_TIMEOUT_S, ThreadedServer, server_config

from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
from nninteractive_slicer.engine.engine import PromptBudgetError, device_budget
from nninteractive_slicer.engine.model_loading import device_threads
from nninteractive_slicer.engine.prompt_rng import route_planner_draws, seeded_prompt_rng
from nninteractive_slicer.errors import BackendUnavailableError
from nninteractive_slicer.interface import BBox, Point
from nninteractive_slicer.server.options import build_parser, config_from_args


def sparse_mask() -> torch.Tensor:
    rng = np.random.default_rng(3)
    return torch.from_numpy(rng.random((24, 24, 24)) > 0.97)


def plan(seed: int, gate: threading.Event | None = None, done: threading.Event | None = None) -> list:
    """nnInteractive's planner on its random fallback (max_depth -1 skips the search), twice in one prompt."""
    from nnInteractive.inference import inference_session

    with seeded_prompt_rng(seed):
        first = inference_session.generate_bounding_boxes(sparse_mask(), (6, 6, 6), margin=(1, 1, 1), max_depth=-1)
        if done is not None:
            done.set()
        if gate is not None:
            assert gate.wait(10)
        second = inference_session.generate_bounding_boxes(sparse_mask(), (6, 6, 6), margin=(1, 1, 1), max_depth=-1)
    return [first, second]


def test_each_prompt_draws_its_own_stream_while_another_draws_between():
    """Two prompts whose planner draws interleave (b draws between a's two calls) get exactly the boxes each
    gets alone, and the global RNG is as it was; with one global seed per prompt, b's draws would shift a's."""
    route_planner_draws()
    alone = {seed: plan(seed) for seed in (0, 1)}
    assert alone[0] != alone[1]  # the seed matters, so a mix-up would show
    np.random.seed(1234)
    outside = np.random.get_state()[1].copy()
    gate, a_first_done, results = threading.Event(), threading.Event(), {}
    a = threading.Thread(target=lambda: results.__setitem__(0, plan(0, gate, a_first_done)))
    a.start()
    assert a_first_done.wait(10)
    results[1] = plan(1)  # on this thread, between a's two calls
    gate.set()
    a.join(10)
    assert results == alone
    assert np.array_equal(np.random.get_state()[1], outside)


def test_a_budget_stops_only_its_own_prompt_on_a_shared_network():
    """The budget's check sits on the network all sessions share: an expired budget on one thread must not stop
    another thread's forward pass."""
    network = torch.nn.Conv3d(1, 1, 3)
    x = torch.zeros(1, 1, 4, 4, 4)
    entered, other_ran = threading.Event(), threading.Event()
    outcome: dict[str, BaseException | None] = {}

    def expired_prompt() -> None:
        with device_budget(network, 0.0):
            entered.set()
            assert other_ran.wait(10)
            try:
                network(x)
                outcome["own"] = None
            except PromptBudgetError as exc:
                outcome["own"] = exc

    thread = threading.Thread(target=expired_prompt)
    thread.start()
    assert entered.wait(10)
    network(x)  # another session's pass, while the expired budget's check is installed
    other_ran.set()
    thread.join(10)
    assert isinstance(outcome["own"], PromptBudgetError)


def test_two_device_threads_give_each_session_the_masks_of_one(tiny_model_dir, image64):
    """Two users prompt at once on a server with two device threads: both end with the masks a server with one
    device thread gives, and the second thread did run calls alongside the first."""
    script = [Point((20, 30, 30)), BBox(((30, 31), (20, 44), (20, 44))), Point((40, 30, 28), positive=False)]

    def masks(config_threads: int) -> tuple[list[np.ndarray], int]:
        with ThreadedServer(server_config(tiny_model_dir, device_threads=config_threads)) as server:
            worker, seen, watching = server.runtime.worker, [0], threading.Event()

            def watch() -> None:  # how many calls ran at once, at most
                while not watching.wait(0.001):
                    seen[0] = max(seen[0], len(worker._running))

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            out: dict[str, list[np.ndarray]] = {}

            def annotate(name: str, key: str) -> None:
                with SlicerServerBackend(server.url, key, timeout=CLIENT_TIMEOUT_S) as backend:
                    backend.set_image(image64)
                    out[name] = []
                    for prompt in script:
                        backend.prompt(prompt)
                        out[name].append(backend.get_mask().copy())

            with ThreadPoolExecutor(2) as pool:
                for done in [pool.submit(annotate, "alice", ALICE_KEY), pool.submit(annotate, "bob", BOB_KEY)]:
                    done.result(timeout=300)
            watching.set()
            watcher.join(10)
            return out["alice"] + out["bob"], seen[0]

    parallel, most_at_once = masks(2)
    serial, one = masks(1)
    assert one == 1 and most_at_once == 2
    assert len(parallel) == 2 * len(script)
    for got, expected in zip(parallel, serial, strict=True):
        assert np.array_equal(got, expected)


def test_every_device_thread_runs_torch_with_all_threads_alone_or_not(tiny_model_dir):
    """torch's results depend on its thread count in borderline voxels (835 of one scripted session at 1 thread
    against 2), so the count must not change with what else runs: a prompt alone and two prompts at once each run
    with all --torch-threads, as the local backend does, and a replayed session stays bit-identical."""
    with ThreadedServer(server_config(tiny_model_dir, torch_threads=2, device_threads=2)) as server:
        worker = server.runtime.worker
        alone = worker.submit(torch.get_num_threads, lane=("alice", "s1")).result(timeout=10)
        meet = threading.Barrier(2, timeout=10)

        def counted_together() -> int:
            meet.wait()
            return torch.get_num_threads()

        together = [worker.submit(counted_together, lane=("alice", s)) for s in ("s1", "s2")]
        assert alone == 2 and [f.result(timeout=10) for f in together] == [2, 2]


def test_device_threads_two_on_a_cpu_one_on_a_gpu():
    cpu, gpu = torch.device("cpu"), SimpleNamespace(type="cuda")
    assert device_threads(cpu, None, 2) == 2 and device_threads(cpu, None, 1) == 1 and device_threads(cpu, 3, 2) == 3
    assert device_threads(gpu, None, 8) == 1
    with pytest.raises(BackendUnavailableError, match="GPU runs one prediction at a time"):
        device_threads(gpu, 2, 8)
    with pytest.raises(SystemExit, match="--device-threads must be at least 1"):
        config_from_args(build_parser().parse_args(["--device-threads", "0"]))
