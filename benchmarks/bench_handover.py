"""What a train batch costs the training process on its way from a worker (``data.batch_ring``).

Batches of ``--batch-clips`` uint8 clips (default 32 × 3 × 8 × 224², 38.5 MB, channels-last as
the workers make them) come from ``--workers`` DataLoader workers through the DataModules' own
loader class, ``collate_clips`` and ring. Two paths, interleaved round by round:

- copy: the worker stacks the batch into fresh shared memory; the training process receives
  it (maps the segment) and pins it, as DataLoader's pin-memory thread does (``pin_memory()``
  on a CUDA host; on a CPU-only host a copy into a reused buffer stands in for it, the pinned
  cache's reuse of its blocks);
- ring: the worker writes the batch into a slot of the :class:`~a2video.data.ring.BatchRing`;
  the training process takes the slot's view (page-locked on a CUDA host).

Each round's dataset is exactly the batches the DataLoader holds in flight: the workers make
them all, then the training process drains them with no worker running beside it, so what is
timed is the training process's own work per batch. On a CUDA host
each batch is also copied to the GPU (``non_blocking``, then synchronised): the same DMA speed on
both paths shows the ring's memory is page-locked. Last, the worker's side: stacking a batch into
fresh shared memory against writing it into a slot, in one process.

Imports torch and a2video.data only (no decord, PyAV or jsonargparse), so it runs on GPU hosts:

    python benchmarks/bench_handover.py --json /tmp/handover.json            # CPU
    python benchmarks/bench_handover.py --device cuda --workers 4 --json ... # a GPU host
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
from pathlib import Path
from statistics import median

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import cpu_model

from a2video.data.annotations import VideoRecord
from a2video.data.datasets import ClipSpec, VideoClipDataset, collate_clips
from a2video.data.ring import BatchRing, RingDataLoader
from a2video.data.transforms import stack_clips
from a2video.data.workers import worker_init


class ConstantClips(VideoClipDataset):
    """Train samples whose clip is a copy of one channels-last uint8 clip (no decoding)."""

    def __init__(self, n: int, spec: ClipSpec) -> None:
        super().__init__([VideoRecord(str(i), 0) for i in range(n)], "train", spec, uint8=True)
        t, side = spec.frames, spec.crop_size  # (T, S, S, 3) in memory, as decoders give
        self.clip = torch.randint(0, 255, (t, side, side, 3), dtype=torch.uint8).permute(3, 0, 1, 2)

    def __getitem__(self, key) -> dict:
        index = int(key[0]) if isinstance(key, (tuple, list)) else int(key)
        return {
            "video": self.clip.clone(),  # keeps the channels-last order
            "label": 0,
            "index": index,
            "valid": True,
            "failed": False,
            "failed_index": -1,
        }


def _pin(video: torch.Tensor, buffer: torch.Tensor, cuda: bool) -> torch.Tensor:
    """What the pin-memory thread does to a received batch (its stand-in without CUDA)."""
    return video.pin_memory() if cuda else buffer.copy_(video)


def _round(args, dataset, ring: BatchRing | None, device: torch.device) -> dict:
    """One drain of the batches in flight: ms per batch of the training process's work."""
    cuda = device.type == "cuda"
    loader = RingDataLoader(
        dataset,
        batch_size=args.batch_clips,
        collate_fn=functools.partial(collate_clips, ring=ring),
        num_workers=args.workers,
        prefetch_factor=args.prefetch,
        worker_init_fn=worker_init,
        pin_memory=False,  # the copy path pins below, in this thread, to time it
    )
    loader.ring = ring
    in_flight = args.workers * args.prefetch
    it = iter(loader)
    first = next(it)
    buffer = torch.empty_like(first["video"])
    time.sleep(args.fill_s)  # every batch in flight made and waiting
    receive = pin = h2d = 0.0
    for _ in range(in_flight - 1):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        video = batch["video"] if ring is not None else _pin(batch["video"], buffer, cuda)
        t2 = time.perf_counter()
        if cuda:
            video.to(device, non_blocking=True)
            torch.cuda.synchronize(device)
            if ring is not None:
                ring.released(batch)
        t3 = time.perf_counter()
        receive, pin, h2d = receive + t1 - t0, pin + t2 - t1, h2d + t3 - t2
    del it
    n = in_flight - 1
    return {"receive_ms": 1e3 * receive / n, "pin_ms": 1e3 * pin / n, "h2d_ms": 1e3 * h2d / n}


