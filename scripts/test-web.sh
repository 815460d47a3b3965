#!/usr/bin/env bash
# The web app's browser tests (Testing/test_web_*.py) in .venv-web, with headless chromium. The main suite's
# conftest needs the [test] extra, which this venv does not have, so it is not loaded here (--noconftest).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup-web.sh
echo "web test environment ready in $(( $(date +%s) - start )) s"
VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow .venv-web/bin/python -m pytest --noconftest -q -p no:cacheprovider \
  Testing/test_web_*.py "$@"
