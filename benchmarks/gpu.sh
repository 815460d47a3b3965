#!/usr/bin/env bash
# The whole GPU check in one run, from a fresh checkout on a machine with a CUDA GPU (under 8 minutes on an
# H100/H200):
#   1. an environment on top of the machine's own CUDA torch (never replaced);
#   2. a ResEnc-L-sized model (random weights: timings are real, masks are not);
#   3. local vs this project's server vs the official server at M and L (benchmarks/run.py);
#   4. nnInteractive with and without torch.compile, and on a persistent thread vs a new thread per call
#      (benchmarks/gpu_checks.py).
# Results: benchmarks/results/gpu-<gpu name>.{json,md,png} and gpu-checks-<gpu name>.json.
#
#   bash benchmarks/gpu.sh                    # PyPI reachable
#   WHEELS=/path/to/wheels bash benchmarks/gpu.sh   # offline: pip installs from a wheelhouse only
# A wheelhouse for an offline machine is made on one with PyPI (same Python version and platform):
#   python3 -m pip download -d WHEELS ".[bench]"    (then drop torch and nvidia-* from it)
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
python=${PYTHON:-python3}
venv=.venv-gpu
repeats=${REPEATS:-5}

# 1. Environment. --system-site-packages keeps the machine's CUDA torch; the constraint pins it.
[ -x "$venv/bin/python" ] || "$python" -m venv --system-site-packages "$venv"
py="$venv/bin/python"
"$py" -c 'import torch; assert torch.cuda.is_available(), "no CUDA GPU visible to torch"'
pins=$(mktemp)
"$py" -c 'import torch; print(f"torch=={torch.__version__}")' >"$pins"
pipargs=(-q -c "$pins")
[ -n "${WHEELS:-}" ] && pipargs+=(--no-index --find-links "$WHEELS")
"$py" -m pip install "${pipargs[@]}" -e ".[bench]"
gpu=$("$py" -c 'import torch; print(torch.cuda.get_device_name(0).split()[-1].lower())')
echo "environment ready in $((SECONDS - started)) s on $gpu" >&2

# 2. A ResEnc-L-sized model.
model=.models/resenc-l
[ -f "$model/plans.json" ] || "$venv/bin/nninteractive-slicer-make-model" "$model" --size large

# 3. Local vs server vs official at M and L, on the GPU (no XL, no network shaping: they measure the client).
"$py" benchmarks/run.py --model-dir "$model" --device cuda --backends local server official --sizes M L \
    --repeats "$repeats" --sessions 1 4 8 --no-network --no-xl --out "gpu-$gpu"
echo "backends compared at $((SECONDS - started)) s" >&2

# 4. torch.compile and the persistent device thread.
"$py" benchmarks/gpu_checks.py --model-dir "$model" --device cuda --size L --prompts 10 \
    --out "benchmarks/results/gpu-checks-$gpu.json"
echo "done in $((SECONDS - started)) s" >&2
