"""Data-loading benchmarks (results in benchmarks/RESULTS.md, "## Data loading").

Subcommands:
  loading      clips/s per core of the training path on download-like video (the default
               dataset: `a2video synth --encoding web`): bare decoder, plain (float, uint8),
               repeated (K clips per decode), on the original and on its `a2video prepare` copy,
               interleaved per video in one process; and the cores one GPU needs at a given
               GPU step rate (--gpu-rate). Goals: K=4 >= 2.5x, prepared >= 2x plain.
  psnr         frames of the prepared copy against the original's (PSNR, dB)
  sweep        decode speed of prepare encodings (keyframe interval, fastdecode, B-frames,
               frame step) on a few videos: what `a2video prepare` defaults to
  frame-steps  clips/s per core of prepared copies with frame step 1, 2, 4, 8 (--steps), at
               K=1 and K=--repeat, interleaved per video
  loader       clips/s per core of the DataModule's train loader in one process (decode,
               transforms, collate: a worker's whole job) on the prepared copy, K=--repeat
  throughput   train clips/s of the dataset in one process (= one worker) against the bare
               decoder bound: the same frame indices opened and decoded with no dataset,
               sampling or transform around them. Goal: >= 0.9 of the bound.
  multiview    10x3 test views of a video decoded once against each view decoded on its own.
               Goal: >= 3x faster.
  plot T.json M.json OUT.png   figure from the throughput and multiview JSON results
  broken-epoch epochs over a dataset where 10% of the videos are broken, with persistent
               DataLoader workers; reports failures counted and RSS per worker per epoch
               (memory must stay flat).

Each subcommand synthesizes its dataset under --root unless one is there already (download-like
encoding for loading/psnr/sweep: x264 medium, crf 23, keyint 250, 30 fps, 10 s; 1-s GOPs, the
fast test encoding, for the older subcommands), e.g.
  python benchmarks/bench_data.py loading --root /tmp/bench_web --prepared /tmp/bench_web_fast
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import cpu_model

from a2video.data import annotations as ann
from a2video.data import sampling, transforms
from a2video.data.datasets import ClipSpec, VideoClipDataset, sample_rng
from a2video.data.prepare import Encoding, prepare_dataset
from a2video.data.synthetic import synthesize
from a2video.data.video import get_decoder


def machine() -> dict:
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def ensure_dataset(
    root: str,
    classes: int,
    per_class: int,
    duration,
    broken: float = 0.0,
    max_side: int | None = None,
    encoding: str = "fast",
) -> str:
    if not (Path(root) / "annotations" / "train.csv").is_file():
        print(f"synthesizing a {encoding}-encoded Kinetics-layout set in {root}", flush=True)
        synthesize(
            root,
            "kinetics",
            classes=classes,
            videos_per_class=per_class,
            val_per_class=1,
            duration=tuple(duration),
            seed=0,
            max_side=max_side,
            missing=0.0,
            broken=broken,
            structure="mixed",
            encoding=encoding,
        )
    return root


def train_records(root: str) -> list:
    csv_path = Path(root) / "annotations" / "train.csv"
    classes = ann.read_kinetics_classes(csv_path)
    return ann.read_kinetics_csv(csv_path, Path(root) / "train", classes).records


# --------------------------------------------------------------------------- loading
def _spec(args) -> ClipSpec:
    return ClipSpec(
        frames=args.frames,
        stride=args.stride,
        train_scale=(args.scale_min, args.scale_max),
        crop_size=args.crop,
        test_scale=args.scale_min,
    )


def ensure_prepared(src: str, dst: str | None, enc: Encoding | None = None) -> str:
    dst = dst or src.rstrip("/") + "_prepared"
    if not (Path(dst) / "annotations" / "train.csv").is_file() or not any(
        Path(dst, "train").rglob("*.mp4")
    ):
        print(f"a2video prepare {src} -> {dst}", flush=True)
    report = prepare_dataset(src, dst, "kinetics", enc, progress=False)  # resumes: quick if done
    if report.encoded:
        print(f"prepared {report.encoded} videos", flush=True)
    return dst


def bench_loading(args) -> dict:
    """Clips/s per core of each loading variant, interleaved per video (one process)."""
    root = ensure_dataset(args.root, args.classes, args.per_class, args.duration, encoding="web")
    prepared = ensure_prepared(root, args.prepared, Encoding(frame_step=args.frame_step))
    spec = _spec(args)
    records, fast_records = train_records(root), train_records(prepared)
    assert [Path(r.path).stem for r in records] == [Path(r.path).stem for r in fast_records]
    k = args.repeat
    out: dict = {"dataset": root, "prepared": prepared, "repeat": k, "variants": {}}
    for decoder_name in args.decoders:
        decoder = get_decoder(decoder_name)
        step = args.frame_step
        variants = {
            "plain float (before)": (VideoClipDataset(records, "train", spec, decoder_name), 1),
            "plain uint8": (VideoClipDataset(records, "train", spec, decoder_name, uint8=True), 1),
            f"repeated K={k}": (
                VideoClipDataset(records, "train", spec, decoder_name, repeat=k, uint8=True),
                k,
            ),
            "prepared": (
                VideoClipDataset(
                    fast_records, "train", spec, decoder_name, uint8=True, frame_step=step
                ),
                1,
            ),
            f"prepared K={k}": (
                VideoClipDataset(
                    fast_records,
                    "train",
                    spec,
                    decoder_name,
                    repeat=k,
                    uint8=True,
                    frame_step=step,
                ),
                k,
            ),
        }
        seconds = {"bare decoder": 0.0, **dict.fromkeys(variants, 0.0)}
        clips = dict.fromkeys(seconds, 0)
        n = len(records)
        for rnd in range(args.repeats):
            for i in range(n):
                key = (i, rnd)
                # bare: the plain variant's own frame indices, no dataset around them
                t0 = time.perf_counter()
                reader = decoder.open(records[i].path)
                idx = sampling.train_clip(
                    reader.num_frames, spec.frames, spec.stride, sample_rng(0, rnd, i)
                )
                reader.get_frames(idx)
                reader.close()
                seconds["bare decoder"] += time.perf_counter() - t0
                clips["bare decoder"] += 1
                for name, (ds, per) in variants.items():
                    t0 = time.perf_counter()
                    ds[key]
                    seconds[name] += time.perf_counter() - t0
                    clips[name] += per
        rates = {name: clips[name] / seconds[name] for name in seconds}
        plain = rates["plain uint8"]
        res = {}
        for name in seconds:
            res[name] = {
                "clips_per_s_per_core": round(rates[name], 2),
                "ms_per_clip": round(1000 * seconds[name] / clips[name], 1),
                "vs_plain": round(rates[name] / plain, 2),
                "cores_per_gpu": {str(g): math.ceil(g / rates[name]) for g in args.gpu_rate},
            }
        out["variants"][decoder_name] = res
        print(decoder_name, json.dumps(res, indent=1), flush=True)
    return {"loading": out, "spec": spec.as_dict(), "gpu_rates": args.gpu_rate}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


def bench_psnr(args) -> dict:
    """PSNR of every ``--every``-th frame of the prepared copy against the original's."""
    from a2video.data.prepare import read_frame_step
    from a2video.data.video import PyAVReader

    root = ensure_dataset(args.root, args.classes, args.per_class, args.duration, encoding="web")
    prepared = ensure_prepared(root, args.prepared, Encoding(frame_step=args.frame_step))
    step = read_frame_step(prepared)
    values = []
    for a, b in zip(train_records(root), train_records(prepared), strict=True):
        src, dst = PyAVReader(a.path), PyAVReader(b.path)
        idx = list(range(0, dst.num_frames, args.every))
        x = src.get_frames([min(i * step, src.num_frames - 1) for i in idx])
        y = dst.get_frames(idx)
        if x.shape != y.shape:  # the copy was downscaled: compare at its size
            x = transforms.to_tchw(x)
            x = transforms.short_side_resize(x, min(y.shape[1:3])).permute(0, 2, 3, 1)
        values.append(psnr(x.numpy(), y.numpy()))
        src.close(), dst.close()
    res = {
        "videos": len(values),
        "psnr_db_mean": round(float(np.mean(values)), 2),
        "psnr_db_min": round(float(np.min(values)), 2),
    }
    print(json.dumps(res), flush=True)
    return {"psnr": res, "prepared": prepared}


