"""Installing what a backend lacks: torch first (PyTorch extension), a failure said in words, the rest left."""

from __future__ import annotations

import slicer_scene  # noqa: F401 (puts the module folder on sys.path)

from SlicerNNInteractiveLib.install import INSTALLED, install, install_torch_through_pytorch_utils


def test_torch_goes_first_then_pip_packages():
    done: list[str] = []
    message = install(["nninteractive>=2.6,<3", "torch"], done.append, lambda: done.append("torch") or True)
    assert message == INSTALLED and done == ["torch", "nninteractive>=2.6,<3"]


def test_a_failed_step_is_said_and_nothing_after_it_runs():
    done: list[str] = []

    def pip_install(requirement: str) -> None:
        raise OSError("no network")

    message = install(["torch", "a", "b"], pip_install, lambda: done.append("torch") or True)
    assert done == ["torch"] and "Installing a failed: no network" in message
    assert "'PyTorch' extension" in install(["torch", "a"], done.append, lambda: False)
    assert done == ["torch"]  # pip was not reached


def test_without_slicers_pytorch_extension_torch_is_not_installed():
    assert install_torch_through_pytorch_utils() is False
