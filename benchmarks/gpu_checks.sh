#!/usr/bin/env bash
# The GPU measurements and GPU tests of issues #11 and #12 still pending, in one call on a lent
# GPU machine (one H100/H200, its own python3 + torch; about 7 minutes: bench_gpu's blocks 170 s
# (+60 s hard stop), the batch hand-over 40 s, the mixed loader about 2 minutes, the GPU tests
# 1 minute). LIGHTNING=1 adds the Trainer.fit-vs-raw pair first (met on 2026-11-27: 1.02, about
# 150 s more); STAGES=1 the NVDEC stage table (about 90 s).
# Results go to $OUT (default runs/gpu_checks): log.txt, bench_gpu/bench_gpu.{md,json},
# handover.json, mixed_prepared.json (or nvdec_*.json without decord2), gpu_tests.txt.
#
#   OUT=/tmp/g bash benchmarks/gpu_checks.sh
#
# What it measures, in this order (a call cut short keeps what came before):
#   - (LIGHTNING=1) Trainer.fit compiled at batch 32, then the raw loop in a fresh process
#     (Lightning / raw); Trainer.fit eager with uint8 clips and its raw loop;
#   - the A²-block (plain; as it was before its rows split: _SplitByChannels; with its
#     projections as GEMMs on the rows: _ProjectionsAsGemms, a candidate) and non-local compiled
#     at res2, res3, res4, res5 (the stages short of #12's goal first), with a kernel profile
#     of the A²-block and its top kernels' launching ops;
#   - what a train batch costs the training process on its way from the workers: the
#     pin-memory copy against the page-locked batch ring (bench_handover.py --device cuda);
#   - (STAGES=1) where an NVDEC training sample's time goes (decode, transforms, sync, collate);
#   - the mixed NVDEC + CPU loader on the prepared copy (NVDEC_SETS="prepared web" adds the
#     download-like set), feeding a stand-in step with the batch ring on and off;
#   - the `gpu` tests.
#
# Optional inputs, all git-ignored:
#   .gpuwork/site.tar.xz            decord2 + PyNvVideoCodec for python3.12, pruned and packed
#                                   (22 MB): `bash benchmarks/gpu_site.sh` makes it here
#   .whl/pynvvideocodec-*.whl       or the NVDEC wheel alone (then no mixed-loader rows)
#   .gpuwork/videos/{web,prepared}  download-like videos and their `a2video prepare` copy
#                                   (docs/data.md, "NVDEC and CPU workers together")
#   .gpuwork/videos/prepared_fs4    the same prepared with --frame-step 4 (its
#                                   a2video_prepared.json beside the videos): measured last
# Without PyNvVideoCodec the NVDEC part is skipped; without decord2 only NVDEC alone is measured.
# Budgets (seconds): GPU_BENCH_S (bench_gpu, default 170), NVDEC_S per configuration (default 3).
# GPU_BENCH_ARGS: extra bench_gpu arguments (e.g. --sections, or a CPU dry run below).
#
# On a lent machine (64 MiB per call: tree 3.5 MB + site.tar.xz 22 MB + videos 23 MB), one call:
#   carry [".gpuwork/videos", ".gpuwork/site.tar.xz"], timeout 600,
#   command: OUT=$OUT bash benchmarks/gpu_checks.sh
# CPU dry run: PYTHON=.venv/bin/python GPU_BENCH_ARGS="--arch-scale tiny --device cpu --steps 1"
set -u -o pipefail
PY=${PYTHON:-python3}  # the GPU host's own python3 (PYTHON=.venv/bin/python for a CPU dry run)
OUT=${OUT:-runs/gpu_checks}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1
SITE=.gpuwork/site
mkdir -p "$SITE"
if [ -f .gpuwork/site.tar.xz ]; then  # both packages, pruned and xz-packed (see docs/data.md)
  tar -xJf .gpuwork/site.tar.xz -C "$SITE" || echo "gpu_checks: .gpuwork/site.tar.xz did not unpack"
fi
if ls .whl/pynvvideocodec-*.whl >/dev/null 2>&1 && ! "$PY" -c "import PyNvVideoCodec" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
    .whl/pynvvideocodec-*.whl || echo "gpu_checks: PyNvVideoCodec did not install"
fi
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"