def bench_sweep(args) -> dict:
    """K=1 clips/s per core of a few prepare encodings, interleaved, on ``--videos`` videos."""
    root = ensure_dataset(args.root, args.classes, args.per_class, args.duration, encoding="web")
    records = train_records(root)[: args.videos]
    spec = _spec(args)
    variants = {
        "original (keyint 250, B-frames)": None,
        "gop 16 fastdecode (default)": Encoding(),
        "gop 8 fastdecode": Encoding(gop=8),
        "gop 32 fastdecode": Encoding(gop=32),
        "gop 16, CABAC+deblock": Encoding(fastdecode=False),
        "gop 16 fastdecode, 3 B-frames": Encoding(bframes=3),
        "gop 16 fastdecode, frame step 2": Encoding(frame_step=2),
    }
    work = Path(args.sweep_dir)
    datasets = {}
    for name, enc in variants.items():
        if enc is None:
            datasets[name] = VideoClipDataset(records, "train", spec, args.decoders[0], uint8=True)
            continue
        folder = work / "_".join(f"{k}{v}" for k, v in enc.__dict__.items())
        folder.mkdir(parents=True, exist_ok=True)
        from a2video.data.prepare import transcode

        recs = []
        for r in records:
            out = folder / (Path(r.path).stem + ".mp4")
            if not out.is_file():
                transcode(r.path, str(out), enc)
            recs.append(type(r)(path=str(out), label=r.label))
        datasets[name] = VideoClipDataset(
            recs, "train", spec, args.decoders[0], uint8=True, frame_step=enc.frame_step
        )
    seconds = dict.fromkeys(datasets, 0.0)
    sizes = {}
    for name, ds in datasets.items():
        sizes[name] = sum(os.path.getsize(r.path) for r in ds.records)
    for rnd in range(args.repeats):
        for i in range(len(records)):
            for name, ds in datasets.items():
                t0 = time.perf_counter()
                ds[(i, rnd)]
                seconds[name] += time.perf_counter() - t0
    n = args.repeats * len(records)
    base = n / seconds["original (keyint 250, B-frames)"]
    res = {
        name: {
            "clips_per_s_per_core": round(n / t, 2),
            "vs_original": round(n / t / base, 2),
            "mb": round(sizes[name] / 1e6, 2),
        }
        for name, t in seconds.items()
    }
    print(json.dumps(res, indent=1), flush=True)
    return {"sweep": res, "decoder": args.decoders[0], "videos": len(records)}


