"""NVDEC training-clip throughput on one GPU (``data.decoder: nvdec``; goal >= 1000 clips/s).

Decodes training clips (8 frames, stride 8 by default) from the videos in ``--videos`` with
a2video's NVDEC reader (PyNvVideoCodec ``SimpleDecoder``, one per thread, reused across files),
for 1..N decoding threads (a GPU has several NVDEC engines) and for one clip per decode (K=1)
and repeated augmentation (K=4 clips per decode). ``--train-crop`` adds the training
transform on the GPU (random short side in [256, 320], random 224 crop, flip, float). Reports
clips/s per configuration as JSON.

Runs with python3 + torch + PyNvVideoCodec only (no PyAV, decord, numpy or jsonargparse):
  python3 benchmarks/bench_nvdec.py --videos .gpuwork/videos --json /tmp/nvdec.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from a2video.data import sampling  # noqa: E402  (numpy-free at import)
from a2video.data.video import NvdecDecoder, VideoDecodeError  # noqa: E402

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov")


class _Rng:
    """The ``integers(low, high)`` of a numpy Generator, from :mod:`random` (no numpy here)."""

    def __init__(self, seed: int) -> None:
        self._r = random.Random(seed)

    def integers(self, low: int, high: int) -> int:
        return self._r.randrange(low, high)

    def random(self) -> float:
        return self._r.random()


def train_crop(frames: torch.Tensor, rng: _Rng, scale=(256, 320), size: int = 224) -> torch.Tensor:
    """uint8 (T, H, W, 3) on the GPU -> float (3, T, size, size): the training augmentation."""
    h, w = frames.shape[1:3]
    short = rng.integers(scale[0], scale[1] + 1)
    f = short / min(h, w)
    nh, nw = max(size, round(h * f)), max(size, round(w * f))
    top, left = rng.integers(0, nh - size + 1), rng.integers(0, nw - size + 1)
    y0, x0 = int(top / f), int(left / f)
    y1, x1 = min(h, int((top + size) / f) + 1), min(w, int((left + size) / f) + 1)
    x = frames[:, y0:y1, x0:x1].permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    if rng.random() < 0.5:
        x = x.flip(-1)
    return x.permute(1, 0, 2, 3)


def decode_clips(decoder: NvdecDecoder, path: str, repeat: int, rng: _Rng, args) -> int:
    """One decode of ``path`` -> ``repeat`` training clips (on the GPU); returns the clip count."""
    reader = decoder.open(path)
    try:
        clips = sampling.repeated_train_clips(
            reader.num_frames, args.frames, args.stride, repeat, rng
        )
        flat = sorted({i for c in clips for i in c})
        frames = reader.get_frames(flat)
    finally:
        reader.close()
    pos = {v: k for k, v in enumerate(flat)}
    for clip in clips:
        x = frames[[pos[i] for i in clip]]
        if args.train_crop:
            x = train_crop(x, rng)
    if frames.is_cuda:
        torch.cuda.current_stream().synchronize()
    return len(clips)


def run_config(videos: list[str], threads: int, repeat: int, args) -> dict:
    """``threads`` threads, each with its own decoder, decoding clips for ``args.seconds``."""
    lock = threading.Lock()
    state = {"next": 0, "clips": 0, "failed": 0, "start": 0.0}
    ready = threading.Barrier(threads + 1)
    go = threading.Event()

    def worker(tid: int) -> None:
        torch.cuda.set_device(0)
        decoder = NvdecDecoder()
        for k in range(2):  # warm-up: the session and the first files
            decode_clips(decoder, videos[(tid + k) % len(videos)], repeat, _Rng(-tid - 1), args)
        ready.wait()
        go.wait()
        while time.perf_counter() < state["start"] + args.seconds:
            with lock:
                job = state["next"]
                state["next"] += 1
            try:
                n = decode_clips(decoder, videos[job % len(videos)], repeat, _Rng(job), args)
            except VideoDecodeError:
                with lock:
                    state["failed"] += 1
                continue
            with lock:
                state["clips"] += n

    pool = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads)]
    for t in pool:
        t.start()
    ready.wait()
    state["start"] = time.perf_counter()
    go.set()
    for t in pool:
        t.join()
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - state["start"]
    return {
        "threads": threads,
        "repeat": repeat,
        "train_crop": args.train_crop,
        "clips": state["clips"],
        "decodes": state["next"],
        "failed": state["failed"],
        "seconds": round(elapsed, 2),
        "clips_per_s": round(state["clips"] / elapsed, 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", default=str(ROOT / ".gpuwork" / "videos"))
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seconds", type=float, default=6.0, help="per configuration")
    parser.add_argument("--train-crop", action="store_true", help="add the GPU augmentation")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_nvdec: no CUDA device; nothing to measure", file=sys.stderr)
        return 2
    videos = sorted(
        str(p) for p in Path(args.videos).rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS
    )
    if not videos:
        print(f"bench_nvdec: no videos under {args.videos}", file=sys.stderr)
        return 2
    import PyNvVideoCodec as nvc

    info = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "pynvvideocodec": getattr(nvc, "__version__", "?"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "videos": len(videos),
        "video_bytes": sum(os.path.getsize(v) for v in videos),
        "clip": f"{args.frames} frames, stride {args.stride}",
        "command": " ".join([sys.executable, *sys.argv]),
    }
    print(json.dumps(info), flush=True)
    results = []
    for repeat in args.repeats:
        for threads in args.threads:
            r = run_config(videos, threads, repeat, args)
            results.append(r)
            print(json.dumps(r), flush=True)
    best = max(results, key=lambda r: r["clips_per_s"])
    print(f"best: {best['clips_per_s']} clips/s ({best['threads']} threads, K={best['repeat']})")
    if args.json:
        Path(args.json).write_text(json.dumps({**info, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
