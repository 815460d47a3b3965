"""Find, load and describe an nnInteractive model once, so many sessions can share it.

Imports torch and nnInteractive: only the local backend and the server use this module.
Call :func:`load_model` on the device thread (see :mod:`.device_worker`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailableError
from ..interface import PROMPT_KINDS, Capabilities
from .undo_history import DEFAULT_MAX_STEPS

log = logging.getLogger(__name__)

NO_WEIGHTS_HINT = (
    "Pass a model folder instead (--model-dir / model_dir=...): a folder holding plans.json, dataset.json, "
    "inference_info.json and fold_0/checkpoint_final.pth, e.g. one copied from a machine with internet access, "
    "or a synthetic test model made with `nninteractive-slicer-make-model DIR`."
)

# nnInteractive's interaction names for our prompt kinds.
_INTERACTION_OF_KIND = {"point": "points", "bbox": "bbox2d", "scribble": "scribble", "lasso": "lasso"}


@dataclass
class LoadedModel:
    """A model in memory: nnInteractive's artifacts (network on the device) plus what we report about it."""

    artifacts: dict[str, Any]
    model_id: str
    folder: Path
    device: Any  # torch.device
    torch_threads: int
    capabilities: Capabilities


def choose_device(requested: str = "auto") -> Any:
    """``auto`` is CUDA when available, else the CPU with a warning. ``cuda``/``cuda:N``/``cpu`` are taken as given."""
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        warnings.warn("No CUDA GPU found: nnInteractive runs on the CPU, which takes seconds to minutes per prompt.",
                      stacklevel=2)
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise BackendUnavailableError(f"Unknown device {requested!r}: use auto, cuda, cuda:N or cpu.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("CUDA was requested but no CUDA GPU is usable here: choose cpu or auto.")
    if device.type not in ("cuda", "cpu"):
        raise BackendUnavailableError(f"Device type {device.type!r} is not supported: use cuda or cpu.")
    return device


def torch_thread_count(requested: int | None) -> int:
    """torch's CPU threads: all cores unless told otherwise."""
    return requested or os.cpu_count() or 1


def device_threads(device: Any, requested: int | None, torch_threads: int) -> int:
    """Threads of a server's device worker (:mod:`.device_worker`). One on a GPU, which runs one prediction at a
    time anyway and keeps cuDNN's caches per thread. On a CPU ``requested``; by default two where there are at
    least two torch threads (each device thread runs torch with all of them: :func:`start_torch_threads`)."""
    if getattr(device, "type", str(device)) == "cuda":
        if requested not in (None, 1):
            raise BackendUnavailableError(f"{requested} device threads need the CPU: a GPU runs one prediction at "
                                          "a time, so use 1 (the default) there.")
        return 1
    if requested is None:
        return 2 if torch_threads >= 2 else 1
    return requested  # fewer than one: DeviceWorker refuses it


def start_torch_threads(count: int) -> None:
    """``on_start`` of a device thread: torch runs with ``count`` threads on it, always. torch splits reductions by
    its thread count, so a prompt's mask depends, in borderline voxels, on that count (835 voxels of one scripted
    session at 1 thread against 2): a count that changed with what else runs would make results depend on timing,
    and a replayed session would no longer be bit-identical. OpenMP keeps a thread team per thread: it starts now,
    at its full size, so the server's threads stay as many as at start."""
    import torch

    torch.set_num_threads(count)
    torch.ones(1 << 20).sum()  # large enough to run in parallel


def cuda_devices() -> list[str]:
    """``cuda:N`` for every CUDA device torch sees; empty without torch or a GPU (the UI offers these)."""
    try:
        import torch
    except ImportError:
        return []
    return [f"cuda:{index}" for index in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def resolve_model_folder(model_id: str | None = None, model_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Return (folder, model id): a given folder as is, else the official model (downloaded on first use)."""
    if model_dir is not None:
        folder = Path(model_dir).expanduser()
        if not (folder / "plans.json").is_file():
            raise BackendUnavailableError(
                f"{folder} is not an nnInteractive model folder (no plans.json in it). {NO_WEIGHTS_HINT}"
            )
        return folder, model_id or folder.name
    from nnInteractive import model_management

    try:
        if model_id is None:
            model_id = model_management.get_default_model_id()
        return Path(model_management.ensure_model_available(model_id)), model_id
    except (RuntimeError, OSError) as exc:
        raise BackendUnavailableError(
            f"The nnInteractive model {model_id or '(default)'} is not on this machine and could not be downloaded "
            f"({exc}). {NO_WEIGHTS_HINT}"
        ) from exc
    except ValueError as exc:  # unknown model id
        raise BackendUnavailableError(str(exc)) from exc


def new_inference_session(device: Any, torch_threads: int) -> Any:
    """A bare nnInteractive session (no model yet) configured the same way everywhere."""
    from nnInteractive.inference.inference_session import nnInteractiveInferenceSession

    from .prompt_rng import route_planner_draws

    route_planner_draws()
    return nnInteractiveInferenceSession(
        device=device,
        use_torch_compile=False,
        verbose=False,
        torch_n_threads=torch_threads,
        do_autozoom=True,
        interactions_storage="tensor",
        enable_undo=True,
    )


def checkpoint_digest(folder: Path) -> str | None:
    """SHA-256 of the model's weights file, which segment histories record (None if there is no single one)."""
    checkpoints = sorted(Path(folder).glob("fold_*/checkpoint_final.pth"))
    if len(checkpoints) != 1:
        return None
    digest = hashlib.sha256()
    with checkpoints[0].open("rb") as weights:
        for chunk in iter(lambda: weights.read(1 << 22), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def load_model(
    model_id: str | None = None,
    model_dir: str | os.PathLike | None = None,
    device: str = "auto",
    torch_threads: int | None = None,
    backend_name: str = "",
) -> LoadedModel:
    """Load the network once; sessions attach to it with :meth:`Engine`'s ``model``."""
    torch_device = choose_device(device)
    folder, model_id = resolve_model_folder(model_id, model_dir)
    threads = torch_thread_count(torch_threads)
    session = new_inference_session(torch_device, threads)
    try:
        artifacts = session._load_model_artifacts_from_disk(str(folder), None)  # the loader the official server uses
    except Exception as exc:
        raise BackendUnavailableError(f"Could not load the model in {folder}: {exc}") from exc
    session.initialize_from_loaded_artifacts(artifacts)
    # On CUDA, one dummy forward pass pays cuDNN's autotuning and the allocator's growth now, on this (the
    # device) thread, whose per-thread cuDNN cache every later prediction reuses. A no-op on the CPU.
    session.warmup()
    supported = session.supported_interactions
    capabilities = Capabilities(
        backend=backend_name,
        model_id=model_id,
        license=session.license or "unknown",
        device=str(torch_device),
        prompt_kinds=tuple(k for k in PROMPT_KINDS if supported.get(_INTERACTION_OF_KIND[k], False)),
        supports_3d_bbox=bool(supported.get("bbox3d", False)),
        supports_initial_mask=bool(session.supports_initial_label),
        scribble_thickness=tuple(int(t) for t in session.preferred_scribble_thickness),  # type: ignore[arg-type]
        undo_depth=DEFAULT_MAX_STEPS,
        supports_redo=True,
        extra={"checkpoint_digest": checkpoint_digest(folder)},
    )
    log.info("Loaded model %s from %s on %s", model_id, folder, torch_device)
    return LoadedModel(artifacts, model_id, folder, torch_device, threads, capabilities)