def bench_frame_steps(args) -> dict:
    """Clips/s per core of `a2video prepare` copies with each ``--steps`` frame step, at K=1
    and K=``--repeat``, interleaved per video in one process (the stride keeps its time span)."""
    root = ensure_dataset(args.root, args.classes, args.per_class, args.duration, encoding="web")
    spec = _spec(args)
    base = args.prepared or root.rstrip("/") + "_prepared"
    copies = {}
    for step in args.steps:
        dst = base if step == 1 else f"{base}_fs{step}"
        copies[step] = ensure_prepared(root, dst, Encoding(frame_step=step))
    records = {step: train_records(folder) for step, folder in copies.items()}
    datasets = {
        (step, k): VideoClipDataset(
            records[step], "train", spec, args.decoders[0], repeat=k, uint8=True, frame_step=step
        )
        for step in args.steps
        for k in sorted({1, args.repeat})
    }
    seconds, clips = dict.fromkeys(datasets, 0.0), dict.fromkeys(datasets, 0)
    for rnd in range(args.repeats):
        for i in range(len(records[args.steps[0]])):
            for (step, k), ds in datasets.items():
                t0 = time.perf_counter()
                ds[(i, rnd)]
                seconds[(step, k)] += time.perf_counter() - t0
                clips[(step, k)] += k
    first = args.steps[0]
    res = {
        f"frame_step {step}, K={k}": {
            "clips_per_s_per_core": round(clips[(step, k)] / seconds[(step, k)], 2),
            "vs_frame_step_1": round(
                clips[(step, k)] / seconds[(step, k)] * seconds[(first, k)] / clips[(first, k)], 2
            ),
            "mb": round(sum(os.path.getsize(r.path) for r in records[step]) / 1e6, 2),
        }
        for step, k in datasets
    }
    print(json.dumps(res, indent=1), flush=True)
    return {"frame_steps": res, "decoder": args.decoders[0], "videos": len(records[first])}


