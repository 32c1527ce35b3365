"""The data path at Kinetics scale: startup before the first batch, and DataLoader worker memory.

A Kinetics-400-sized split costs nothing to fake: ``make`` writes ``ROOT/annotations/train.csv``
(``--rows`` rows over 400 classes, a few % listed but absent, as in a real download) and a
``train/<label>/<id>_<start>_<end>.mp4`` tree of symbolic links to a handful of tiny real videos
(``a2video synth``), so every listed video exists for ``os.scandir`` and the decoders alike.

    python benchmarks/bench_scale.py make /tmp/k300 --rows 300000
    python benchmarks/bench_scale.py startup /tmp/k300           # each step before batch 1
    python benchmarks/bench_scale.py memory /tmp/k300 --workers 4 # workers' USS/PSS over an epoch
    python benchmarks/bench_scale.py setup /tmp/k300 --procs 2 --latency-ms 1  # DDP ranks' setup

``setup`` starts ``--procs`` processes as the ranks of one node: each builds the
``KineticsDataModule``, local rank 0 runs ``prepare_data`` while the others wait (Lightning's
barrier), then every rank runs ``setup("fit")``. It reports per rank the seconds of each and its
file-system calls (``os.scandir``, the entries read from them, ``os.stat``/``os.lstat``, counted
by wrapping them); ``--latency-ms L`` adds L ms to each such call and to every 128 entries
read (an uncached network file system's round trips: a READDIR reply holds ~100-200 entries),
``--no-cache`` runs with ``listing_cache=False`` (every rank lists the folders, as before). The
cache lives in a fresh temporary folder per run (``--tmp`` to keep one across runs).

``memory`` runs the real ``KineticsDataModule`` train loader (``persistent_workers=True``,
batches of 32) over one whole shuffled epoch with the decode replaced by a constant clip (the
record of every sample is still read, as ``__getitem__`` reads it: ``record.path`` and
``record.label``), and reads each worker's ``/proc/<pid>/smaps_rollup`` after its first batch
and at the epoch's end: what a worker's private memory (USS = Private_Clean + Private_Dirty)
grows by as it touches the split's records. ``--json`` writes the numbers.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import string
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import cpu_model


# --------------------------------------------------------------------------- make
def make(root: Path, rows: int, classes: int, missing: float, seed: int) -> None:
    """A fake Kinetics split of ``rows`` rows whose videos are links to a few tiny real ones."""
    from a2video.data.synthetic import synthesize

    rng = random.Random(seed)
    src = root / "_videos"
    if not src.is_dir():
        synthesize(src, "kinetics", classes=4, videos_per_class=3, duration=(1.0, 2.0),
                   max_side=64, seed=seed, missing=0.0, progress=False)  # fmt: skip
    videos = sorted(str(p) for p in (src / "train").rglob("*.mp4"))
    names = [f"class {i:03d} {''.join(rng.choices(string.ascii_lowercase, k=8))}"
             for i in range(classes)]  # fmt: skip
    alphabet = string.ascii_letters + string.digits + "-_"
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for label in names:
        (root / "train" / label).mkdir(parents=True, exist_ok=True)
    lines = ["label,youtube_id,time_start,time_end,split"]
    made = 0
    for i in range(rows):
        label = names[i % classes]
        yid = "".join(rng.choices(alphabet, k=11))
        start = rng.randrange(0, 300)
        lines.append(f"{label},{yid},{start},{start + 10},train")
        if rng.random() < missing:
            continue  # listed, absent (gone from YouTube)
        name = f"{yid}_{start:06d}_{start + 10:06d}.mp4"
        os.symlink(videos[i % len(videos)], root / "train" / label / name)
        made += 1
    (root / "annotations" / "train.csv").write_text("\n".join(lines) + "\n")
    # a val split of its own videos in val/ (flat, as CVDF extracts it): setup("fit") reads it
    val = [lines[0].replace(",train", ",val")]
    (root / "val").mkdir(exist_ok=True)
    for i in range(min(rows // 15, 20_000)):  # Kinetics-400: 20k val videos for 240k train
        yid = "".join(rng.choices(alphabet, k=11))
        val.append(f"{names[i % classes]},{yid},0,10,val")
        os.symlink(videos[i % len(videos)], root / "val" / f"{yid}_000000_000010.mp4")
    (root / "annotations" / "val.csv").write_text("\n".join(val) + "\n")
    print(f"{root}: {rows} rows, {made} linked videos, {classes} classes")


# --------------------------------------------------------------------------- startup
class Timer:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def __call__(self, name: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.times[name] = time.perf_counter() - t0
        print(f"  {name:<44s} {self.times[name]:8.3f} s", flush=True)
        return out


def startup(root: Path, arch: str) -> dict:
    """Each step between ``KineticsDataModule(...)`` and the first train batch, timed alone."""
    from a2video.data import annotations as ann
    from a2video.data.datamodules import KineticsDataModule
    from a2video.data.datasets import ShardedSampler
    from a2video.data.prepare import records_prepared
    from a2video.models import check_clip_size
    from a2video.training import resume

    t = Timer()
    csv_path = root / "annotations" / "train.csv"
    video_dir = root / "train"
    rows = t("read the CSV's rows", ann._read_kinetics_rows, csv_path)[0]
    t("index_videos(train/)", ann.index_videos, video_dir)
    t("kinetics_replacements", ann.kinetics_replacements, root)
    classes = t("read_kinetics_classes (DataModule __init__)", ann.read_kinetics_classes, csv_path)
    split = t("read_kinetics_csv (the whole split)", ann.read_kinetics_csv, csv_path, video_dir,
              classes)  # fmt: skip
    t("records_prepared", records_prepared, [r.path for r in split.records])
    kw = dict(frames=4, stride=2, train_scale=(40, 48), crop_size=32, test_scale=40,
              num_clips=1, num_crops=1, batch_size=32, num_workers=2, seed=0)  # fmt: skip
    dm = t("KineticsDataModule(...)", KineticsDataModule, str(root), **kw)
    t("dm.setup('fit') (train + val)", dm.setup, "fit")
    data = type("D", (), {"datasets": dm.datasets, "data_root": dm.data_root})()
    resume._DIGESTED.clear()
    t("resume._train_videos_digest", resume._train_videos_digest, data)
    n = len(dm.datasets["train"])
    sampler = ShardedSampler(n, shuffle=True, pad=True, rank=0, world_size=2)
    t("ShardedSampler(...).indices(), 1 of 2 ranks", sampler.indices)
    t(f"check_clip_size({arch})", check_clip_size, arch, 4, 32, num_classes=len(classes))
    loader = t("dm.train_dataloader()", dm.train_dataloader)
    t("first batch (2 workers start)", lambda: next(iter(loader)))
    return {"rows": len(rows), "records": n, "seconds": t.times}


# --------------------------------------------------------------------------- memory
def rollup(pid: int) -> dict[str, int]:
    """kB fields of /proc/<pid>/smaps_rollup (Rss, Pss, Private_Dirty, ...)."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    out["USS"] = out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)
    return out


