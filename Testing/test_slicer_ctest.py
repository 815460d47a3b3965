"""The extension's ctest on the factory: ``slicer.testing.runUnitTest`` loads the self-test with unittest's
loader, which calls every ``test*`` method with no argument (and never runTest). Every method it finds must
take none, and Reload and Test (runTest) must run the same tests."""

from __future__ import annotations

import inspect
import unittest

import slicer_scene  # noqa: F401 (puts the module folder on sys.path)
from slicer_host import load_like_rununittest


def test_the_factory_loader_finds_self_tests_it_can_call_without_arguments():
    suite = load_like_rununittest("SlicerNNInteractiveTesting.selftest")
    tests = [test for test in flatten(suite) if type(test).__name__ == "SlicerNNInteractiveTest"]
    names = sorted(test._testMethodName for test in tests)
    assert len(names) >= 2 and all(name.startswith("test") for name in names), names
    for test in tests:
        method = getattr(test, test._testMethodName)
        inspect.signature(method).bind()  # raises TypeError as the loader's call would
    test_class = type(tests[0])
    assert sorted(n for n in dir(test_class) if n.startswith("test_")) == names  # runTest runs the same ones


def flatten(suite: unittest.TestSuite) -> list[unittest.TestCase]:
    return [test for item in suite for test in (flatten(item) if isinstance(item, unittest.TestSuite) else [item])]
