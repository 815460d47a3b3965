#!/usr/bin/env bash
# Set up .venv-web and start the web app (nninteractive-slicer web) on http://127.0.0.1:8080/.
# Without --backend or --model it runs the tiny "rule" model on the CPU (no download: it marks the prompted and
# bright voxels, enough to try every tool); pass --model FOLDER, or --backend URL for a GPU server.
# Extra arguments go to `nninteractive-slicer web` (--help), e.g. an image: bash scripts/web.sh scan.nii.gz
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh web
args=("$@")
if [[ " $* " != *" --model"* && " $* " != *" --backend"* ]]; then
  [ -f .models/tiny-rule/plans.json ] || .venv-web/bin/nninteractive-slicer-make-model .models/tiny-rule --variant rule
  args+=(--model .models/tiny-rule --device cpu)
fi
export VTK_DEFAULT_OPENGL_WINDOW=${VTK_DEFAULT_OPENGL_WINDOW:-vtkEGLRenderWindow}
exec .venv-web/bin/nninteractive-slicer web "${args[@]}"
