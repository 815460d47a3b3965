"""The torch-free client side runs on Python 3.12 (Slicer >= 5.10) without torch or nnInteractive."""

from __future__ import annotations

from fixtures_python312 import run_python312

CLIENT_MODULES = ["interface", "errors", "journal"]
TORCH_FREE_TESTS = ["Testing/test_interface.py"]


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
