#!/usr/bin/env bash
# Packs decord2 and PyNvVideoCodec for an offline GPU host's python3.12 into one 22 MB file,
# .gpuwork/site.tar.xz, that benchmarks/gpu_checks.sh unpacks there (the two wheels are 53 MB;
# a lent machine takes 64 MiB per call with the tree and the videos). It drops what the benches
# never load (PyNvVideoCodec's ffmpeg sources, samples and benchmarks) and links PyNvVideoCodec's
# three identical copies of each ffmpeg library to one. Run here, where pip reaches PyPI:
#
#   bash benchmarks/gpu_site.sh          # then carry .gpuwork/site.tar.xz (git-ignored)
set -euo pipefail
PY=${PYTHON:-python3}
DEST=${1:-.gpuwork/site.tar.xz}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 -d "$WORK/wheels" decord2==3.4.0 pynvvideocodec==2.2.4
mkdir -p "$WORK/site"
for wheel in "$WORK"/wheels/*.whl; do "$PY" -m zipfile -e "$wheel" "$WORK/site"; done
rm -rf "$WORK"/site/pynvvideocodec-*.data "$WORK/site/samples" "$WORK/site/benchmarks"
(
  cd "$WORK/site/PyNvVideoCodec"
  for lib in libavformat libavutil; do
    full=$(ls $lib.so.*.*.* | head -1)
    for copy in $lib.so $lib.so.*; do [ "$copy" = "$full" ] || ln -sf "$full" "$copy"; done
  done
)
mkdir -p "$(dirname "$DEST")"
tar -cJf "$DEST" -C "$WORK/site" .
echo "wrote $DEST ($(du -h "$DEST" | cut -f1))"
