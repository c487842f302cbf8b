#!/usr/bin/env bash
# One-run device check: first / prefetched / same-frame latency per stage, fp32 vs autocast
# fp16/bf16, Swin-L vs Swin-T, peak GPU memory, on real-size random-weight models; then host
# syncs per command (none may fall inside the IGRS loop) and the fp16 vs fp32 agreement of the
# heat map, ITM score and answer on the trained world model.
#
#   scripts/gpu_check.sh                      # on the GPU (CUDA); extra args go to `iterprime bench`
#   scripts/gpu_check.sh --device cpu         # dry run on the CPU with tiny models (CI runs this)
#   scripts/gpu_check.sh --device cpu --full  # the real-size report on the CPU (minutes)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
device=cuda; full=0; rest=()
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --device=*) device="${1#*=}"; shift ;;
    --full) full=1; shift ;;
    *) rest+=("$1"); shift ;;
  esac
done
args=(bench --report --device "$device")
syncs=(--device "$device")
precision=(--device "$device" -n 100)
if [ "$device" = "cpu" ] && [ "$full" = 0 ]; then
  echo "[gpu_check] dry run on the CPU with tiny models (--full for the real-size report)" >&2
  args+=(--arch tiny --proposal-arch swin-tiny-test --smaller-arch swin-tiny-test --size 160x120 --threads 1)
  syncs+=(--arch tiny --proposal-arch swin-tiny-test --size 160x120)
  precision=(--device "$device" -n 5)
else
  args+=(--frames 3 --commands 8)
fi
if [ "$device" != "cpu" ]; then
  "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
    || { echo "[gpu_check] CUDA is not available here; try --device cpu for the dry run" >&2; exit 2; }
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
fi
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
status=0
"$PY" -m iterprime_ros "${args[@]}" ${rest[@]+"${rest[@]}"} || status=$?
echo "[gpu_check] host syncs per command (CUDA's sync warnings on a GPU; would-be syncs on a CPU)"
"$PY" -m iterprime_ros.tools.bench.syncs "${syncs[@]}" || status=$?
echo "[gpu_check] fp16 vs fp32 agreement (emulated fp16 on a CPU)"
"$PY" -m iterprime_ros.tools.bench.precision "${precision[@]}" || status=$?
exit "$status"
