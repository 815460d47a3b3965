#!/usr/bin/env bash
# Set up .venv and run the whole test suite (lint first). Extra arguments go to pytest.
# Then the web app's browser tests, in their own venv (.venv-web: trame-slicer pins slicer-core<5.12), against
# Debian's chromium (scripts/setup-web.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup-env.sh test
echo "test environment ready in $(( $(date +%s) - start )) s"
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
bash scripts/test-web.sh