def children(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as fh:
            found += [int(p) for p in fh.read().split()]
    return sorted(found)


def memory(root: Path, workers: int, batch: int, epochs: int) -> dict:
    import torch

    from a2video.data.datamodules import KineticsDataModule
    from a2video.data.datasets import VideoClipDataset

    clip = torch.zeros(3, 4, 32, 32, dtype=torch.uint8)

    def constant_clip(self, record, rng):
        # what the real _train_clip reads of the record before decoding: its path
        if not isinstance(record.path, str):
            raise TypeError(record.path)
        return clip

    VideoClipDataset._train_clip = constant_clip
    kw = dict(frames=4, stride=2, train_scale=(40, 48), crop_size=32, test_scale=40,
              num_clips=1, num_crops=1, batch_size=batch, num_workers=workers, seed=0,
              persistent_workers=True, pin_memory=False, batch_ring=False)  # fmt: skip
    gc.collect()
    base = rollup(os.getpid())
    dm = KineticsDataModule(str(root), **kw)
    dm.setup("fit")
    gc.collect()
    after_setup = rollup(os.getpid())
    main_mb = (after_setup["Rss"] - base["Rss"]) / 1024
    n = len(dm.datasets["train"])
    print(f"  {n} train records; training process: +{main_mb:.1f} MB RSS for the DataModule's "
          f"setup('fit')", flush=True)  # fmt: skip
    loader = dm.train_dataloader()
    result = {"records": n, "main_setup_rss_mb": main_mb, "epochs": []}
    t0 = time.perf_counter()
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        start = None
        count = labels = 0
        for batch in loader:
            count += 1
            labels += int(batch["label"].sum())
            if start is None:
                pids = children(os.getpid())
                start = {p: rollup(p) for p in pids}
        end = {p: rollup(p) for p in pids if os.path.exists(f"/proc/{p}")}
        rows = []
        for p in pids:
            a, b = start[p], end.get(p, start[p])
            rows.append({"pid": p, "uss_start_mb": a["USS"] / 1024,
                         "uss_end_mb": b["USS"] / 1024, "pss_start_mb": a["Pss"] / 1024,
                         "pss_end_mb": b["Pss"] / 1024})  # fmt: skip
            print(f"  epoch {epoch} worker {p}: USS {a['USS'] / 1024:7.1f} -> "
                  f"{b['USS'] / 1024:7.1f} MB, PSS {a['Pss'] / 1024:7.1f} -> "
                  f"{b['Pss'] / 1024:7.1f} MB", flush=True)  # fmt: skip
        result["epochs"].append({"batches": count, "workers": rows,
                                 "seconds": time.perf_counter() - t0})  # fmt: skip
    main = rollup(os.getpid())
    result["main_end"] = {"rss_mb": main["Rss"] / 1024, "uss_mb": main["USS"] / 1024}
    return result


# --------------------------------------------------------------------------- setup (DDP ranks)
class FsCalls:
    """Count (and with ``latency`` slow down) this process's folder listings and stats."""

    def __init__(self, latency: float) -> None:
        self.latency, self.counts = latency, {"scandir": 0, "entries": 0, "stat": 0}
        self.scandir, self.stat, self.lstat = os.scandir, os.stat, os.lstat
        os.scandir, os.stat, os.lstat = self._scandir, self._stat, self._lstat

    def _wait(self) -> None:
        if self.latency:
            time.sleep(self.latency)

    def _stat(self, *args, **kwargs):
        self.counts["stat"] += 1
        self._wait()
        return self.stat(*args, **kwargs)

    def _lstat(self, *args, **kwargs):
        self.counts["stat"] += 1
        self._wait()
        return self.lstat(*args, **kwargs)

    def _scandir(self, *args, **kwargs):
        self.counts["scandir"] += 1
        self._wait()
        return _Entries(self, self.scandir(*args, **kwargs))


class _Entries:
    """An ``os.scandir`` iterator that counts its entries (a round trip per 128 of them)."""

    def __init__(self, calls: FsCalls, it) -> None:
        self.calls, self.it = calls, it

    def __iter__(self):
        return self

    def __next__(self):
        entry = next(self.it)
        self.calls.counts["entries"] += 1
        if self.calls.counts["entries"] % 128 == 0:
            self.calls._wait()
        return entry

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.it.close()

    def close(self) -> None:
        self.it.close()


def _rank(root: Path, rank: int, cache: bool, latency: float, barrier, results) -> None:
    import logging

    from a2video.data.datamodules import KineticsDataModule

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank))  # rank 0 alone logs
    logging.basicConfig(level=logging.WARNING)
    kw = dict(frames=4, stride=2, train_scale=(40, 48), crop_size=32, test_scale=40,
              num_clips=1, num_crops=1, batch_size=32, num_workers=0, seed=0)  # fmt: skip
    dm = KineticsDataModule(str(root), listing_cache=cache, **kw)
    calls = FsCalls(latency / 1000)
    barrier.wait()
    t0 = time.perf_counter()
    if rank == 0:
        dm.prepare_data()
    prepare = time.perf_counter() - t0
    barrier.wait()  # Lightning's barrier after prepare_data
    prepared = dict(calls.counts)
    t0 = time.perf_counter()
    dm.setup("fit")
    seconds = time.perf_counter() - t0
    setup = {k: v - prepared[k] for k, v in calls.counts.items()}
    results.put({"rank": rank, "prepare_data": prepare, "prepare_calls": prepared,
                 "setup": seconds, "setup_calls": setup,
                 "records": [len(dm.datasets[s]) for s in ("train", "val")]})  # fmt: skip


