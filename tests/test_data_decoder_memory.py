"""What a process that decodes with decord (each DataLoader worker) holds: the decoder, not the
CUDA libraries decord2's import loaded for nothing (every library of the ``nvidia`` pip packages
torch depends on: cuDNN, cuBLAS, NCCL, ...; ~250 MB private, ~420 MB RSS per worker), and the
frames decord decoded into, not copies of them."""

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
PEAK = """
import sys
from a2video.data.video import get_decoder

def status_mb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024

reader = get_decoder("decord").open(sys.argv[1])
reader.get_frames([0])  # the decoder's buffers in place
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak RSS (VmHWM) starts again from here
before = status_mb("VmRSS")
frames = reader.get_frames([0, 1, 2])
assert "Decord" in type(reader).__name__
print((status_mb("VmHWM") - before) / (frames.numel() / 2**20))
"""
DECORD_ON_LINUX = pytest.mark.skipif(
    not (DECORD_DECLARED and sys.platform == "linux"), reason="decord2 on Linux (/proc)"
)


def _run(script: str, path: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", script, path], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


@DECORD_ON_LINUX
def test_decoding_with_decord_loads_no_cuda_library(tmp_path):
    path, _ = user_videos.make("mkv", tmp_path)
    assert _run(PROBE, path) == "[]"


@DECORD_ON_LINUX
def test_decord_frames_cost_about_their_own_size_at_the_peak(tmp_path):
    """Three 4K frames (75 MB) add about their size to the peak RSS (1.0-1.35x), not also the
    copy ``asnumpy()`` made of them through a buffer of its own (2.34x)."""
    path, _ = user_videos.make("4k", tmp_path)
    assert float(_run(PEAK, path)) < 1.7
