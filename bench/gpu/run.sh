#!/usr/bin/env bash
# The GPU check: the real SGLang engine behind our SageMaker front, with the flags the container derives from
# the manifest and the settings, measured with and without speculative decoding. One H200, no Docker, no model
# hub, under 8 minutes; the JSON report lands in $OUT (default bench/results/gpu).
#
#   bench/gpu/run.sh                 # a GPU machine: installs SGLang at the manifest's version, then runs
#   WHEELHOUSE=/path bench/gpu/run.sh   # installs from a folder of wheels instead of PyPI
#   DRY_RUN=1 bench/gpu/run.sh       # CPU: the same steps with the CPU backend in place of SGLang (the tests)
#
# See bench/gpu/check.py for the steps and the report.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-bench/results/gpu}"
mkdir -p "$OUT"

if [[ -n "${DRY_RUN:-}" ]]; then
    exec "${PYTHON:-.venv/bin/python}" bench/gpu/check.py --dry-run --out "$OUT" --budget "${BUDGET:-300}"
fi

command -v nvidia-smi >/dev/null || { echo "run.sh: no NVIDIA GPU here (nvidia-smi missing); DRY_RUN=1 runs on CPU" >&2; exit 2; }
VERSION="$(python3 -c 'import json; print(json.load(open("containers/sglang/manifest.json"))["version"])')"
VENV="${VENV:-/tmp/sglang-gpu-venv}"
FRONT="$VENV/front"   # the front's packages apart from SGLang's, as in the image (SM_FRONT_PYTHONPATH)
FROM=()
[[ -n "${WHEELHOUSE:-}" ]] && FROM=(--no-index --find-links "$WHEELHOUSE")
if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip "${FROM[@]}"
fi
# SGLang with its CUDA dependencies (torch, sgl-kernel, flashinfer) at the image's version; peft builds the adapter.
"$VENV/bin/pip" install --quiet "${FROM[@]}" "sglang==$VERSION" peft pyyaml pydantic
"$VENV/bin/pip" install --quiet "${FROM[@]}" --target "$FRONT" -r containers/sglang/requirements.txt
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
PATH="$VENV/bin:$PATH" SM_FRONT_PYTHONPATH="$FRONT" exec "$VENV/bin/python" bench/gpu/check.py --out "$OUT" \
    --budget "${BUDGET:-420}"
