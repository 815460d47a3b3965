#!/usr/bin/env bash
# Set up .venv with the server and run it with the recommended official model (downloaded on first use).
# Where the weights cannot be downloaded, the server says so and names --model-dir.
# Extra arguments go to nninteractive-slicer-server, e.g. --model-dir DIR --device cpu --api-key-file FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh server
exec .venv/bin/nninteractive-slicer-server "$@"