def bench_loader(args) -> dict:
    """Clips/s per core of the Kinetics DataModule's train loader in one process
    (``num_workers: 0``: decoding, transforms and the batch's collate, all a worker does), on
    the prepared copy with ``repeat_clips: --repeat``, batches of ``--batch-size`` clips."""
    root = ensure_dataset(args.root, args.classes, args.per_class, args.duration, encoding="web")
    prepared = ensure_prepared(root, args.prepared, Encoding(frame_step=args.frame_step))
    from a2video.data import KineticsDataModule

    spec = _spec(args)
    dm = KineticsDataModule(
        prepared,
        frames=spec.frames,
        stride=spec.stride,
        train_scale=spec.train_scale,
        crop_size=spec.crop_size,
        test_scale=spec.test_scale,
        batch_size=args.batch_size,
        repeat_clips=args.repeat,
        num_workers=0,
        decoder=args.decoders[0],
    )
    loader = dm.train_dataloader()
    rates = []
    for epoch in range(args.repeats):
        loader.sampler.set_epoch(epoch)
        clips, t0 = 0, time.perf_counter()
        for batch in loader:
            clips += batch["video"].shape[0]
        rates.append(clips / (time.perf_counter() - t0))
    layout = (
        "channels_last_3d"
        if batch["video"].is_contiguous(memory_format=torch.channels_last_3d)
        else "contiguous"
    )
    res = {"clips_per_s_per_core": [round(r, 2) for r in rates], "batch_layout": layout}
    print(json.dumps(res, indent=1), flush=True)
    return {"loader": res, "prepared": prepared, "decoder": args.decoders[0]}