echo "== bench_gpu"
# GPU_BENCH_ARGS: extra arguments (a CPU dry run: "--arch-scale tiny --device cpu --steps 1")
B=${GPU_BENCH_S:-170}  # soft: a compile that starts in budget finishes; the hard stop is 60 s on
SECTIONS=info,blocks_compiled
if [ "${LIGHTNING:-0}" = 1 ]; then  # batch 32: #12's 20 % goal holds "at batch >= 16"
  SECTIONS=info,lightning_compiled,lightning,blocks_compiled
  B=$((B + 150))
fi
timeout "$((B + 60))" "$PY" benchmarks/bench_gpu.py --out "$OUT/bench_gpu" --budget-s "$B" \
  --sections "$SECTIONS" --lightning-batch 32 \
  --compiled-batches 32 --batches 32 --block-stages res2,res3,res4,res5 \
  --block-kinds plain,split-by-channels,gemm-projections,non-local \
  --block-compile-estimate-s 25 ${GPU_BENCH_ARGS:-}

echo "== batch hand-over: pin-memory copy vs page-locked ring"
HANDOVER_DEVICE=cuda
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || HANDOVER_DEVICE=cpu
timeout 90 "$PY" benchmarks/bench_handover.py --device "$HANDOVER_DEVICE" --workers 4 \
  --rounds 5 --fill-s 2 --json "$OUT/handover.json"

if "$PY" -c "import PyNvVideoCodec" 2>/dev/null; then
  S=${NVDEC_S:-3}
  if [ "${STAGES:-0}" = 1 ] && [ -d .gpuwork/videos/prepared ]; then  # an NVDEC sample's stages
    echo "== NVDEC stages, prepared"
    timeout 90 "$PY" benchmarks/bench_nvdec.py --stages --videos .gpuwork/videos/prepared \
      --repeats 4 --samples 48 --seconds 6 --json "$OUT/nvdec_stages.json"
  fi
  for v in ${NVDEC_SETS:-prepared}; do
    [ -d ".gpuwork/videos/$v" ] || continue
    if "$PY" -c "import decord, numpy" 2>/dev/null; then  # its rows include NVDEC alone
      # CPU alone, NVDEC alone, both (the workers writing into the batch ring); then CPU alone
      # and both feeding a stand-in step at the compiled a2net_r50 rate (794 clips/s, batch 32,
      # one H200) one step behind (a loop without per-step host syncs, as a2video's), with
      # the batch ring and with the pin-memory copy
      echo "== NVDEC + 12 CPU workers, $v"
      timeout 200 "$PY" benchmarks/bench_nvdec.py --videos ".gpuwork/videos/$v" --cpu-workers 12 \
        --threads 4 --repeats 4 --seconds "$((2 * S))" --gpu-rate 794 --stand-in-ahead 1 \
        --rings on off --json "$OUT/mixed_$v.json"
    else
      echo "gpu_checks: no decord2/numpy in $SITE: NVDEC alone, $v"
      timeout 120 "$PY" benchmarks/bench_nvdec.py --videos ".gpuwork/videos/$v" --threads 4 8 \
        --repeats 1 4 --seconds "$S" --json "$OUT/nvdec_$v.json"
    fi
  done
else
  echo "gpu_checks: no PyNvVideoCodec: the NVDEC benches are skipped"
fi
echo "== GPU tests"
timeout 150 "$PY" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider 2>&1 \
  | tee "$OUT/gpu_tests.txt"
# last, if time is left: the mixed loader on a `prepare --frame-step 4` copy (1.22-1.32x the
# CPU clips/s per core of step 1 on the 2-core machine; what does it give on 12 workers?)
if [ -d .gpuwork/videos/prepared_fs4 ] && "$PY" -c "import PyNvVideoCodec, decord, numpy" 2>/dev/null; then
  echo "== NVDEC + 12 CPU workers, prepared_fs4"
  timeout 100 "$PY" benchmarks/bench_nvdec.py --videos .gpuwork/videos/prepared_fs4 \
    --cpu-workers 12 --threads 4 --repeats 4 --seconds "$((2 * ${NVDEC_S:-3}))" --gpu-rate 794 \
    --json "$OUT/mixed_prepared_fs4.json"
fi
echo "gpu_checks: done"
