#!/bin/bash
# The benchmarks a session runs when it is lent a GPU, as one short script (the lease is minutes).
#
#   bench/gpu_session.sh DATA OUT
#
# DATA holds captured bundles (capture needs Blender, so they are made on the CPU machine first):
#   DATA/sample/                     the sample library's bundles (64 px)
#   DATA/sample_ground_truth.json    its ground truth
#   DATA/sh3d/                       the Sweet Home 3D default catalogue's bundles (64 px)
# Writes into OUT: gpu.txt, nerf_gpu_small.json (cpu-small preset on the GPU: the speed `asset2vec
# index` trains at), nerf_gpu_full.json (the full decoder at the captures' 64 px: speed, held-out
# and inversion PSNR, probes), nerf_gpu_sh3d.json + quality_gpu.{json,md} (the full decoder trained
# on the artist-made catalogue, scored by bench/quality.py against the pixel/silhouette/size baselines).
# Preparing on the CPU machine (both folders listed in .git/info/exclude and named in the device call's carry):
#   .gpudata/  the bundles above (`asset2vec capture` output);
#   .p3d/      pytorch3d's Python files from the cp312 easypytorch3d wheel, its compiled _C replaced by a
#              module holding the constants pulsar reads at import (EPS, MAX_UINT): the wheel is larger
#              than a device transfer and Asset2Vec uses only pytorch3d's pure-PyTorch parts.
#   Then: PYTHONPATH=$PWD/.p3d bench/gpu_session.sh .gpudata $OUT   (python3 there already has torch).
# MINUTES scales every training budget (default 1); for dry runs on CPU: DEVICE=cpu, EXTRA_SET adds `--set`
# overrides, SLACK adds seconds to every time limit, SKIP_SMALL=1 skips step 1.
set -u -o pipefail
DATA=${1:?DATA folder}
OUT=${2:?OUT folder}
PY=${PYTHON:-python3}
M=${MINUTES:-1}
DEVICE=${DEVICE:-cuda}
EXTRA=()
for kv in ${EXTRA_SET:-}; do EXTRA+=(--set "$kv"); done
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
WORK=$(mktemp -d)
mins() { "$PY" -c "print(round($1 * $M, 3))"; }
limit() { "$PY" -c "print(int($1 + ${SLACK:-0} + 120 * $2 * $M))"; }  # seconds: setup + twice the training budget

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  "$PY" -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available())"
} | tee "$OUT/gpu.txt"

step() { echo "== $* ($(date -u +%H:%M:%S))"; }

[ -n "${SKIP_SMALL:-}" ] || { step "1. cpu-small on the GPU (index's training speed)"
timeout "$(limit 60 0.75)" \
  "$PY" -m bench.nerf "$DATA/sample" --ground-truth "$DATA/sample_ground_truth.json" --preset cpu-small \
  --minutes "$(mins 0.75)" --unseen 6 --device "$DEVICE" --threads 4 "${EXTRA[@]}" --out "$OUT/nerf_gpu_small.json"; }

step "2. full decoder at 64 px on the sample library"
timeout "$(limit 90 1.5)" \
  "$PY" -m bench.nerf "$DATA/sample" --ground-truth "$DATA/sample_ground_truth.json" --preset full \
  --set image_size=64 "${EXTRA[@]}" --minutes "$(mins 1.5)" --unseen 6 --device "$DEVICE" --threads 4 \
  --out "$OUT/nerf_gpu_full.json"

step "3. full decoder at 64 px on the Sweet Home 3D catalogue (all assets, kept for the quality benchmark)"
timeout "$(limit 60 2.5)" \
  "$PY" -m bench.nerf "$DATA/sh3d" --preset full --set image_size=64 "${EXTRA[@]}" --minutes "$(mins 2.5)" \
  --unseen 0 --device "$DEVICE" --threads 4 --keep "$WORK/sh3d" --out "$OUT/nerf_gpu_sh3d.json"

step "4. quality of those codes against the baselines"
timeout 240 "$PY" -m bench.quality --run "$WORK/sh3d/run-hull" --bundles "$DATA/sh3d" --ground-truth none \
  --label "Sweet Home 3D, full decoder on GPU" --encoder-minutes 0 --threads 4 \
  --out "$OUT/quality_gpu.json" --markdown "$OUT/quality_gpu.md"
step "done"
rm -rf "$WORK"