def ranks_setup(root: Path, procs: int, cache: bool, latency: float, tmp: Path | None) -> dict:
    """``procs`` processes as one node's ranks: prepare_data on rank 0, then setup everywhere."""
    import multiprocessing as mp
    import tempfile

    ctx = mp.get_context("fork")
    with tempfile.TemporaryDirectory() as fresh:
        tempfile.tempdir = str(tmp or fresh)  # where the listing cache goes
        barrier, results = ctx.Barrier(procs), ctx.Queue()
        workers = [ctx.Process(target=_rank, args=(root, r, cache, latency, barrier, results))
                   for r in range(procs)]  # fmt: skip
        for w in workers:
            w.start()
        rows = sorted((results.get() for _ in workers), key=lambda r: r["rank"])
        for w in workers:
            w.join()
        tempfile.tempdir = None
    for r in rows:
        c, p = r["setup_calls"], r["prepare_calls"]
        print(f"  rank {r['rank']}: prepare_data {r['prepare_data']:6.2f} s ({p['scandir']} "
              f"scandir, {p['entries']} entries, {p['stat']} stat) | setup('fit') "
              f"{r['setup']:6.2f} s ({c['scandir']} scandir, {c['entries']} entries, "
              f"{c['stat']} stat) | records {r['records']}", flush=True)  # fmt: skip
    return {"procs": procs, "cache": cache, "latency_ms": latency, "ranks": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("make")
    p.add_argument("root", type=Path)
    p.add_argument("--rows", type=int, default=300_000)
    p.add_argument("--classes", type=int, default=400)
    p.add_argument("--missing", type=float, default=0.03)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("startup")
    p.add_argument("root", type=Path)
    p.add_argument("--arch", default="a2net_r50")
    p.add_argument("--repeat", type=int, default=1, help="runs; each step's best is reported")
    p.add_argument("--json", type=Path)
    p = sub.add_parser("memory")
    p.add_argument("root", type=Path)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--json", type=Path)
    p = sub.add_parser("setup")
    p.add_argument("root", type=Path)
    p.add_argument("--procs", type=int, default=2, help="ranks of the node")
    p.add_argument("--latency-ms", type=float, default=0.0, help="per listing, stat, 128 entries")
    p.add_argument("--no-cache", dest="cache", action="store_false", help="listing_cache=False")
    p.add_argument("--tmp", type=Path, help="the temporary folder (default: a fresh one)")
    p.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.cmd == "make":
        return make(args.root, args.rows, args.classes, args.missing, args.seed)
    print(f"{platform.node()}: {cpu_model()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}", flush=True)  # fmt: skip
    if args.cmd == "startup":
        runs = [startup(args.root, args.arch) for _ in range(args.repeat)]
        out = {
            **runs[0],
            "seconds": {k: min(r["seconds"][k] for r in runs) for k in runs[0]["seconds"]},
        }
        if args.repeat > 1:
            print(f"best of {args.repeat}:")
            for k, v in out["seconds"].items():
                print(f"  {k:<44s} {v:8.3f} s")
    elif args.cmd == "setup":
        out = ranks_setup(args.root, args.procs, args.cache, args.latency_ms, args.tmp)
    else:
        out = memory(args.root, args.workers, args.batch, args.epochs)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
