#!/bin/bash
# The quality benchmark over seeds and training lengths, as one short script for a GPU lease.
#
#   bench/gpu_seeds.sh DATA OUT
#
# DATA as for bench/gpu_session.sh (DATA/sh3d/, DATA/sample/, DATA/sample_ground_truth.json; captured on the
# CPU machine). Runs bench/quality_seeds.py twice, at the same time (a cpu-small run leaves the GPU mostly idle):
#   - Sweet Home 3D: cpu-small at 300, 3000 (what `asset2vec index` trains) and 9000 steps, and 9000 steps on
#     the captures' 64 px, 3 seeds each -> OUT/seeds_sh3d.{json,md} (+ per-run JSONs in OUT/seeds_sh3d/);
#   - the sample library: 3000 steps, 3 seeds, with the instant encoder scored out of fold and the
#     disentanglement probes -> OUT/seeds_sample.{json,md}.
# Every finished run is written at once, so a lease that ends early keeps what finished
# (`bench/quality_seeds.py ... --from-jobs` summarises them). Dry run on a CPU: DEVICE=cpu STEPS_SCALE=0.01.
set -u -o pipefail
DATA=${1:?DATA folder}
OUT=${2:?OUT folder}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
S=${STEPS_SCALE:-1}
LIMIT=${LIMIT:-450}  # seconds for everything; the runs that finished by then are kept
ENC=${ENCODER_MINUTES:-0.25}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
st() { "$PY" -c "print(max(1, int($1 * $S)))"; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  "$PY" -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available())"
} | tee "$OUT/gpu.txt"
echo "== start $(date -u +%H:%M:%S)"
timeout "$LIMIT" "$PY" bench/quality_seeds.py "$DATA/sh3d" --label "Sweet Home 3D" --device "$DEVICE" --jobs 8 \
  --setting "300:steps=$(st 300)" --setting "3000:steps=$(st 3000)" --setting "9000:steps=$(st 9000)" \
  --setting "9000@64px:steps=$(st 9000),image_size=64" --seeds 0 1 2 --work "$OUT/.runs_sh3d" \
  --out "$OUT/seeds_sh3d.json" > "$OUT/seeds_sh3d.log" 2>&1 &
A=$!
timeout "$LIMIT" "$PY" bench/quality_seeds.py "$DATA/sample" --label "sample library" --device "$DEVICE" --jobs 3 \
  --ground-truth "$DATA/sample_ground_truth.json" --setting "3000:steps=$(st 3000)" --seeds 0 1 2 \
  --encoder-minutes "$ENC" --psnr-assets 4 --work "$OUT/.runs_sample" \
  --out "$OUT/seeds_sample.json" > "$OUT/seeds_sample.log" 2>&1 &
B=$!
wait $A; echo "sh3d rc $?"; wait $B; echo "sample rc $?"
rm -rf "$OUT/.runs_sh3d" "$OUT/.runs_sample"  # checkpoints stay on the device
grep -h "^\[" "$OUT"/seeds_*.log
echo "== done $(date -u +%H:%M:%S)"
