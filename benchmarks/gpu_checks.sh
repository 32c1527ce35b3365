#!/usr/bin/env bash
# The GPU figures of issues #11 and #12 still pending, in one call on a lent GPU machine: one
# H100/H200 whose own python3 has torch (2.11 there), Lightning, torchmetrics, numpy and, as
# last seen, torchvision and pytest, but no decord, PyAV or jsonargparse, and no network.
# How to run it, what to carry and where the results go: docs/performance.md, "The GPU call".
#
#   OUT=$OUT bash benchmarks/gpu_checks.sh        # run's timeout_s 600
#
# Sections in order of importance; each writes its file under $OUT when it ends (bench_gpu and
# bench_nvdec after every table or row), and log.txt grows as the call runs, so a call cut short
# keeps every section that ended. The script starts no section after TOTAL_S (default 480 s,
# 8 minutes) and stops each one at its cap or at TOTAL_S, whichever comes first.
#   expected s (H200) / cap s   section                                       file under $OUT
#     15 /   -  set-up: unpack .gpuwork/site.tar.xz, the GPU, torch           log.txt
#    200 / 260  bench_gpu (GPU_BENCH_S=200 soft, +60 s hard stop):             bench_gpu/bench_gpu.{md,json}
#               Trainer.fit compiled at batch 32 (uint8 clips), then the raw loop in a fresh
#               process (Lightning / raw, #12); the A²-block compiled (plain; before its rows
#               split: _SplitByChannels; projections as GEMMs: _ProjectionsAsGemms) and
#               non-local at res2, res3 (short of #12's goal), then res4, res5 while its budget
#               lasts, with kernel profiles
#     40 /  60  batch hand-over: pin-memory copy vs page-locked ring, real      handover.json
#               pinning and DMA (bench_handover.py --device cuda)
#    100 / 150  NVDEC + 12 CPU workers on .gpuwork/videos/prepared, alone,      mixed_prepared.json
#               together, then feeding a 794 clips/s stand-in step with the
#               batch ring on and off (#11; NVDEC_SETS="prepared web" adds a
#               set, nvdec_<set>.json instead without decord2)
#     40 /  90  the `gpu` tests                                                 gpu_tests.txt
#   then only while TOTAL_S lasts:
#     90 /  90  STAGES=1: where an NVDEC sample's time goes                    nvdec_stages.json
#     60 / 100  the mixed loader on .gpuwork/videos/prepared_fs4               mixed_prepared_fs4.json
# Expected in all about 400 s (6.6 min); the last H200 call of this script took 419 s
# (2026-11-27, another mix of sections). A lent machine brings back at most 8 files from $OUT;
# the defaults write 7.
#
# Optional inputs (git-ignored, carried; docs/performance.md says how to make them):
#   .gpuwork/site.tar.xz            decord2 + PyNvVideoCodec for python3.12, pruned (22 MB):
#                                   `bash benchmarks/gpu_site.sh`
#   .whl/pynvvideocodec-*.whl       or the NVDEC wheel alone (then no mixed-loader rows)
#   .whl/{pytest,pluggy,iniconfig,pygments,packaging}-*.whl   only for a host without pytest
#   .gpuwork/videos/{prepared,web,prepared_fs4}   videos for the NVDEC rows
# Without PyNvVideoCodec (or torchvision, which the library's transforms resize with) the NVDEC
# part is skipped; without decord2 only NVDEC alone is measured.
# Settings: TOTAL_S (480), GPU_BENCH_S (200), GPU_BENCH_SECTIONS (info,lightning_compiled,
# blocks_compiled; add ",lightning" for the eager pair), GPU_BENCH_ARGS (more bench_gpu
# arguments, last), HANDOVER_ARGS (likewise), NVDEC_S (3 s per configuration), NVDEC_SETS
# (prepared), STAGES (0), GPU_SITE (.gpuwork/site: where carried packages are unpacked).
# CPU dry run on a venv like the GPU host's (docs/performance.md), about 2 minutes:
#   PYTHON=/tmp/gpuvenv/bin/python OUT=/tmp/gpudry GPU_BENCH_S=40 \
#     GPU_BENCH_ARGS="--arch-scale tiny --device cpu --steps 1 --compile-estimate-s 5" \
#     bash benchmarks/gpu_checks.sh
set -u -o pipefail
PY=${PYTHON:-python3}  # the GPU host's own python3
OUT=${OUT:-runs/gpu_checks}
TOTAL=${TOTAL_S:-480}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1

