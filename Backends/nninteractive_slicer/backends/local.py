"""The local backend: nnInteractive in this process, e.g. inside 3D Slicer's own Python, on the user's GPU.

Every torch call, model loading included, runs on one persistent device thread (see
:mod:`..engine.device_worker`). ``Backend.start`` runs calls off the GUI thread; their device work still
happens on the device thread.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..engine.device_worker import DeviceWorker
from ..engine.engine import ModelEngine
from ..engine.model_loading import LoadedModel, load_model
from ..engine.prints import route_nninteractive_prints
from ..engine.snapshots import SnapshotScheduler
from ..engine.undo_history import DEFAULT_BUDGET_BYTES, DEFAULT_MAX_STEPS
from ..interface import Backend, Capabilities, Prompt, PromptResult, UndoState
from .registry import BackendConfig, Requirement, register_backend

T = TypeVar("T")


@register_backend
class LocalBackend(Backend):
    """nnInteractive in the calling process.

    ``model_id`` is an official model id (downloaded on first use through
    ``nnInteractive.model_management``; None means the recommended one); ``model_dir`` is a
    model folder on disk and wins over ``model_id``. ``device`` is ``auto`` (CUDA, else CPU with
    a warning), ``cuda``, ``cuda:N`` or ``cpu``. Undo keeps up to ``undo_steps`` steps within
    ``undo_budget_bytes`` of compressed snapshots, the oldest going first.
    """

    kind = "local"
    label = "Local GPU (this computer)"
    requirements = (Requirement("torch", "torch"),
                    Requirement("nnInteractive.inference.inference_session", "nninteractive>=2.6,<3"))
    needs_url = False

    @classmethod
    def describe(cls, config: BackendConfig) -> str:
        return f"local nnInteractive, model {config.model or 'recommended'}, device {config.device}"

    def __init__(
        self,
        model_id: str | None = None,
        model_dir: str | os.PathLike | None = None,
        device: str = "auto",
        torch_threads: int | None = None,
        undo_steps: int = DEFAULT_MAX_STEPS,
        undo_budget_bytes: int = DEFAULT_BUDGET_BYTES,
    ) -> None:
        super().__init__()
        route_nninteractive_prints()  # its per-prompt prints become debug records, in every host
        self._worker = DeviceWorker()
        self._snapshots = SnapshotScheduler()  # each step's undo snapshot, once its result is shown
        try:
            self._model: LoadedModel = self._worker.call(load_model, model_id, model_dir, device, torch_threads,
                                                         self.kind)
            self._capabilities = replace(self._model.capabilities, undo_depth=undo_steps)
            self._engine = self._worker.call(ModelEngine, self._model, undo_budget_bytes, undo_steps, None,
                                             self._snapshots)
        except BaseException:
            self._snapshots.stop()
            self._worker.stop()
            raise

    @classmethod
    def from_config(cls, config: BackendConfig) -> LocalBackend:
        """``config.model`` is a model folder if one exists at that path, else an official model id."""
        model = config.model.strip()
        if model and Path(model).expanduser().is_dir():
            return cls(model_dir=model, device=config.device)
        return cls(model_id=model or None, device=config.device)

    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    def prompt_count(self) -> int:
        """Prompts in the current object; also the RNG seed of the next one."""
        return self._engine.prompt_count

    def _set_image(self, image: np.ndarray, spacing: tuple[float, float, float]) -> None:
        self._worker.call(self._engine.set_image, image, spacing)

    def _set_initial_mask(self, mask: np.ndarray) -> None:
        self._worker.call(self._engine.set_initial_mask, mask)

    def _prompt(self, prompt: Prompt) -> PromptResult:
        return self._worker.call(self._engine.prompt, prompt)

    def _undo(self, steps: int) -> PromptResult:
        return self._worker.call(self._engine.undo, steps)

    def _redo(self, steps: int) -> PromptResult:
        return self._worker.call(self._engine.redo, steps)

    def _undo_state(self) -> UndoState:
        def settled() -> UndoState:
            self._engine.settle()
            return self._engine.undo_state

        return self._worker.call(settled)

    def _reset(self) -> None:
        self._worker.call(self._engine.reset)

    def _get_mask(self) -> np.ndarray:
        return self._worker.call(self._engine.mask_copy)

    def _close(self) -> None:
        self._snapshots.stop()
        self._worker.call(self._engine.close)
        self._worker.stop()
