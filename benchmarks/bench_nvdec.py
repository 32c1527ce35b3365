"""NVDEC training-clip throughput on one GPU (``data.decoder: nvdec``; goal >= 1000 clips/s).

Decodes training clips (8 frames, stride 8 by default) from the videos in ``--videos`` with
a2video's NVDEC reader (PyNvVideoCodec ``SimpleDecoder``, one per thread, reused across files),
for 1..N decoding threads (a GPU has several NVDEC engines) and for one clip per decode (K=1)
and repeated augmentation (K=4 clips per decode). ``--train-crop`` adds the training
transform on the GPU (random short side in [256, 320], random 224 crop, flip, float). Reports
clips/s per configuration as JSON.

Runs with python3 + torch + PyNvVideoCodec only (no PyAV, decord, numpy or jsonargparse):
  python3 benchmarks/bench_nvdec.py --videos .gpuwork/videos --json /tmp/nvdec.json

``--cpu-workers N`` measures the mixed train loader (``data.decoder: nvdec`` with
``data.num_workers: N``): a2video's ``MixedLoader`` fed by N CPU DataLoader workers (decord, else
PyAV: these need decord2 + numpy or PyAV on the host) and NVDEC threads (the first ``--threads``
value), batches of ``--batch-size`` clips moved to the GPU as Lightning does. For each
``--repeats`` K it runs CPU only, NVDEC only, then both at once with ``--share`` (default: the
share the two single-source rates suggest, ``nvdec / (nvdec + cpu)``, the ``data.nvdec_share``
to use), and with ``--gpu-rate R`` the CPU workers alone and that mix again, each feeding a
stand-in training step (bf16 matmuls) of R clips/s. The samples are the DataModules' own
(``VideoClipDataset``: K clips per decode with the scale/crop/flip augmentation, uint8; NVDEC
frames augmented on the GPU by the same transforms), so the rows are the ``data.decoder: nvdec``
training loader's. An offline GPU host needs the decord2 and numpy wheels carried (docs/data.md,
"NVDEC and CPU workers together", says how):
  python3 benchmarks/bench_nvdec.py --videos .gpuwork/videos/web --cpu-workers 12 --threads 4 \
      --repeats 4 --seconds 10 --gpu-rate 490
"""

from __future__ import annotations

import argparse
import functools
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
from a2video.data.mixed import KeyBatches, MixedLoader  # noqa: E402  (numpy-free too)
from a2video.data.video import (  # noqa: E402
    NvdecDecoder,
    VideoDecodeError,
    select_frames,
)

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
    """uint8 (T, H, W, 3) -> float (3, T, size, size): the training augmentation (``--train-crop``
    of the NVDEC-alone rows; the mixed rows run the DataModules' own transforms)."""
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
        x = select_frames(frames, [pos[i] for i in clip])
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


# ------------------------------------------------------------------------------ --cpu-workers
def training_dataset(videos: list[str], decoder: str, repeat: int, args):
    """The DataModules' own training dataset over ``videos`` (a2video's ``VideoClipDataset``:
    sampling, ``repeat`` clips per decode, scale/crop/flip, uint8, bad-video replacement), with
    ``decoder`` "nvdec" decoding and augmenting on the GPU (in the mixed loader's threads) and
    any other on the CPU (in its workers). Imported here: it needs numpy and torchvision, which
    the NVDEC-alone rows do without."""
    from a2video.data.annotations import VideoRecord
    from a2video.data.datasets import ClipSpec, VideoClipDataset

    spec = ClipSpec(
        frames=args.frames,
        stride=args.stride,
        train_scale=tuple(args.train_scale),
        crop_size=args.crop_size,
        test_scale=args.train_scale[0],
    )
    records = [VideoRecord(path, label=0) for path in videos]
    return VideoClipDataset(records, "train", spec, decoder, repeat=repeat, uint8=True)