# slot CAP MIN: prints the seconds a section may run (CAP, or what is left of TOTAL_S);
# fails when that is under MIN (the section is then skipped)
slot() {
  local left=$((TOTAL - SECONDS)) cap=$1
  [ "$left" -lt "$cap" ] && cap=$left
  [ "$cap" -ge "$2" ] && echo "$cap"
}
# section NAME CAP: the header line of a section that may run CAP seconds
section() { echo; echo "== $1 (at ${SECONDS} s of ${TOTAL} s; cap $2 s)"; }
# ended NAME RC CAP: one line per section for RESULTS.md: how long it took, how it ended
ended() {
  local how="exit $2"
  [ "$2" = 124 ] || [ "$2" = 137 ] && how="stopped at its cap of $3 s"
  echo "gpu_checks: $1 ended at ${SECONDS} s ($how)"
}
found() { "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('$1') is None)"; }

SITE=${GPU_SITE:-.gpuwork/site}  # where carried packages are unpacked
mkdir -p "$SITE"
# what this host's python3 lacks, carried (git-ignored), and the working tree (a2video, the
# tests' helpers; the benches also put it on sys.path themselves)
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -f .gpuwork/site.tar.xz ]; then  # both packages, pruned and xz-packed (gpu_site.sh)
  tar -xJf .gpuwork/site.tar.xz -C "$SITE" || echo "gpu_checks: .gpuwork/site.tar.xz did not unpack"
fi
if ls .whl/pynvvideocodec-*.whl >/dev/null 2>&1 && ! found PyNvVideoCodec; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
    .whl/pynvvideocodec-*.whl || echo "gpu_checks: PyNvVideoCodec did not install"
