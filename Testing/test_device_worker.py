"""The device thread's order: users in turn, then each user's sessions in turn, order kept within a session, and a
bound per session (issue 24.1). No model: the calls only record themselves."""

from __future__ import annotations

import threading
import time

import pytest

from nninteractive_slicer.engine.device_worker import DeviceWorker
from nninteractive_slicer.errors import ServerBusyError


def run_in_order(submissions: list[tuple[str, str, str]]) -> list[str]:
    """Submit ``(user, session, name)`` calls while the thread is held, release it, and return the order they ran."""
    worker, ran, hold = DeviceWorker("test-device"), [], threading.Event()
    worker.submit(hold.wait)
    futures = [worker.submit(ran.append, name, lane=(user, session)) for user, session, name in submissions]
    hold.set()
    for future in futures:
        future.result(timeout=10)
    worker.stop()
    return ran


def test_users_take_turns_then_their_sessions():
    order = run_in_order([("alice", "s1", "a1-1"), ("alice", "s1", "a1-2"), ("alice", "s1", "a1-3"),
                          ("alice", "s2", "a2-1"), ("alice", "s2", "a2-2"), ("bob", "s3", "b-1")])
    assert order == ["a1-1", "b-1", "a2-1", "a1-2", "a2-2", "a1-3"]


def test_a_user_who_arrives_while_another_is_served_goes_next():
    worker, ran = DeviceWorker("test-device"), []
    running, hold = threading.Event(), threading.Event()

    def alice_first() -> None:
        running.set()
        hold.wait()
        ran.append("alice-1")

    worker.submit(alice_first, lane=("alice", "s1"))
    running.wait()
    later = [worker.submit(ran.append, "alice-2", lane=("alice", "s1")),
             worker.submit(ran.append, "bob-1", lane=("bob", "s2"))]  # after alice's second, but before it runs
    hold.set()
    for future in later:
        future.result(timeout=10)
    worker.stop()
    assert ran == ["alice-1", "bob-1", "alice-2"]


def test_a_session_queues_at_most_its_limit_and_stop_finishes_what_was_queued():
    worker, hold = DeviceWorker("test-device"), threading.Event()
    first = worker.submit(hold.wait, lane=("alice", "s1"), limit=2)
    second = worker.submit(lambda: "second", lane=("alice", "s1"), limit=2)
    with pytest.raises(ServerBusyError, match="wait for their results"):
        worker.submit(lambda: "third", lane=("alice", "s1"), limit=2)
    other = worker.submit(lambda: "other session", lane=("alice", "s2"), limit=2)  # its own bound
    assert worker.lane_length(("alice", "s1")) == 2
    worker.stop()
    hold.set()
    assert first.result(timeout=10) and second.result(timeout=10) == "second"
    assert other.result(timeout=10) == "other session"
    assert worker.queue_length == 0 and worker.lane_length(("alice", "s1")) == 0


def test_two_threads_run_two_sessions_at_once_never_one_session_twice():
    """A CPU server's second device thread: calls of two lanes overlap (both meet at a barrier, which one thread
    never reaches), calls of one lane never do, and each thread runs ``on_start`` first."""
    started: list[str] = []
    worker = DeviceWorker("test-device", threads=2, on_start=lambda: started.append(threading.current_thread().name))
    meet = threading.Barrier(2, timeout=10)
    both = [worker.submit(meet.wait, lane=("alice", session)) for session in ("s1", "s2")]
    for future in both:
        future.result(timeout=10)
    assert sorted(started) == ["test-device", "test-device-1"]

    inside, overlaps, lock = [0], [], threading.Lock()

    def one_call() -> None:
        with lock:
            inside[0] += 1
            overlaps.append(inside[0])
        time.sleep(0.02)
        with lock:
            inside[0] -= 1

    calls = [worker.submit(one_call, lane=("alice", "s1")) for _ in range(6)]
    for future in calls:
        future.result(timeout=10)
    worker.stop()
    assert overlaps == [1] * 6


def test_one_thread_runs_one_call_at_a_time():
    worker = DeviceWorker("test-device")
    meet = threading.Barrier(2, timeout=0.5)
    first = worker.submit(meet.wait, lane=("alice", "s1"))
    second = worker.submit(meet.wait, lane=("bob", "s2"))
    with pytest.raises(threading.BrokenBarrierError):
        first.result(timeout=10)
    with pytest.raises(threading.BrokenBarrierError):
        second.result(timeout=10)
    worker.stop()
