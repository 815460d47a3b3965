#!/usr/bin/env bash
# Create (or update) a venv with the project and the extras named in $1 (default: test).
# torch goes in first, pinned, so nothing later can swap it for a CUDA build.
# The web extras (web, web-test) get their own venv, .venv-web: trame-slicer pins slicer-core<5.12.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-test}
python=${PYTHON:-python3}
case "$extras" in web|web-test) venv=.venv-web ;; *) venv=.venv ;; esac
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -c scripts/constraints.txt torch
"$venv/bin/python" -m pip install -q -c scripts/constraints.txt -e ".[$extras]"