fi
# pytest for the gpu tests where the host's python3 lacks it: the pure-Python wheels of pytest
# and of what it needs and the host lacks, carried in .whl/ (zip files: no pip needed)
if ! found pytest; then
  for pkg in pytest pluggy iniconfig pygments packaging; do
    found "$pkg" && continue
    for wheel in .whl/"$pkg"-*-py3-none-any.whl; do
      [ -f "$wheel" ] && "$PY" -m zipfile -e "$wheel" "$SITE"
    done
  done
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader
# one import of each package the sections use (an import, not a lookup: a torchvision built
# for another torch is found but fails to import); prints the versions, and the missing ones
MISSING=$("$PY" - <<'PYEOF'
import importlib
import sys

import torch

gpu = torch.cuda.is_available() and torch.cuda.get_device_name()
print("torch", torch.__version__, gpu, "python", sys.version.split()[0], file=sys.stderr)
for name in ("lightning", "torchmetrics", "numpy", "torchvision", "pytest", "PyNvVideoCodec",
             "decord"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"), file=sys.stderr)
    except Exception as err:
        print(f"gpu_checks: no {name} on this host ({type(err).__name__}: {err})", file=sys.stderr)
        print(name)
PYEOF
)
has() { ! grep -qx "$1" <<<"$MISSING"; }

B=${GPU_BENCH_S:-200}  # soft: a compile that starts in budget finishes; hard stop 60 s later
if cap=$(slot $((B + 60)) 90); then
  section bench_gpu "$cap"
  timeout "$cap" "$PY" benchmarks/bench_gpu.py --out "$OUT/bench_gpu" --budget-s $((cap - 60)) \
    --sections "${GPU_BENCH_SECTIONS:-info,lightning_compiled,blocks_compiled}" \
    --lightning-batch 32 --compiled-batches 32 --batches 32 \
    --block-stages res2,res3,res4,res5 \
    --block-kinds plain,split-by-channels,gemm-projections,non-local \
    --block-compile-estimate-s 25 ${GPU_BENCH_ARGS:-}
  ended bench_gpu $? "$cap"
fi

if cap=$(slot 60 30); then
  section "batch hand-over: pin-memory copy vs page-locked ring" "$cap"
  HANDOVER_DEVICE=cuda
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || HANDOVER_DEVICE=cpu
  timeout "$cap" "$PY" benchmarks/bench_handover.py --device "$HANDOVER_DEVICE" --workers 4 \
    --rounds 5 --fill-s 2 --json "$OUT/handover.json" ${HANDOVER_ARGS:-}
  ended handover $? "$cap"
fi

S=${NVDEC_S:-3}
NVDEC=0
if has PyNvVideoCodec && has torchvision; then
  NVDEC=1
else
  echo "gpu_checks: no PyNvVideoCodec or torchvision: the NVDEC benches are skipped"
fi
MIXED=0
[ "$NVDEC" = 1 ] && has decord && has numpy && MIXED=1
if [ "$NVDEC" = 1 ]; then
  for v in ${NVDEC_SETS:-prepared}; do
    [ -d ".gpuwork/videos/$v" ] || { echo "gpu_checks: no .gpuwork/videos/$v"; continue; }
    if [ "$MIXED" = 1 ]; then
      # CPU alone, NVDEC alone, both (the workers writing into the batch ring); then CPU alone
      # and both feeding a stand-in step at the compiled a2net_r50 rate (794 clips/s, batch 32,
      # one H200) one step behind (a loop without per-step host syncs, as a2video's), with the
      # batch ring and with the pin-memory copy
      cap=$(slot 150 60) || { echo "gpu_checks: no time left for the mixed loader, $v"; break; }
      section "NVDEC + 12 CPU workers, $v" "$cap"
      timeout "$cap" "$PY" benchmarks/bench_nvdec.py --videos ".gpuwork/videos/$v" \
        --cpu-workers 12 --threads 4 --repeats 4 --seconds "$((2 * S))" --gpu-rate 794 \
        --stand-in-ahead 1 --rings on off --json "$OUT/mixed_$v.json"
    else
      cap=$(slot 120 40) || { echo "gpu_checks: no time left for NVDEC alone, $v"; break; }
      section "NVDEC alone (no decord2/numpy in $SITE), $v" "$cap"
      timeout "$cap" "$PY" benchmarks/bench_nvdec.py --videos ".gpuwork/videos/$v" --threads 4 8 \
        --repeats 1 4 --seconds "$S" --json "$OUT/nvdec_$v.json"
    fi
    ended "NVDEC $v" $? "$cap"
  done
fi

if cap=$(slot 90 30); then
  section "GPU tests" "$cap"
  if has pytest; then
    timeout "$cap" "$PY" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider 2>&1 \
      | tee "$OUT/gpu_tests.txt"
    ended "GPU tests" $? "$cap"
  else
    echo "gpu_checks: no pytest on this host: the GPU tests did not run (carry the wheels of" \
      "pytest, pluggy, iniconfig, pygments, packaging in .whl: docs/performance.md)" \
      | tee "$OUT/gpu_tests.txt"
  fi
fi

# extras, while TOTAL_S lasts
if [ "$NVDEC" = 1 ] && [ "${STAGES:-0}" = 1 ] && [ -d .gpuwork/videos/prepared ] \
  && cap=$(slot 90 60); then
  section "NVDEC stages, prepared" "$cap"
  timeout "$cap" "$PY" benchmarks/bench_nvdec.py --stages --videos .gpuwork/videos/prepared \
    --repeats 4 --samples 48 --seconds 6 --json "$OUT/nvdec_stages.json"
  ended "NVDEC stages" $? "$cap"
fi
# the mixed loader on a `prepare --frame-step 4` copy (1.26x the CPU workers' clips/s of the
# prepared copy on an H200 host); each row is in its JSON as it ends
if [ "$MIXED" = 1 ] && [ -d .gpuwork/videos/prepared_fs4 ] && cap=$(slot 100 60); then
  section "NVDEC + 12 CPU workers, prepared_fs4" "$cap"
  timeout "$cap" "$PY" benchmarks/bench_nvdec.py --videos .gpuwork/videos/prepared_fs4 \
    --cpu-workers 12 --threads 4 --repeats 4 --seconds "$((2 * S))" --gpu-rate 794 \
    --stand-in-ahead 1 --json "$OUT/mixed_prepared_fs4.json"
  ended "NVDEC prepared_fs4" $? "$cap"
fi

echo
files=$(find "$OUT" -type f | wc -l)
echo "gpu_checks: done at ${SECONDS} s of ${TOTAL} s; $files files under $OUT:"
find "$OUT" -type f | sort
if [ "$files" -gt 8 ]; then
  echo "gpu_checks: WARNING: a lent machine brings back at most 8 files from \$OUT"
fi