def worker_side(args, dataset, ring: BatchRing) -> dict:
    """Stacking one batch into fresh shared memory vs writing it into a ring slot (ms)."""
    clips = [dataset.clip.clone() for _ in range(args.batch_clips)]
    fresh, slot = [], []
    for i in range(args.worker_reps):
        t0 = time.perf_counter()
        stack_clips(clips, shared=True)
        t1 = time.perf_counter()
        ring.write(i % ring.slots, clips)
        t2 = time.perf_counter()
        fresh.append(t1 - t0)
        slot.append(t2 - t1)
    return {
        "fresh_shared_ms": round(1e3 * median(fresh), 2),
        "ring_slot_ms": round(1e3 * median(slot), 2),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-clips", type=int, default=32)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--prefetch", type=int, default=4, help="DataLoader prefetch_factor")
    parser.add_argument("--rounds", type=int, default=5, help="drains per path, interleaved")
    parser.add_argument("--fill-s", type=float, default=3.0, help="wait for the batches in flight")
    parser.add_argument("--worker-reps", type=int, default=10)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: pin and copy for real")
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.prefetch < 1 or args.workers * args.prefetch < 2:
        # one batch is waited for first; the timed batches are the others in flight
        parser.error("--workers x --prefetch must be at least 2 (the batches in flight it times)")
    torch.set_num_threads(1)
    device = torch.device(args.device)
    spec = ClipSpec(args.frames, 8, (args.crop, args.crop), args.crop, args.crop)
    # exactly the batches in flight: draining them sends the workers nothing new to do
    dataset = ConstantClips(args.batch_clips * args.workers * args.prefetch, spec)
    ring = BatchRing.for_loader(
        args.batch_clips, args.frames, args.crop, args.workers, args.prefetch,
        pin=device.type == "cuda",
    )  # fmt: skip
    rounds: dict[str, list[dict]] = {"copy": [], "ring": []}
    for _ in range(args.rounds):
        rounds["copy"].append(_round(args, dataset, None, device))
        rounds["ring"].append(_round(args, dataset, ring, device))
    table = {
        path: {key: round(median(r[key] for r in rs), 2) for key in rs[0]}
        for path, rs in rounds.items()
    }
    result = {
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        },
        "command": " ".join(sys.argv),
        "batch_mb": round(ring.slot_bytes / 1e6, 1),
        "in_flight": args.workers * args.prefetch,
        "ring_pinned": ring.pinned,
        "training_process_ms_per_batch": table,
        "worker_ms_per_batch": worker_side(args, dataset, ring),
    }
    print(f"batch of {args.batch_clips} uint8 clips, {result['batch_mb']} MB, {device}")
    print("| path | receive ms | pin ms | to the GPU ms | training process ms |")
    print("|---|---:|---:|---:|---:|")
    for path, row in table.items():
        total = row["receive_ms"] + row["pin_ms"]
        print(
            f"| {path} | {row['receive_ms']:.2f} | {row['pin_ms']:.2f} | {row['h2d_ms']:.2f} "
            f"| {total:.2f} |"
        )
    w = result["worker_ms_per_batch"]
    print(f"worker: fresh shared memory {w['fresh_shared_ms']:.1f} ms, ring slot "
          f"{w['ring_slot_ms']:.1f} ms")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
