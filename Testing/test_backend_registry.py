"""Backends register themselves in the package; the Slicer Lib's choices are look-ups in that registry."""

from __future__ import annotations

import slicer_scene  # noqa: F401 (puts the module folder on sys.path)
from slicer_scene import InstantBackend

from nninteractive_slicer.backends import registry
from nninteractive_slicer.backends.registry import BackendConfig, Requirement, backend_classes, register_backend
from SlicerNNInteractiveLib.backends import KINDS, build_backend, describe, missing_requirements


def test_the_lib_offers_the_registered_backends_in_order():
    assert list(KINDS) == ["local", "slicer_server", "official"]  # the values stored in the module's settings
    assert KINDS == {kind: cls.label for kind, cls in backend_classes().items()}
    assert all(cls.kind == kind and cls.label for kind, cls in backend_classes().items())


def test_a_registered_backend_is_built_and_its_requirements_checked(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))

    @register_backend
    class Probe(InstantBackend):
        kind = "probe"
        label = "Probe"
        requirements = (Requirement("numpy", "numpy"), Requirement("no_such_module_anywhere", "no-such-package>=1"))

        @classmethod
        def from_config(cls, config: BackendConfig) -> Probe:
            return cls(radius=int(config.timeout))

    assert missing_requirements("probe") == ["no-such-package>=1"]
    built = build_backend(BackendConfig("probe", timeout=3.0))
    assert type(built) is Probe and built.radius == 3
    assert "Probe at (no URL)" in describe(BackendConfig("probe"))
