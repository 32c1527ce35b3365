#!/usr/bin/env bash
# Every GPU measurement and GPU test of issues #11 and #12 in one call on a lent GPU machine
# (one H100/H200, its own python3 + torch; about 7 minutes). Results go to $OUT (default
# runs/gpu_checks): gpu_tests.txt, bench_gpu/bench_gpu.{md,json}, nvdec_*.json, log.txt.
#
#   OUT=/tmp/g bash benchmarks/gpu_checks.sh
#
# Optional inputs, all git-ignored (see docs/data.md, "NVDEC and CPU workers together"):
#   .whl/pynvvideocodec-*.whl       NVDEC (PyNvVideoCodec); without it the NVDEC part is skipped
#   .gpuwork/site/                  decord2 + numpy unpacked for python3.12 (mixed-loader bench)
#   .gpuwork/videos/{web,prepared}  download-like videos and their `a2video prepare` copy
# Budgets (seconds): GPU_BENCH_S (bench_gpu, default 240), NVDEC_S per configuration (default 4).
#
# On a lent machine (64 MiB per call: the tree ~3.5 MB + pynvvideocodec 27 MB + videos 18 MB fit):
#   call 1 (optional, ~30 s, only for the mixed-loader rows): carry the decord2 and numpy cp312
#     wheels and unpack them into .gpuwork/site (docs/data.md, "NVDEC and CPU workers together");
#     a warm machine keeps that ignored folder for the next call;
#   call 2: carry .whl (pynvvideocodec only) and .gpuwork/videos, run this script, timeout 540.
set -u -o pipefail
PY=${PYTHON:-python3}  # the GPU host's own python3 (PYTHON=.venv/bin/python for a CPU dry run)
OUT=${OUT:-runs/gpu_checks}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1
SITE=.gpuwork/site
mkdir -p "$SITE"
if ls .whl/pynvvideocodec-*.whl >/dev/null 2>&1 && ! "$PY" -c "import PyNvVideoCodec" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
    .whl/pynvvideocodec-*.whl || echo "gpu_checks: PyNvVideoCodec did not install"
fi
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"

echo "== GPU tests"
"$PY" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.txt"

echo "== bench_gpu"
# GPU_BENCH_ARGS: extra arguments (a CPU dry run: "--arch-scale tiny --device cpu --steps 1")
"$PY" benchmarks/bench_gpu.py --out "$OUT/bench_gpu" --budget-s "${GPU_BENCH_S:-240}" ${GPU_BENCH_ARGS:-}

if "$PY" -c "import PyNvVideoCodec" 2>/dev/null; then
  S=${NVDEC_S:-4}
  for v in web prepared; do
    [ -d ".gpuwork/videos/$v" ] || continue
    echo "== NVDEC alone, $v"
    "$PY" benchmarks/bench_nvdec.py --videos ".gpuwork/videos/$v" --threads 4 8 --repeats 1 4 \
      --seconds "$S" --json "$OUT/nvdec_$v.json"
    if "$PY" -c "import decord, numpy" 2>/dev/null; then
      echo "== NVDEC + 12 CPU workers, $v"
      "$PY" benchmarks/bench_nvdec.py --videos ".gpuwork/videos/$v" --cpu-workers 12 --threads 4 \
        --repeats 4 --seconds "$((2 * S))" --gpu-rate 490 --json "$OUT/mixed_$v.json"
    else
      echo "gpu_checks: no decord2/numpy in $SITE: the mixed-loader bench is skipped"
    fi
  done
else
  echo "gpu_checks: no PyNvVideoCodec: the NVDEC benches are skipped"
fi
echo "gpu_checks: done"