# --------------------------------------------------------------------------- throughput
def bench_throughput(args) -> dict:
    root = ensure_dataset(args.root, args.classes, args.per_class, args.duration)
    records = train_records(root)
    spec = ClipSpec(
        frames=args.frames,
        stride=args.stride,
        train_scale=(args.scale_min, args.scale_max),
        crop_size=args.crop,
        test_scale=args.scale_min,
    )
    results = {}
    for decoder_name in args.decoders:
        ds = VideoClipDataset(records, "train", spec, decoder_name, seed=0)
        decoder = get_decoder(decoder_name)
        keys = [(i % len(records), i // len(records)) for i in range(args.samples)]
        # the indices the dataset will use, replayed for the bare decoder
        plan = []
        for index, epoch in keys:
            reader = decoder.open(records[index].path)
            n = reader.num_frames
            reader.close()
            rng = sample_rng(0, epoch, index)
            plan.append(
                (records[index].path, sampling.train_clip(n, spec.frames, spec.stride, rng))
            )
        # Interleaved per sample (bare, then dataset, same video): load drift on a shared
        # machine hits both sides alike. Per-sample times summed over all repeats.
        bare_t, ds_t = 0.0, 0.0
        for _ in range(args.repeats):
            for (path, indices), key in zip(plan, keys, strict=True):
                t0 = time.perf_counter()
                reader = decoder.open(path)
                reader.get_frames(indices)
                reader.close()
                t1 = time.perf_counter()
                ds[key]
                t2 = time.perf_counter()
                bare_t, ds_t = bare_t + (t1 - t0), ds_t + (t2 - t1)
        n = len(keys) * args.repeats
        best_bare, best_ds = n / bare_t, n / ds_t
        results[decoder_name] = {
            "bare_clips_per_s": round(best_bare, 2),
            "dataset_clips_per_s": round(best_ds, 2),
            "ratio": round(best_ds / best_bare, 3),
        }
        print(decoder_name, results[decoder_name], flush=True)
    return {"throughput": results, "samples": args.samples, "spec": spec.as_dict()}


# --------------------------------------------------------------------------- multi-view
def bench_multiview(args) -> dict:
    root = ensure_dataset(args.root, args.classes, args.per_class, args.duration)
    records = train_records(root)[: args.videos]
    spec = ClipSpec(
        frames=args.frames,
        stride=args.stride,
        crop_size=args.crop,
        test_scale=args.scale_min,
        train_scale=(args.scale_min, args.scale_min),
        num_clips=args.clips,
        num_crops=args.crops,
    )
    results = {}
    for decoder_name in args.decoders:
        ds = VideoClipDataset(records, "test", spec, decoder_name)
        decoder = get_decoder(decoder_name)

        def per_view(record, decoder=decoder):
            reader = decoder.open(record.path)
            clips = sampling.multi_clip(reader.num_frames, spec.frames, spec.stride, spec.num_clips)
            reader.close()
            views = []
            for clip in clips:
                for s in range(spec.num_crops):
                    reader = decoder.open(record.path)  # each view on its own: open + decode
                    x = transforms.short_side_resize(
                        transforms.to_tchw(reader.get_frames(clip)), spec.test_scale
                    )
                    reader.close()
                    crop = transforms.three_crops(x, spec.crop_size, spec.num_crops)[s]
                    views.append(transforms.normalize(crop, spec.mean, spec.std))
            return torch.stack(views)

        once_best, each_best = float("inf"), float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for i in range(len(records)):
                once = ds[i]["video"]
            once_best = min(once_best, (time.perf_counter() - t0) / len(records))
            t0 = time.perf_counter()
            for r in records:
                each = per_view(r)
            each_best = min(each_best, (time.perf_counter() - t0) / len(records))
        assert torch.allclose(once, each, atol=1e-5), "decode-once views differ from per-view"
        results[decoder_name] = {
            "decode_once_s_per_video": round(once_best, 4),
            "per_view_s_per_video": round(each_best, 4),
            "speedup": round(each_best / once_best, 2),
        }
        print(decoder_name, results[decoder_name], flush=True)
    return {"multiview": results, "views": spec.num_views, "spec": spec.as_dict()}


# --------------------------------------------------------------------------- broken epoch
class _RssDataset(torch.utils.data.Dataset):
    """Adds the worker's id and RSS (bytes) to every sample."""

    def __init__(self, inner):
        self.inner = inner

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, key):
        import psutil

        sample = self.inner[key]
        info = torch.utils.data.get_worker_info()
        sample["worker"] = info.id if info else -1
        sample["rss"] = psutil.Process().memory_info().rss
        return sample


def run_broken_epochs(
    root: str,
    epochs: int,
    workers: int,
    frames: int = 4,
    stride: int = 2,
    crop: int = 32,
    batch_size: int = 4,
    max_bad_fraction: float = 0.2,
    decoder: str = "auto",
) -> dict:
    """Train epochs over ``root`` with persistent workers; per-worker RSS per epoch."""
    from a2video.data import KineticsDataModule

    dm = KineticsDataModule(
        root,
        frames=frames,
        stride=stride,
        train_scale=(crop + 8, crop + 16),
        crop_size=crop,
        test_scale=crop + 8,
        batch_size=batch_size,
        num_workers=workers,
        persistent_workers=workers > 0,
        max_bad_fraction=max_bad_fraction,
        decoder=decoder,
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    loader = torch.utils.data.DataLoader(
        _RssDataset(loader.dataset),
        batch_size=batch_size,
        sampler=loader.sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        worker_init_fn=loader.worker_init_fn,
    )
    per_epoch = []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        dm.monitor.reset_epoch("train")
        rss: dict[int, list[int]] = {}
        for batch in loader:
            dm.count_batch(batch, "train")
            for w, r in zip(batch["worker"].tolist(), batch["rss"].tolist(), strict=True):
                rss.setdefault(w, []).append(r)
        c = dm.data_counters("train")
        per_epoch.append(
            {
                "epoch": epoch,
                **c,
                "rss_mb_end": {w: round(v[-1] / 2**20, 1) for w, v in sorted(rss.items())},
                "rss_mb_peak": {w: round(max(v) / 2**20, 1) for w, v in sorted(rss.items())},
            }
        )
        print(json.dumps(per_epoch[-1]), flush=True)
    first = per_epoch[min(1, epochs - 1)]["rss_mb_end"]  # after warm-up
    last = per_epoch[-1]["rss_mb_end"]
    growth = max((last[w] - first[w] for w in last if w in first), default=0.0)
    return {
        "epochs": per_epoch,
        "videos": len(dm.datasets["train"]),
        "bad_files": dm.data_counters("train")["bad_files"],
        "rss_growth_mb_after_first_epoch": round(growth, 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def bench_broken(args) -> dict:
    root = ensure_dataset(
        args.root, args.classes, args.per_class, args.duration, broken=0.10, max_side=args.max_side
    )
    return {
        "broken_epoch": run_broken_epochs(root, args.epochs, args.workers, decoder=args.decoders[0])
    }


def plot(throughput_json: str, multiview_json: str, out: str) -> None:
    """Two bar charts: clips/s bare vs dataset, and s/video decode-once vs per-view."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = json.loads(Path(throughput_json).read_text())["throughput"]
    m = json.loads(Path(multiview_json).read_text())["multiview"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    names = list(t)
    x = np.arange(len(names))
    a.bar(x - 0.2, [t[n]["bare_clips_per_s"] for n in names], 0.4, label="bare decoder")
    a.bar(x + 0.2, [t[n]["dataset_clips_per_s"] for n in names], 0.4, label="dataset (train clip)")
    for i, n in enumerate(names):
        a.text(
            i + 0.2, t[n]["dataset_clips_per_s"], f"{t[n]['ratio']:.2f}x", ha="center", va="bottom"
        )
    a.set_xticks(x, names)
    a.set_ylabel("clips / s, one worker")
    a.legend(fontsize=8, loc="lower right")
    names = list(m)
    x = np.arange(len(names))
    b.bar(x - 0.2, [m[n]["per_view_s_per_video"] for n in names], 0.4, label="each view alone")
    b.bar(x + 0.2, [m[n]["decode_once_s_per_video"] for n in names], 0.4, label="decode once")
    for i, n in enumerate(names):
        b.text(
            i + 0.2,
            m[n]["decode_once_s_per_video"],
            f"{m[n]['speedup']:.1f}x faster",
            ha="center",
            va="bottom",
        )
    b.set_xticks(x, names)
    b.set_ylabel("s / video, 10x3 views")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "plot":
        plot(sys.argv[2], sys.argv[3], sys.argv[4])
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    names = ("loading", "psnr", "sweep", "frame-steps", "loader", "throughput", "multiview")
    names += ("broken-epoch",)
    for name in names:
        p = sub.add_parser(name)
        p.add_argument("--root", required=True, help="dataset folder (synthesized if empty)")
        p.add_argument("--classes", type=int, default=8)
        p.add_argument("--per-class", type=int, default=3)
        web = name in ("loading", "psnr", "sweep", "frame-steps", "loader")
        p.add_argument(
            "--duration", type=float, nargs=2, default=(10.0, 10.0) if web else (6.0, 10.0)
        )
        p.add_argument("--prepared", default=None, help="prepared copy (default ROOT_prepared)")
        p.add_argument("--frame-step", type=int, default=1, help="prepare --frame-step")
        p.add_argument("--repeat", type=int, default=4, help="K of the repeated variant")
        p.add_argument(
            "--gpu-rate",
            type=float,
            nargs="+",
            default=[340.0, 490.0],
            help="GPU training clips/s to feed (a2net_r50 bf16 on an H200: 340 eager, "
            "490 compiled)",
        )
        p.add_argument("--every", type=int, default=10, help="psnr: every N-th frame")
        p.add_argument("--sweep-dir", default="/tmp/bench_sweep")
        p.add_argument(
            "--steps", type=int, nargs="+", default=[1, 2, 4, 8], help="frame-steps: the steps"
        )
        p.add_argument("--decoders", nargs="+", default=["decord", "pyav"])
        p.add_argument("--frames", type=int, default=8)
        p.add_argument("--stride", type=int, default=8)
        p.add_argument("--crop", type=int, default=224)
        p.add_argument("--scale-min", type=int, default=256)
        p.add_argument("--scale-max", type=int, default=320)
        p.add_argument("--samples", type=int, default=48)
        p.add_argument("--videos", type=int, default=6)
        p.add_argument("--clips", type=int, default=10)
        p.add_argument("--crops", type=int, default=3)
        p.add_argument("--repeats", type=int, default=3)
        p.add_argument("--batch-size", type=int, default=32, help="loader: clips per batch")
        p.add_argument("--epochs", type=int, default=4)
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--max-side", type=int, default=None)
        p.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    fn = {
        "loading": bench_loading,
        "psnr": bench_psnr,
        "sweep": bench_sweep,
        "frame-steps": bench_frame_steps,
        "loader": bench_loader,
        "throughput": bench_throughput,
        "multiview": bench_multiview,
        "broken-epoch": bench_broken,
    }
    result = {"machine": machine(), "command": " ".join(sys.argv), **fn[args.cmd](args)}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
