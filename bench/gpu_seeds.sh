#!/bin/bash
# The quality benchmark over seeds, training lengths and model ablations, as short scripts for a GPU lease.
#
#   PART=lengths|early|ablation bench/gpu_seeds.sh DATA OUT
#
# DATA as for bench/gpu_session.sh (DATA/sh3d/, DATA/sample/, DATA/sample_ground_truth.json; captured on the
# CPU machine). Each part runs bench/quality_seeds.py twice at the same time, once per library (a cpu-small run
# leaves the GPU mostly idle), every setting with seeds 0-2 (`cpu-small`; the learning rate decays over each
# run's own steps):
#   lengths  (default) Sweet Home 3D at 300, 3000, 9000 steps and 9000 steps at 64 px; the sample library at
#            3000 steps with the instant encoder scored out of fold  -> OUT/seeds_{sh3d,sample}.{json,md}
#   early    Sweet Home 3D at 100, 300, 600, 1000, 1500 steps; the sample library at 300 and 1000 steps, with
#            the encoder                                             -> OUT/early_{sh3d,sample}.{json,md}
#   ablation 1500 steps: colour without the view direction, code halves 16 + 48 and 48 + 16, on both
#            libraries (sample library: seeds 0-1, plus the 1500-step reference) -> OUT/ablation_*.{json,md}
# Every finished run is written at once, so a lease that ends early keeps what finished
# (`python -m bench.quality_seeds ... --from-jobs` summarises them). Dry run on a CPU: DEVICE=cpu STEPS_SCALE=0.01.
set -u -o pipefail
DATA=${1:?DATA folder}
OUT=${2:?OUT folder}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
S=${STEPS_SCALE:-1}
LIMIT=${LIMIT:-450}  # seconds for everything; the runs that finished by then are kept
ENC=${ENCODER_MINUTES:-0.25}
PART=${PART:-lengths}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
st() { "$PY" -c "print(max(1, int($1 * $S)))"; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  "$PY" -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available())"
} | tee "$OUT/gpu.txt"
seeds() {  # NAME LIBRARY JOBS [quality_seeds.py options...]
  local name=$1 lib=$2 jobs=$3; shift 3
  local gt=(); [ "$lib" = sample ] && gt=(--ground-truth "$DATA/sample_ground_truth.json")
  local label="Sweet Home 3D"; [ "$lib" = sample ] && label="sample library"
  timeout "$LIMIT" "$PY" -m bench.quality_seeds "$DATA/$lib" --label "$label" --device "$DEVICE" --jobs "$jobs" \
    "${gt[@]}" --work "$OUT/.runs_$name" --out "$OUT/$name.json" "$@" > "$OUT/$name.log" 2>&1
  echo "$name rc $?"; rm -rf "$OUT/.runs_$name" "$OUT/$name"  # checkpoints and per-run copies stay on the device
}
L=$(st 1500)
echo "== $PART start $(date -u +%H:%M:%S)"
case $PART in
  lengths)
    seeds seeds_sh3d sh3d 8 --setting "300:steps=$(st 300)" --setting "3000:steps=$(st 3000)" \
      --setting "9000:steps=$(st 9000)" --setting "9000@64px:steps=$(st 9000),image_size=64" --seeds 0 1 2 &
    seeds seeds_sample sample 3 --setting "3000:steps=$(st 3000)" --seeds 0 1 2 --encoder-minutes "$ENC" \
      --psnr-assets 4 & ;;
  early)
    seeds early_sh3d sh3d 8 --setting "100:steps=$(st 100)" --setting "300:steps=$(st 300)" \
      --setting "600:steps=$(st 600)" --setting "1000:steps=$(st 1000)" --setting "1500:steps=$L" --seeds 0 1 2 &
    seeds early_sample sample 6 --setting "300:steps=$(st 300)" --setting "1000:steps=$(st 1000)" --seeds 0 1 2 \
      --encoder-minutes "$ENC" --psnr-assets 4 & ;;
  ablation)
    ab=(--setting "no view direction:steps=$L,model.view_dependent=false"
        --setting "halves 16+48:steps=$L,model.shape_dim=16,model.texture_dim=48"
        --setting "halves 48+16:steps=$L,model.shape_dim=48,model.texture_dim=16")
    seeds ablation_sh3d sh3d 8 "${ab[@]}" --seeds 0 1 2 &
    seeds ablation_sample sample 8 --setting "1500:steps=$L" "${ab[@]}" --seeds 0 1 & ;;
  *) echo "unknown PART $PART (lengths, early or ablation)"; exit 2 ;;
esac
wait
grep -h "^\[[^]]*seed [0-9]*\] [0-9]" "$OUT"/*.log
echo "== done $(date -u +%H:%M:%S)"
