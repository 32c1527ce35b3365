"""What a process that decodes with decord (each DataLoader worker) holds: the decoder, not the
CUDA libraries decord2's import loaded for nothing (every library of the ``nvidia`` pip packages
torch depends on: cuDNN, cuBLAS, NCCL, ...; ~250 MB private, ~420 MB RSS per worker)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import user_videos
from decoders import DECORD_DECLARED

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import sys
import torch
from a2video.data.video import get_decoder

def cuda_libraries():
    return {line.split()[-1] for line in open("/proc/self/maps") if "/nvidia/" in line}

before = cuda_libraries()
reader = get_decoder("decord").open(sys.argv[1])
assert reader.get_frames([0, 5]).shape[0] == 2 and "Decord" in type(reader).__name__
reader.close()
print(sorted(cuda_libraries() - before))
"""


@pytest.mark.skipif(
    not (DECORD_DECLARED and sys.platform == "linux"), reason="decord2 on Linux (/proc/self/maps)"
)
def test_decoding_with_decord_loads_no_cuda_library(tmp_path):
    path, _ = user_videos.make("mkv", tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", PROBE, path], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