class StandInStep:
    """A training step of ``batch_clips / gpu_rate`` seconds of bf16 matmuls on the GPU.

    Run in the main thread after each batch and waited for (as a loop that logs the loss
    does), so the loader's threads and workers compete with a busy GPU and a waiting main thread.
    """

    def __init__(self, seconds: float, size: int = 4096) -> None:
        self.a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
        for _ in range(3):  # warm-up, then time 20 products
            self.a @ self.a
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(20):
            self.a @ self.a
        torch.cuda.synchronize()
        self.products = max(1, round(seconds / ((time.perf_counter() - t0) / 20)))

    def __call__(self) -> None:
        for _ in range(self.products):
            self.a @ self.a
        torch.cuda.current_stream().synchronize()


def run_mixed(
    videos: list[str],
    share: float,
    workers: int,
    threads: int,
    repeat: int,
    args,
    device,
    step: StandInStep | None = None,
) -> dict:
    """Clips/s of a2video's MixedLoader at NVDEC ``share`` with ``workers`` CPU processes."""
    per_batch = max(1, args.batch_size // repeat)  # videos per batch
    clips_per_batch = per_batch * repeat
    warmup = args.warmup_batches
    batches = warmup + int(args.seconds * 5000 / clips_per_batch) + 1  # never runs out
    keys = [(i % len(videos), i // len(videos)) for i in range(batches * per_batch)]
    from a2video.data.datasets import repeated_collate

    dataset = training_dataset(videos, args.cpu_decoder, repeat, args)
    cpu_loader = torch.utils.data.DataLoader(  # as the DataModules' train loader
        dataset,
        batch_sampler=KeyBatches(),
        num_workers=workers,
        collate_fn=functools.partial(repeated_collate, repeat=repeat) if repeat > 1 else None,
        pin_memory=device != "cpu",
        worker_init_fn=_one_thread,
    )
    loader = MixedLoader(
        keys,
        per_batch,
        cpu_loader,
        dataset.with_decoder("nvdec"),
        share,
        threads,
    )
    it = iter(loader)
    clips, start = 0, None
    try:
        for n, batch in enumerate(it):
            batch["video"].to(device, non_blocking=True)
            if step is not None:
                step()
            if n + 1 == warmup:  # workers forked, sessions open, queues primed
                if device != "cpu":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            elif start is not None:
                clips += batch["video"].shape[0]
                if time.perf_counter() - start >= args.seconds:
                    break
    finally:
        it.close()  # stops the threads and the workers
    if device != "cpu":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start if start is not None else float("nan")
    return {
        "mode": "cpu" if share == 0 else "nvdec" if share == 1 else "mixed",
        "nvdec_share": round(share, 3),
        "cpu_workers": workers if share < 1 else 0,
        "nvdec_threads": threads if share > 0 else 0,
        "repeat": repeat,
        "batch_clips": clips_per_batch,
        "clips": clips,
        "seconds": round(elapsed, 2),
        "clips_per_s": round(clips / elapsed, 1),
        "gpu_rate": args.gpu_rate if step is not None else None,
    }


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # parallelism comes from the workers, as in the DataModule


def mixed_main(videos: list[str], args) -> list[dict]:
    """For each K: CPU only, NVDEC only, then both at the suggested (or given) share."""
    threads = args.threads[0]
    results = []
    if args.fed_shares:  # only the loader feeding the stand-in step, at each share
        for repeat in args.repeats:
            results += fed_runs(videos, repeat, args.fed_shares, args)
        return results
    for repeat in args.repeats:
        cpu = run_mixed(videos, 0.0, args.cpu_workers, threads, repeat, args, args.device)
        print(json.dumps(cpu), flush=True)
        nvdec = run_mixed(videos, 1.0, args.cpu_workers, threads, repeat, args, args.device)
        print(json.dumps(nvdec), flush=True)
        suggested = nvdec["clips_per_s"] / max(nvdec["clips_per_s"] + cpu["clips_per_s"], 1e-9)
        share = args.share if args.share is not None else suggested
        both = run_mixed(videos, share, args.cpu_workers, threads, repeat, args, args.device)
        both["suggested_nvdec_share"] = round(suggested, 3)
        both["sum_of_single_rates"] = round(cpu["clips_per_s"] + nvdec["clips_per_s"], 1)
        print(json.dumps(both), flush=True)
        print(
            f"K={repeat}: cpu {cpu['clips_per_s']} + nvdec {nvdec['clips_per_s']} clips/s alone; "
            f"mixed at nvdec_share {both['nvdec_share']}: {both['clips_per_s']} clips/s "
            f"(suggested data.nvdec_share: {suggested:.2f})",
            flush=True,
        )
        results += [cpu, nvdec, both]
        if args.gpu_rate:  # the CPU workers alone and the mix, feeding a stand-in step
            results += fed_runs(videos, repeat, (0.0, share), args)
    return results


def fed_runs(videos: list[str], repeat: int, shares, args) -> list[dict]:
    """The mixed loader at each NVDEC share feeding a stand-in step of ``--gpu-rate`` clips/s."""
    clips_per_batch = max(1, args.batch_size // repeat) * repeat
    step = StandInStep(clips_per_batch / args.gpu_rate)
    runs = []
    for share in shares:
        fed = run_mixed(
            videos, share, args.cpu_workers, args.threads[0], repeat, args, args.device, step
        )
        print(json.dumps(fed), flush=True)
        print(
            f"K={repeat}, nvdec_share {share:.2f}: with a {args.gpu_rate} clips/s stand-in step: "
            f"{fed['clips_per_s']} clips/s (the step's rate means the loader keeps up)",
            flush=True,
        )
        runs.append(fed)
    return runs


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
    parser.add_argument(
        "--cpu-workers", type=int, default=0, help="mixed loader: CPU workers (see above)"
    )
    parser.add_argument("--share", type=float, default=None, help="mixed: NVDEC share to run")
    parser.add_argument(
        "--fed-shares",
        type=float,
        nargs="+",
        default=None,
        help="mixed: only the runs feeding the --gpu-rate stand-in step, at these NVDEC shares",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="mixed: clips per batch")
    parser.add_argument("--warmup-batches", type=int, default=8, help="mixed: not timed")
    parser.add_argument("--train-scale", type=int, nargs=2, default=[256, 320], help="mixed")
    parser.add_argument("--crop-size", type=int, default=224, help="mixed")
    parser.add_argument(
        "--gpu-rate",
        type=float,
        default=0.0,
        help="mixed: also run the mix feeding a stand-in training step of this many clips/s",
    )
    args = parser.parse_args(argv)
    if args.fed_shares and not (args.gpu_rate and args.cpu_workers):
        parser.error("--fed-shares needs --gpu-rate and --cpu-workers")
    if not torch.cuda.is_available():
        print("bench_nvdec: no CUDA device; nothing to measure", file=sys.stderr)
        return 2
    args.device = "cuda"
    if args.cpu_workers:
        args.cpu_decoder = cpu_decoder_or_none()
        if args.cpu_decoder is None:
            print(
                "bench_nvdec --cpu-workers: the CPU workers need decord2 (pip install decord2 "
                "numpy) or PyAV (pip install av numpy) on this host; carry their wheels to an "
                "offline GPU host, or run without --cpu-workers (NVDEC alone)",
                file=sys.stderr,
            )
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
    if args.cpu_workers:
        info.update(cpu_workers=args.cpu_workers, cpu_decoder=args.cpu_decoder)
        results = mixed_main(videos, args)
        if args.json:
            Path(args.json).write_text(json.dumps({**info, "results": results}, indent=1))
        return 0
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


def cpu_decoder_or_none() -> str | None:
    """The CPU decoder the workers would use ("auto": decord, else PyAV), or None if neither."""
    import importlib.util

    for module in ("decord", "av"):
        if importlib.util.find_spec(module) is not None and importlib.util.find_spec("numpy"):
            return "auto"
    return None


if __name__ == "__main__":
    sys.exit(main())
