"""Installing what a backend lacks: torch first (PyTorch extension), a failure said in words, the rest left."""

from __future__ import annotations

import importlib.metadata

import slicer_scene  # noqa: F401 (puts the module folder on sys.path)
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from SlicerNNInteractiveLib.install import (
    CONSTRAINTS,
    INSTALLED,
    TORCH_REQUIREMENT,
    install,
    install_torch_through_pytorch_utils,
    pip_arguments,
)


def test_torch_goes_first_then_pip_packages():
    done: list[str] = []
    message = install(["nninteractive>=2.6,<3", "torch"], done.append, lambda: done.append("torch") or True)
    torch = importlib.metadata.version("torch")
    assert message == INSTALLED and done == ["torch", f'nninteractive>=2.6,<3 torch=={torch} -c "{CONSTRAINTS}"']


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


def test_the_torch_requirement_is_nninteractives_own():
    """What PyTorchUtils is asked for is what the pinned nnInteractive declares (Requires-Dist, no extra)."""
    pinned = {Requirement(line).name: Requirement(line) for line in CONSTRAINTS.read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert importlib.metadata.version("nninteractive") in pinned["nninteractive"].specifier
    declared = [Requirement(r) for r in importlib.metadata.requires("nninteractive") or []]
    (torch,) = [r for r in declared if r.name == "torch" and not r.marker]
    assert SpecifierSet(TORCH_REQUIREMENT) == torch.specifier
    assert "2.9.1" not in SpecifierSet(TORCH_REQUIREMENT)


def test_pip_holds_the_installed_torch_and_uses_the_modules_constraints():
    assert pip_arguments("nninteractive>=2.6,<3", "2.5.1+cu121") == (
        f'nninteractive>=2.6,<3 torch==2.5.1+cu121 -c "{CONSTRAINTS}"')
    pinned = {Requirement(line).name for line in CONSTRAINTS.read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert "nnunetv2" in pinned and not pinned & {"torch", "torchvision", "numpy"}  # Slicer's and torch's own
