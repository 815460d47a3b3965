"""Server sessions lost while Slicer idles, with the module's idle timer and with the timer stopped (as before).

    PYTHONPATH=Backends .venv/bin/python benchmarks/slicer_idle.py

For each server kind, a real server runs with a short liveness timeout; one prompt goes through the Logic under
the emulated Slicer (Testing/slicer_host.py), then Slicer idles for 3 (ours) or 4 (official: it sweeps every
15 s) liveness timeouts. A session the server reaped meanwhile is a loss (the next prompt would replay the whole
object). Results: benchmarks/results/slicer_idle.md.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "Testing"))

from server_processes import official_server, our_server  # noqa: E402
from test_slicer_idle import KEY, prompt_then_idle  # noqa: E402

from nninteractive_slicer.backends.official import OfficialBackend  # noqa: E402
from nninteractive_slicer.backends.slicer_server import SlicerServerBackend  # noqa: E402
from nninteractive_slicer.devtools.synthetic_model import write_model  # noqa: E402
from SlicerNNInteractiveLib.logic import SlicerNNInteractiveLogic  # noqa: E402


class StoppedWhenIdle(SlicerNNInteractiveLogic):
    """The timer as before: stopped whenever nothing is queued or running."""

    @property
    def timer_ms(self) -> int | None:
        return super().timer_ms if self.busy else None


def run(kind: str, model_dir: Path, logic_class: type) -> tuple[float, int]:
    liveness, times = (3.0, 3) if kind == "remote" else (5.0, 4)
    if kind == "remote":
        server = our_server(model_dir, "idle", KEY, "--liveness-timeout", str(liveness))
        make, lost = (lambda: SlicerServerBackend(server.url, KEY, timeout=120)), "session closed"
    else:
        server = official_server(model_dir, KEY, "--liveness-timeout-seconds", str(liveness))
        make, lost = (lambda: OfficialBackend(server.url, KEY, device="cpu", timeout=120)), "reaped"
    with server:
        backend = make()
        try:
            prompt_then_idle(backend, times * liveness, logic_class)
            return times * liveness / liveness, server.log_text().count(lost)
        finally:
            backend.close()


def main() -> int:
    model_dir = write_model(Path(tempfile.mkdtemp()) / "tiny", "tiny", seed=0)
    lines = ["# Server sessions lost over an emulated Slicer idle (one session per run)", "",
             "| server | idle (liveness timeouts) | lost, module's idle timer | lost, timer stopped (before) |",
             "|---|---|---|---|"]
    for kind in ("remote", "official"):
        idle, kept = run(kind, model_dir, SlicerNNInteractiveLogic)
        _, stopped = run(kind, model_dir, StoppedWhenIdle)
        lines.append(f"| {kind} | {idle:.0f} | {kept} | {stopped} |")
        print(lines[-1], flush=True)
    (HERE / "results" / "slicer_idle.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
