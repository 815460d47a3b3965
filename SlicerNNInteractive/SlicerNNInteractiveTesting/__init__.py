"""The module's self-test, run inside Slicer (Reload and Test, or ctest)."""
