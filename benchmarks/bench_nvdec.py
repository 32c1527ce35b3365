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

``--stages`` says where one training sample's time goes, for NVDEC (in this thread, on its own
CUDA stream, as a thread of the mixed loader) and for the CPU decoder (decord, else PyAV; one
torch thread, as a worker): ``--samples`` samples (at most ``--seconds`` of them) of the
DataModules' ``VideoClipDataset`` made step by step as its ``__getitem__`` and
``NvdecPrefetcher`` make them (open, sampling, decode, the K clips' transforms, stack, the
per-sample stream sync, the batch's collate), with a device synchronize after every stage (in
this mode only), so a stage's wall time holds its GPU work; "host ms" is the calling thread's
CPU time before that sync (Python, launches, blocking copies: what the NVDEC threads share under
the GIL). On the same frames it also times the old bench's ``train_crop(uint8=True)`` (the
rows before commit 2e32f05: 574 clips/s NVDEC alone, 372 after) and the library's transforms on
a contiguous channels-first float crop (what torchvision's CUDA resize makes of a uint8 crop
anyway), and the old collate beside ``collate_clips``; then the same samples as the loader's
thread runs them, without the stage syncs. Markdown tables on stdout, all of it in ``--json``.
Needs numpy and torchvision (the library's dataset and transforms) besides torch; with neither
decord nor PyAV it times NVDEC alone; without NVDEC (or without a GPU) the CPU decoder alone:
  python3 benchmarks/bench_nvdec.py --stages --videos .gpuwork/videos/prepared --repeats 4 \
      --samples 48 --seconds 6 --json /tmp/stages.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import json
import os
import platform
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
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


def train_crop(
    frames: torch.Tensor, rng: _Rng, scale=(256, 320), size: int = 224, uint8: bool = False
) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (3, T, size, size): this file's training augmentation
    (``--train-crop`` of the NVDEC-alone rows; the mixed rows run the DataModules' own
    transforms).

    ``uint8=True`` returns uint8, as the mixed rows' NVDEC samples were before they ran the
    library's transforms (commit 2e32f05: 574 clips/s NVDEC alone, then 372); ``--stages`` times
    it beside the library's transforms. On the CPU the resize then runs on uint8.
    """
    h, w = frames.shape[1:3]
    short = rng.integers(scale[0], scale[1] + 1)
    f = short / min(h, w)
    nh, nw = max(size, round(h * f)), max(size, round(w * f))
    top, left = rng.integers(0, nh - size + 1), rng.integers(0, nw - size + 1)
    y0, x0 = int(top / f), int(left / f)
    y1, x1 = min(h, int((top + size) / f) + 1), min(w, int((left + size) / f) + 1)
    x = frames[:, y0:y1, x0:x1].permute(0, 3, 1, 2)
    if not (uint8 and x.device.type == "cpu"):
        x = x.float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    if uint8 and x.dtype != torch.uint8:
        x = x.round_().clamp_(0, 255).to(torch.uint8)
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
    from a2video.data.prepare import records_frame_step

    spec = ClipSpec(
        frames=args.frames,
        stride=args.stride,
        train_scale=tuple(args.train_scale),
        crop_size=args.crop_size,
        test_scale=args.train_scale[0],
    )
    records = [VideoRecord(path, label=0) for path in videos]
    # a `prepare --frame-step N` copy (its a2video_prepared.json beside or above the videos):
    # stride / N frames of the copy, the same time span, as the DataModules read it
    step = records_frame_step(videos)
    return VideoClipDataset(
        records, "train", spec, decoder, repeat=repeat, uint8=True, frame_step=step
    )


class StandInStep:
    """A training step of ``batch_clips / gpu_rate`` seconds of bf16 matmuls on the GPU.

    Run in the main thread after each batch, so the loader's threads and workers compete with a
    busy GPU. ``ahead=0``: each step is waited for (a loop that reads the loss every step);
    ``ahead=1``: the main thread waits only for the step before, so it fetches the next batch
    while the GPU runs this one (a2video's hot path: no host sync between logging steps).
    """

    def __init__(self, seconds: float, size: int = 4096, ahead: int = 0) -> None:
        self.ahead = ahead
        self.pending: list[torch.cuda.Event] = []
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
        done = torch.cuda.Event()
        done.record()
        self.pending.append(done)
        while len(self.pending) > self.ahead:
            self.pending.pop(0).synchronize()


def run_mixed(
    videos: list[str],
    share: float,
    workers: int,
    threads: int,
    repeat: int,
    args,
    device,
    step: StandInStep | None = None,
    ring: bool = True,
) -> dict:
    """Clips/s of a2video's MixedLoader at NVDEC ``share`` with ``workers`` CPU processes; with
    ``ring`` the workers write into a page-locked :class:`BatchRing` (the DataModules' default
    on a GPU, ``data.batch_ring``), else the pin-memory thread copies each batch."""
    per_batch = max(1, args.batch_size // repeat)  # videos per batch
    clips_per_batch = per_batch * repeat
    warmup = args.warmup_batches
    batches = warmup + int(args.seconds * 5000 / clips_per_batch) + 1  # never runs out
    keys = [(i % len(videos), i // len(videos)) for i in range(batches * per_batch)]
    from a2video.data.datasets import collate_clips
    from a2video.data.ring import BatchRing, RingDataLoader

    dataset = training_dataset(videos, args.cpu_decoder, repeat, args)
    batch_ring = None
    if ring and workers and share < 1:
        batch_ring = BatchRing.for_loader(
            clips_per_batch, args.frames, args.crop_size, workers, pin=device != "cpu"
        )
    cpu_loader = RingDataLoader(  # as the DataModules' train loader
        dataset,
        batch_sampler=KeyBatches(),
        num_workers=workers,
        collate_fn=functools.partial(collate_clips, repeat=repeat, ring=batch_ring),
        pin_memory=device != "cpu" and batch_ring is None,
        worker_init_fn=_one_thread,
    )
    cpu_loader.ring = batch_ring
    loader = MixedLoader(
        keys,
        per_batch,
        cpu_loader,
        dataset.with_decoder("nvdec"),
        share,
        threads,
    )
    it = iter(loader)
    clips, start, timed = 0, None, 0
    # the main thread's seconds per timed batch: waiting for the loader, the copy to the
    # device (launched), the stand-in step (its matmuls and its wait)
    spent = {"loader_wait": 0.0, "to_device": 0.0, "step": 0.0}
    try:
        n, t0 = 0, time.perf_counter()
        for batch in it:
            t1 = time.perf_counter()
            batch["video"] = batch["video"].to(device, non_blocking=True)
            if batch_ring is not None:
                batch_ring.released(batch)  # as the DataModule's on_after_batch_transfer
            t2 = time.perf_counter()
            if step is not None:
                step()
            t3 = time.perf_counter()
            if n + 1 == warmup:  # workers forked, sessions open, queues primed
                if device != "cpu":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            elif start is not None:
                clips += batch["video"].shape[0]
                timed += 1
                for key, sec in zip(spent, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                    spent[key] += sec
                if time.perf_counter() - start >= args.seconds:
                    break
            n, t0 = n + 1, time.perf_counter()
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
        "stand_in_ahead": step.ahead if step is not None else None,
        "batch_ring": batch_ring is not None,
        "main_ms_per_batch": {k: round(1e3 * v / max(timed, 1), 2) for k, v in spent.items()},
    }


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # parallelism comes from the workers, as in the DataModule


def emit(args, row: dict) -> None:
    """Print a result row as JSON and, with ``--json``, rewrite that file with every row so far:
    a run stopped by a timeout (gpu_checks.sh caps each section) keeps the rows it finished."""
    print(json.dumps(row), flush=True)
    if getattr(args, "json", None):
        rows = vars(args).setdefault("rows", [])
        rows.append(row)
        info = getattr(args, "info", {})
        Path(args.json).write_text(json.dumps({**info, "results": rows}, indent=1))


def mixed_main(videos: list[str], args) -> list[dict]:
    """For each K: CPU only, NVDEC only, then both at the suggested (or given) share."""
    threads = args.threads[0]
    results = []
    if args.fed_shares:  # only the loader feeding the stand-in step, at each share
        for repeat in args.repeats:
            results += fed_runs(videos, repeat, args.fed_shares, args)
        return results
    for repeat in args.repeats:
        on = args.rings[0] == "on"
        cpu = run_mixed(videos, 0.0, args.cpu_workers, threads, repeat, args, args.device, ring=on)
        emit(args, cpu)
        nvdec = run_mixed(videos, 1.0, args.cpu_workers, threads, repeat, args, args.device)
        emit(args, nvdec)
        suggested = nvdec["clips_per_s"] / max(nvdec["clips_per_s"] + cpu["clips_per_s"], 1e-9)
        share = args.share if args.share is not None else suggested
        both = run_mixed(
            videos, share, args.cpu_workers, threads, repeat, args, args.device, ring=on
        )
        both["suggested_nvdec_share"] = round(suggested, 3)
        both["sum_of_single_rates"] = round(cpu["clips_per_s"] + nvdec["clips_per_s"], 1)
        emit(args, both)
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
    runs = []
    for ahead in args.stand_in_ahead:
        step = StandInStep(clips_per_batch / args.gpu_rate, ahead=ahead)
        waits = "each step waited for" if ahead == 0 else f"waiting {ahead} step(s) behind"
        for share in shares:
            for ring in args.rings:
                fed = run_mixed(
                    videos, share, args.cpu_workers, args.threads[0], repeat, args, args.device,
                    step, ring=ring == "on",
                )  # fmt: skip
                emit(args, fed)
                print(
                    f"K={repeat}, nvdec_share {share:.2f}, batch ring {ring}: with a "
                    f"{args.gpu_rate} clips/s stand-in step, {waits}: {fed['clips_per_s']} "
                    "clips/s (the step's rate means the loader keeps up); the main thread's ms "
                    f"per batch: {fed['main_ms_per_batch']}",
                    flush=True,
                )
                runs.append(fed)
    return runs


# ------------------------------------------------------------------------------ --stages
# (key, label) of the stages of one training sample, in the order the library runs them
STAGES = (
    ("open", "open (reader construction)"),
    ("sampling", "sampling (sample rng, the K clips' indices)"),
    ("decode", "decode (get_frames + close)"),
    ("transforms", "transforms (select_frames + train_transform) x K"),
    ("stack", "stack the K clips"),
    ("sync", "stream sync (NvdecPrefetcher's, per sample; ~0 after the stage syncs)"),
    ("collate", "collate (collate_clips + stream sync), per sample"),
)
# (key, label, the stages timed, the library's row it compares with): on the same frames or
# samples as the library's stages, not in the total. The transforms' rows include the stack of
# the K clips: the old crop returns a permuted view whose channels-first copy the stack makes,
# where the library copies in ``to_cthw`` and stacks the copies.
ALTERNATIVES = (
    ("transforms", "library: train_transform x K + stack (uint8 channels-last view, "
     "torchvision resize)", ("transforms", "stack"), "transforms"),
    ("old_crop", "old bench: train_crop(uint8=True) x K + stack, as the rows before 2e32f05",
     ("old_crop",), "transforms"),
    ("float_cf", "library transforms, crop region made contiguous channels-first float "
     "first, + stack", ("float_cf",), "transforms"),
    ("collate", "library: collate_clips, per sample", ("collate",), "collate"),
    ("old_collate", "old bench: collate_clips (stack, flatten, index), per sample",
     ("old_collate",), "collate"),
)  # fmt: skip


def collate_clips(samples: list[dict]) -> dict:
    """The old bench's collate (before 2e32f05): the K clips of each sample side by side."""
    video = torch.stack([s["video"] for s in samples])  # (b, K, 3, T, S, S)
    return {"video": video.flatten(0, 1), "index": torch.tensor([s["index"] for s in samples])}


class StageTimer:
    """Wall and host seconds per stage, each stage ended by ``sync`` (a device synchronize in
    ``--stages`` only), so a stage's wall time holds the GPU work it queued.

    Host time (``time.thread_time``) is read before that sync: what the stage keeps the calling
    thread busy (Python, kernel launches, a blocking copy such as ``select_frames``' pageable
    index upload), the part the loader's NVDEC threads share under the GIL.
    """

    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync = sync
        self.wall: dict[str, float] = {}
        self.host: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0, c0 = time.perf_counter(), time.thread_time()
        yield
        c1 = time.thread_time()
        self.sync()
        self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - t0
        self.host[name] = self.host.get(name, 0.0) + c1 - c0


def train_transform_float_cf(
    frames: torch.Tensor, rng, scale, crop_size: int, flip: bool = True
) -> torch.Tensor:
    """The library's ``train_transform`` (uint8 out, same draws, same source box as
    ``transforms.resized_crop``) with the crop region made a contiguous channels-first float
    tensor before the resize.

    That is what torchvision does on CUDA anyway: its ``resize_image`` (torchvision 0.29,
    ``transforms/v2/functional/_geometry.py``) has a native uint8 bilinear kernel on the CPU
    only, so on CUDA it casts the region to float32 (``image.to(dtype=torch.float32)``, which
    keeps the channels-last strides of the library's view), interpolates, then ``round_()`` and
    casts back to uint8; and PyTorch's antialiased CUDA kernel
    (``upsample_gen2d_aa_out_cuda_template``) makes its input contiguous and writes a
    channels-last output (the layout of its input) through a contiguous temporary. Here the cast
    and the layout change are one copy and the output is contiguous: the same arithmetic on
    CUDA with two copies fewer per clip (``float_cf_max_abs_diff`` in the results says whether
    the numbers are the same). On the CPU the library resizes uint8 natively, so this differs by
    a grey level there and is slower.
    """
    import torchvision.transforms.v2.functional as TF

    from a2video.data import transforms as T

    x = T.to_tchw(frames)
    short = int(rng.integers(scale[0], scale[1] + 1))
    h, w = x.shape[-2:]
    new_h, new_w = T.short_side_shape(h, w, short)
    top = int(rng.integers(0, new_h - crop_size + 1))
    left = int(rng.integers(0, new_w - crop_size + 1))
    y0, y1, x0, x1 = T.source_box(h, w, short, top, left, crop_size)  # resized_crop's region
    region = x[..., y0:y1, x0:x1]
    if tuple(region.shape[-2:]) != (crop_size, crop_size):
        region = region.to(torch.float32, memory_format=torch.contiguous_format)
        region = TF.resize(region, [crop_size, crop_size], antialias=True)
        region = region.round_().to(torch.uint8)
    if flip and rng.random() < 0.5:
        region = region.flip(-1)
    return T.to_cthw(region)


def staged_sample(ds, key: tuple[int, int], timer: StageTimer, stream_sync) -> dict:
    """One training sample of ``ds`` (a2video's ``VideoClipDataset``, train) made as its
    ``__getitem__`` and ``NvdecPrefetcher`` make it, stage by stage under ``timer``; then the
    transform variants on the same frames. Returns the sample, with ``requested`` (the frame
    indices asked of the reader) and ``float_cf_diff`` (max |float_cf - library| grey level)."""
    from a2video.data.datasets import sample_rng

    index, epoch = key
    s, k = ds.spec, ds.repeat
    record = ds.records[index]
    with timer("open"):
        reader = ds.decoder.open(record.path)
    try:
        with timer("sampling"):
            sample = {"label": record.label, "index": index, "valid": True, "failed": False}
            sample.update(failed_index=-1, failed_reason="")
            rng = sample_rng(ds.seed, epoch, index)
            clips = sampling.repeated_train_clips(reader.num_frames, s.frames, ds.stride, k, rng)
            flat = sorted({i for c in clips for i in c})
        with timer("decode"):
            frames = reader.get_frames(flat)
            reader.close()
    finally:
        reader.close()
    pos = {v: p for p, v in enumerate(flat)}
    positions = [[pos[i] for i in c] for c in clips]
    rngs = {name: copy.deepcopy(rng) for name in ("old_crop", "float_cf")}  # the library's draws
    with timer("transforms"):
        out = ds.augment(frames, positions, rng)
    with timer("stack"):
        sample["video"] = out[0] if k == 1 else torch.stack(out)
    with timer("old_crop"):
        old = [
            train_crop(select_frames(frames, p), rngs["old_crop"], s.train_scale, s.crop_size, True)
            for p in positions
        ]
        _ = old[0] if k == 1 else torch.stack(old)  # the copy the old stack made
    with timer("float_cf"):
        alt = [
            train_transform_float_cf(
                select_frames(frames, p), rngs["float_cf"], s.train_scale, s.crop_size, s.flip
            )
            for p in positions
        ]
        _ = alt[0] if k == 1 else torch.stack(alt)
    with timer("sync"):
        stream_sync()  # NvdecPrefetcher: the decoder's frame buffer is reused by the next sample
    diff = max(int((a.int() - b.int()).abs().max()) for a, b in zip(alt, out, strict=True))
    return {**sample, "requested": flat, "float_cf_diff": diff}


def run_stages(videos: list[str], decoder: str, repeat: int, args) -> dict:
    """``--stages``: where the time of one training sample goes, for ``decoder`` ("nvdec": on
    the GPU in this thread, on its own CUDA stream as an NVDEC thread of the mixed loader; else
    on the CPU with one torch thread, as a DataLoader worker).

    Two passes over the same samples: staged (a device synchronize after every stage) and as
    the loader runs them (``dataset[key]``, the per-sample stream sync, the batch's collate:
    no other sync), whose total says how faithful the stages' sum is.
    """

    from a2video.data.datasets import collate_clips

    ds = training_dataset(videos, decoder, repeat, args)
    gpu = decoder == "nvdec" and torch.cuda.is_available()
    stream = torch.cuda.Stream() if gpu else None
    device_sync = torch.cuda.synchronize if gpu else (lambda: None)
    stream_sync = stream.synchronize if stream is not None else (lambda: None)
    collate = functools.partial(collate_clips, repeat=repeat)
    per_batch = max(1, args.batch_size // repeat)  # videos per batch, as the loaders'
    n = len(videos)
    keys: list[tuple[int, int]] = []
    requested: dict[str, int] = {}
    timer = StageTimer(device_sync)
    failed, diff, matches = 0, 0, None
    threads = torch.get_num_threads()
    if not gpu:
        torch.set_num_threads(1)  # as a DataLoader worker (_one_thread)
    try:
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            for i in range(min(n, args.samples)):  # warm-up: session, kernels, every file read
                staged_sample(ds, (i, 1 << 20), StageTimer(device_sync), stream_sync)
            stop = time.perf_counter() + args.seconds
            batch, first = [], None
            for i in range(10 * args.samples):
                if len(keys) >= args.samples or (time.perf_counter() > stop and not batch):
                    break
                key = (i % n, i // n)
                try:
                    sample = staged_sample(ds, key, timer, stream_sync)
                except VideoDecodeError:
                    failed += 1
                    continue
                keys.append(key)
                requested[f"{key[0]},{key[1]}"] = sample.pop("requested")
                diff = max(diff, sample.pop("float_cf_diff"))
                first = sample["video"] if first is None else first
                batch.append(sample)
                if len(batch) == per_batch or len(keys) == args.samples:
                    collate_stage(batch, collate, timer, stream_sync)
                    batch = []
            if batch:
                collate_stage(batch, collate, timer, stream_sync)
            if not keys:
                raise VideoDecodeError(args.videos, "no sample decoded")
            matches = bool(torch.equal(ds[keys[0]]["video"], first))
            as_run = loader_pass(ds, keys, per_batch, collate, stream_sync, device_sync)
    finally:
        torch.set_num_threads(threads)
    m = len(keys)
    total = sum(timer.wall[key] for key, _ in STAGES)
    stages = [
        {
            "stage": key,
            "label": label,
            "ms_per_sample": 1e3 * timer.wall[key] / m,
            "ms_per_clip": 1e3 * timer.wall[key] / (m * repeat),
            "host_ms_per_sample": 1e3 * timer.host[key] / m,
            "share": timer.wall[key] / total,
        }
        for key, label in STAGES
    ]
    parts = {key: stages for key, _, stages, _ in ALTERNATIVES}
    alternatives = []
    for key, label, stages_timed, library in ALTERNATIVES:
        wall = sum(timer.wall[p] for p in stages_timed)
        alternatives.append(
            {
                "alternative": key,
                "label": label,
                "ms_per_sample": 1e3 * wall / m,
                "ms_per_clip": 1e3 * wall / (m * repeat),
                "host_ms_per_sample": 1e3 * sum(timer.host[p] for p in stages_timed) / m,
                "vs_library": wall / sum(timer.wall[p] for p in parts[library]),
            }
        )
    frames = [len(v) for v in requested.values()]
    spans = [v[-1] - v[0] + 1 for v in requested.values()]
    result = {
        "mode": "stages",
        "decoder": ds.decoder.name,
        "frames_on": "cuda" if gpu else "cpu",
        "repeat": repeat,
        "samples": m,
        "clips": m * repeat,
        "batch_videos": per_batch,
        "failed": failed,
        "frames_requested_per_sample": sum(frames) / m,
        "frames_span_per_sample": sum(spans) / m,
        "frames_needed_per_sample": repeat * args.frames,
        "total_ms_per_sample": 1e3 * total / m,
        "clips_per_s_staged": m * repeat / total,
        "stages": stages,
        "alternatives": alternatives,
        "float_cf_max_abs_diff": diff,
        "staged_equals_library": matches,
        "as_run": as_run,
        "requested": requested,
    }
    result["table"] = stages_table(result)
    return result


def collate_stage(batch: list[dict], collate, timer: StageTimer, stream_sync) -> None:
    """The batch's collate as ``NvdecPrefetcher`` runs it (then a stream sync: ready before the
    training stream reads it), and the old bench's collate of the same samples."""
    with timer("collate"):
        collate(batch)
        stream_sync()
    with timer("old_collate"):
        collate_clips(batch)
        stream_sync()


def loader_pass(ds, keys, per_batch: int, collate, stream_sync, device_sync) -> dict:
    """The samples of ``keys`` as an NVDEC thread of the mixed loader makes them (its
    ``NvdecPrefetcher._work``: ``dataset[key]``, a stream sync per sample, the batch's collate
    and a stream sync), timed without the stages' synchronizes."""
    t = {"getitem": 0.0, "getitem_host": 0.0, "sync": 0.0, "collate": 0.0}
    device_sync()
    start = time.perf_counter()
    for j in range(0, len(keys), per_batch):
        samples = []
        for key in keys[j : j + per_batch]:
            t0, c0 = time.perf_counter(), time.thread_time()
            samples.append(ds[key])
            t1, c1 = time.perf_counter(), time.thread_time()
            stream_sync()
            t["getitem"] += t1 - t0
            t["getitem_host"] += c1 - c0
            t["sync"] += time.perf_counter() - t1
        t0 = time.perf_counter()
        collate(samples)
        stream_sync()
        t["collate"] += time.perf_counter() - t0
    device_sync()
    elapsed = time.perf_counter() - start
    m, k = len(keys), ds.repeat
    return {
        "getitem_ms": 1e3 * t["getitem"] / m,
        "getitem_host_ms": 1e3 * t["getitem_host"] / m,
        "sync_ms": 1e3 * t["sync"] / m,
        "collate_ms": 1e3 * t["collate"] / m,
        "total_ms": 1e3 * elapsed / m,
        "clips_per_s": m * k / elapsed,
    }


def stages_table(r: dict) -> str:
    """The markdown of one ``run_stages`` result."""
    k, a = r["repeat"], r["as_run"]
    name = "NVDEC" if r["decoder"] == "nvdec" else f"CPU decoder {r['decoder']}"
    lines = [
        f"### {name} (frames on {r['frames_on']}), K={k}: {r['samples']} samples "
        f"({r['clips']} clips), batches of {r['batch_videos']} videos"
        + (f", {r['failed']} failed" if r["failed"] else ""),
        "",
        "| stage | ms/sample | ms/clip | host ms/sample | share |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in r["stages"]:
        lines.append(
            f"| {s['label']} | {s['ms_per_sample']:.3f} | {s['ms_per_clip']:.3f} "
            f"| {s['host_ms_per_sample']:.3f} | {100 * s['share']:.1f}% |"
        )
    lines += [
        f"| **total** (a device sync after each stage) | {r['total_ms_per_sample']:.3f} "
        f"| {r['total_ms_per_sample'] / k:.3f} | | {r['clips_per_s_staged']:.0f} clips/s |",
        "",
        "| alternatives, on the same frames / samples | ms/sample | ms/clip | host ms/sample "
        "| vs library |",
        "|---|---:|---:|---:|---:|",
    ]
    for v in r["alternatives"]:
        lines.append(
            f"| {v['label']} | {v['ms_per_sample']:.3f} | {v['ms_per_clip']:.3f} "
            f"| {v['host_ms_per_sample']:.3f} | {v['vs_library']:.2f}x |"
        )
    lines += [
        "",
        f"As the loader's thread runs it (no stage syncs, one thread): dataset[key] "
        f"{a['getitem_ms']:.3f} ms (host {a['getitem_host_ms']:.3f}) + stream sync "
        f"{a['sync_ms']:.3f} + collate {a['collate_ms']:.3f} = {a['total_ms']:.3f} ms/sample, "
        f"{a['clips_per_s']:.0f} clips/s. Frames asked of the reader per sample: "
        f"{r['frames_requested_per_sample']:.1f} (K clips x T = {r['frames_needed_per_sample']}, "
        f"span {r['frames_span_per_sample']:.1f}); staged sample == dataset[key]: "
        f"{r['staged_equals_library']}; float_cf vs library: max |diff| "
        f"{r['float_cf_max_abs_diff']} grey levels.",
    ]
    return "\n".join(lines)


def list_videos(root: str) -> list[str]:
    return sorted(str(p) for p in Path(root).rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)


def stages_main(args) -> int:
    """``--stages``: the stage tables of NVDEC and of the CPU decoder, for each ``--repeats`` K."""
    videos = list_videos(args.videos)
    if not videos:
        print(f"bench_nvdec: no videos under {args.videos}", file=sys.stderr)
        return 2
    decoders = []
    try:
        from a2video.data.video import check_decoder

        check_decoder("nvdec")
        decoders.append("nvdec")
    except (ImportError, RuntimeError, ValueError) as err:
        print(f"bench_nvdec --stages: no NVDEC here ({err}); the CPU decoder only", file=sys.stderr)
    cpu = cpu_decoder_or_none()
    if cpu is None:
        print("bench_nvdec --stages: no decord2 or PyAV (+ numpy): NVDEC only", file=sys.stderr)
    else:
        decoders.append(cpu)
    if not decoders:
        return 2
    try:
        import PyNvVideoCodec as nvc

        nvc_version = getattr(nvc, "__version__", "?")
    except Exception:  # absent, or no driver: the stand-in of the tests, or the CPU rows only
        nvc_version = None
    info = {
        "mode": "stages",
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "pynvvideocodec": nvc_version,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "videos": len(videos),
        "clip": f"{args.frames} frames, stride {args.stride}",
        "command": " ".join([sys.executable, *sys.argv]),
    }
    print(json.dumps(info), flush=True)
    results = []
    for repeat in args.repeats:
        rows = [run_stages(videos, name, repeat, args) for name in decoders]
        nv = next((r for r in rows if r["decoder"] == "nvdec"), None)
        ref = next((r for r in rows if r["decoder"] != "nvdec"), None)
        if nv is not None and ref is not None:  # the same samples: the same frames asked?
            common = nv["requested"].keys() & ref["requested"].keys()
            nv["requested_match_cpu"] = all(
                nv["requested"][c] == ref["requested"][c] for c in common
            )
            nv["requested_compared"] = len(common)
        for r in rows:
            print("\n" + r["table"], flush=True)
        if nv is not None and "requested_match_cpu" in nv:
            print(
                f"\nK={repeat}: NVDEC asked its reader for the same frames as {ref['decoder']} on "
                f"{nv['requested_compared']} samples: {nv['requested_match_cpu']}",
                flush=True,
            )
        results += rows
    if args.json:
        Path(args.json).write_text(json.dumps({**info, "results": results}, indent=1))
    return 0


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
    parser.add_argument(
        "--stages",
        action="store_true",
        help="time each stage of one training sample, NVDEC and the CPU decoder (see above)",
    )
    parser.add_argument("--samples", type=int, default=64, help="--stages: samples per table")
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
    parser.add_argument(
        "--stand-in-ahead",
        type=int,
        nargs="+",
        default=[0],
        help="mixed: the stand-in step waits for the step this many behind (0: each step, as a "
        "loop reading the loss every step; 1: a loop without per-step host syncs); one run each",
    )
    parser.add_argument(
        "--rings",
        nargs="+",
        choices=["on", "off"],
        default=["on"],
        help="mixed: the CPU workers write into a page-locked batch ring (on: the DataModules' "
        "default on a GPU) or the pin-memory thread copies each batch (off); the rows without "
        "a stand-in step use the first, the fed rows run each",
    )
    args = parser.parse_args(argv)
    if min(args.stand_in_ahead) < 0:
        parser.error("--stand-in-ahead must be >= 0")
    if args.fed_shares and not (args.gpu_rate and args.cpu_workers):
        parser.error("--fed-shares needs --gpu-rate and --cpu-workers")
    if args.stages:  # runs on the CPU too (NVDEC rows where PyNvVideoCodec and a GPU are)
        if args.samples < 1:
            parser.error("--samples must be >= 1")
        return stages_main(args)
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
    videos = list_videos(args.videos)
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
    args.info = info  # what emit() writes beside the rows
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
            emit(args, r)
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
