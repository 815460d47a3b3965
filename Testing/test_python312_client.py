"""The torch-free client side runs on Python 3.12 (Slicer >= 5.10) without torch or nnInteractive."""

from __future__ import annotations

import numpy as np
from fixtures_python312 import run_python312
from fixtures_remote import ALICE_KEY
from synthetic import prompt_script

CLIENT_MODULES = ["interface", "errors", "backends.journal", "protocol.wire", "protocol.bodies", "protocol.contract",
                  "backends.slicer_server", "backends.official", "backends.official_errors"]
TORCH_FREE_TESTS = ["Testing/test_interface.py"]

CLIENT_RUN = """
import sys
import numpy as np
from synthetic import prompt_script
from nninteractive_slicer.backends.official import OfficialBackend
from nninteractive_slicer.backends.slicer_server import SlicerServerBackend

image_path, out_dir, remote_url, remote_key, official_url, official_key = sys.argv[1:]
image = np.load(image_path)
for name, backend in (("remote", SlicerServerBackend(remote_url, remote_key)),
                      ("official", OfficialBackend(official_url, official_key))):
    with backend:
        backend.set_image(image)
        for prompt in prompt_script(image.shape, seed=2, count=4):
            backend.prompt(prompt)
        np.save(f"{out_dir}/{name}.npy", backend.get_mask())
assert "torch" not in sys.modules
"""


def test_client_modules_import_without_torch(python312):
    code = (
        "import importlib, sys\n"
        f"for name in {CLIENT_MODULES!r}:\n"
        "    importlib.import_module('nninteractive_slicer.' + name)\n"
        "assert 'torch' not in sys.modules and 'nnInteractive' not in sys.modules\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('torch') is None\n"
        "print(sys.version_info[:2])\n"
    )
    result = run_python312(python312, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(3, 12)"


def test_torch_free_tests_pass_on_python312(python312):
    result = run_python312(python312, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--noconftest",
                           *TORCH_FREE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


def test_python312_clients_get_the_local_backends_masks(python312, remote_server, official_server,
                                                        local_backend_factory, image64, tmp_path):
    """Both server backends, driven from Slicer's Python without torch, give the local backend's mask."""
    np.save(tmp_path / "image.npy", image64)
    result = run_python312(python312, "-c", CLIENT_RUN, str(tmp_path / "image.npy"), str(tmp_path),
                           remote_server.url, ALICE_KEY, official_server.url, official_server.api_key)
    assert result.returncode == 0, result.stderr[-3000:]
    with local_backend_factory() as local:
        local.set_image(image64)
        for prompt in prompt_script(image64.shape, seed=2, count=4):
            local.prompt(prompt)
        expected = local.get_mask()
    assert expected.any()
    for name in ("remote", "official"):
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.npy"), expected, err_msg=name)
