"""One sample's peak memory and decode time against the video's resolution.

``make`` writes three 10-second 30 fps H.264 videos with PyAV (a 3840x2160 phone video, a
1920x1080 and a 340x256 one, the size a Kinetics download is usually resized to) and a
checkpoint of ``a2net_tiny`` with the configs' clip spec (8x8 clips, 256/224 test scale/crop),
for ``a2video predict``. ``memory`` runs every case in a fresh Python process and reports the
peak RSS it adds (``resource.getrusage`` max RSS after the sample, less the RSS before it, with
torch, the decoders and the dataset already loaded). ``speed`` times the samples of one video
(``--video``, default 340x256) with each code tree given, every process of a round (tree, case,
decoder) in turn, and reports the medians and their ratios.

    python benchmarks/bench_sample_memory.py make /tmp/memvid
    PYTHONPATH=/work/main python benchmarks/bench_sample_memory.py memory /tmp/memvid
    python benchmarks/bench_sample_memory.py speed /tmp/memvid --trees /work/main /tmp/hmem
    python benchmarks/bench_sample_memory.py workers /tmp/webset --trees /work/main /tmp/hmem

``make`` also writes each size download-like (``<size>-web.mp4``: x264 medium, crf 23, a
keyframe every 250 frames, B-frames, as ``a2video synth --encoding web``), for ``speed
--video``. ``workers`` runs the real ``KineticsDataModule`` train loader (4 persistent workers,
uint8 batches of 8) for some epochs over a dataset from ``a2video synth --encoding web`` with
each code tree, and reports each worker's memory (``/proc/<pid>/smaps_rollup``: RSS, PSS, USS)
after its first batch and at the end, and the loader's clips/s.

Cases: ``train`` (one clip), ``train4`` (``repeat=4`` clips from one decode), ``val`` (the
centre clip), ``test`` (10 clips x 3 crops), ``predict`` (``predict_videos``: the test views
and the network's forward, batch 16), ``test-whole`` (the test sample decoded whole, not in
chunks: ``speed`` only); each with decord and PyAV. Output float clips (the
dataset's default; the DataModules ask for uint8 ones, a quarter of the output).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

VIDEOS = {"4k": (3840, 2160), "1080p": (1920, 1080), "340x256": (340, 256)}
# name suffix -> x264 options and keyframe interval: the phone-like 1-s GOP, download-like
ENCODINGS = {"": ({"preset": "ultrafast"}, 30), "-web": ({"preset": "medium", "crf": "23"}, 250)}
CASES = ("train", "train4", "val", "test", "predict")
DECODERS = ("decord", "pyav")
FRAMES, FPS, GOP = 300, 30, 30  # 10 s, keyframe every second (phone cameras: 1-2 s)
SPEC = {"frames": 8, "stride": 8, "train_scale": (256, 320), "crop_size": 224,
        "test_scale": 256, "num_clips": 10, "num_crops": 3}  # fmt: skip


def _frame(k: int, w: int, h: int):
    import numpy as np

    y = np.arange(h, dtype=np.int32)[:, None]
    x = np.arange(w, dtype=np.int32)[None, :]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (x * 255 // w + 4 * k) & 255
    img[..., 1] = (y * 255 // h) & 255
    img[..., 2] = ((x // max(1, w // 16) + y // max(1, h // 9) + k // 5) % 2) * 200
    return img


def make(folder: Path) -> None:
    from fractions import Fraction

    import av

    folder.mkdir(parents=True, exist_ok=True)
    for suffix, (options, gop) in ENCODINGS.items():
        for name, (w, h) in VIDEOS.items():
            path = folder / f"{name}{suffix}.mp4"
            if path.exists():
                continue
            tmp = path.with_suffix(".part.mp4")
            with av.open(str(tmp), "w") as container:
                stream = container.add_stream("libx264", rate=Fraction(FPS), options=options)
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                stream.codec_context.gop_size = gop
                for k in range(FRAMES):
                    frame = av.VideoFrame.from_ndarray(_frame(k, w, h), format="rgb24")
                    for packet in stream.encode(frame.reformat(format="yuv420p")):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
            tmp.rename(path)
            print(f"wrote {path}", flush=True)
    ckpt = folder / "tiny.ckpt"
    if not ckpt.exists():
        import torch

        from a2video.data.datasets import ClipSpec
        from a2video.models import build_model

        net = build_model("a2net_tiny", num_classes=5)
        meta = {"arch": "a2net_tiny", "num_classes": 5, "clip_spec": ClipSpec(**SPEC).as_dict()}
        state = {f"net.{k}": v for k, v in net.state_dict().items()}
        torch.save({"state_dict": state, "a2video": meta}, ckpt)
        print(f"wrote {ckpt}", flush=True)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def one(folder: Path, video: str, case: str, decoder: str, repeats: int = 1) -> dict:
    """One case in this process: RSS before, peak RSS after, seconds per sample."""
    import torch

    from a2video.data.annotations import VideoRecord
    from a2video.data.datasets import ClipSpec, VideoClipDataset

    torch.set_num_threads(1)
    path = str(folder / f"{video}.mp4")
    records = [VideoRecord(path=path, label=0)]
    spec = ClipSpec(**SPEC)
    if case == "predict":
        from a2video.explore.predict import load_predictor, predict_videos

        predictor = load_predictor(folder / "tiny.ckpt")

        def run(i: int):
            (result,) = predict_videos(predictor, [path], decoder=decoder)
            assert result.error is None, result.error
    else:
        mode = {"train4": "train", "test-whole": "test"}.get(case, case)
        ds = VideoClipDataset(records, mode, spec, decoder, repeat=4 if case == "train4" else 1)
        if case == "test-whole":
            ds.chunk_bytes = None
        ds.decoder  # noqa: B018  (the decoder's library imported before the baseline)

        def run(i: int):
            sample = ds[(0, i)]
            assert sample["valid"] and not sample["failed"], sample["failed_reason"]

    base = _rss_mb()
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        run(i)
        times.append(time.perf_counter() - t0)
    peak = _rss_mb()
    return {"video": video, "case": case, "decoder": decoder, "base_mb": round(base, 1),
            "peak_mb": round(peak, 1), "added_mb": round(peak - base, 1),
            "seconds": [round(t, 4) for t in times]}  # fmt: skip


def _child(folder: Path, video: str, case: str, decoder: str, repeats: int, tree=None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    cmd = [sys.executable, __file__, "one", str(folder), video, case, decoder, str(repeats)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{cmd}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory(folder: Path, videos, cases, decoders) -> list[dict]:
    rows = []
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")  # fmt: skip
    print("| video | case | decoder | RSS before | peak RSS | added | s/sample |")
    print("|---|---|---|---|---|---|---|")
    for video in videos:
        for case in cases:
            for decoder in decoders:
                r = _child(folder, video, case, decoder, 1)
                rows.append(r)
                cells = [video, case, decoder, f"{r['base_mb']} MB", f"{r['peak_mb']} MB",
                         f"**{r['added_mb']} MB**", f"{r['seconds'][0]:.2f}"]  # fmt: skip
                print("| " + " | ".join(cells) + " |", flush=True)
    return rows


def speed(folder: Path, trees, video, cases, decoders, rounds: int, repeats: int) -> None:
    print(f"# {video}: {rounds} rounds x {repeats} samples per process, every process of a round "
          "(tree, case, decoder) in turn")  # fmt: skip
    print("| case | decoder | " + " | ".join(f"{t} ms/sample" for t in trees) + " | ratio |")
    print("|---|---|" + "---|" * (len(trees) + 1))
    per = {(c, d, t): [] for c in cases for d in decoders for t in trees}
    for _ in range(rounds):
        for case, decoder, tree in per:
            r = _child(folder, video, case, decoder, repeats, tree)
            per[case, decoder, tree].extend(r["seconds"][1:])  # the first warms the caches
    for case in cases:
        for decoder in decoders:
            med = {t: statistics.median(per[case, decoder, t]) * 1000 for t in trees}
            ratio = med[trees[-1]] / med[trees[0]]
            print(f"| {case} | {decoder} | " + " | ".join(f"{med[t]:.1f}" for t in trees)
                  + f" | {ratio:.3f} |", flush=True)  # fmt: skip


def _smaps_mb(pid: int) -> dict:
    """RSS, PSS and USS (private clean + dirty) of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0]) / 1024
    uss = fields["Private_Clean"] + fields["Private_Dirty"]
    return {"rss": round(fields["Rss"], 1), "pss": round(fields["Pss"], 1), "uss": round(uss, 1)}


def workers_one(root: Path, decoder: str, workers: int, epochs: int) -> dict:
    """The train loader of a ``KineticsDataModule`` on ``root`` for ``epochs`` epochs in this
    process: each worker's memory after the first batch and at the end, and clips/s."""
    import psutil
    import torch

    from a2video.data import KineticsDataModule

    torch.set_num_threads(1)
    dm = KineticsDataModule(
        data_root=str(root),
        decoder=decoder,
        num_workers=workers,
        batch_size=8,
        persistent_workers=True,
        pin_memory=False,
        seed=0,
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    first, clips, t0 = None, 0, None
    for _ in range(epochs):
        for batch in loader:
            clips += len(batch["label"])
            if first is None:
                pids = [p.pid for p in psutil.Process().children()]
                first = [_smaps_mb(pid) for pid in pids]
                clips, t0 = 0, time.perf_counter()  # clips/s after the workers started
    seconds = time.perf_counter() - t0
    last = [_smaps_mb(pid) for pid in pids]
    return {"decoder": decoder, "workers": workers, "samples": clips, "first": first,
            "last": last, "clips_per_s": round(clips / seconds, 2)}  # fmt: skip


def workers(root: Path, trees, decoders, workers: int, epochs: int, rounds: int) -> list[dict]:
    """:func:`workers_one` with each tree, rounds interleaved; prints the table."""
    print(f"# {platform.node()}, {os.cpu_count()} cores: {workers} workers, {epochs} epochs of "
          f"{root}, trees interleaved, {rounds} rounds")  # fmt: skip
    print("| decoder | tree | worker RSS: first → end | PSS | USS | clips/s |")
    print("|---|---|---|---|---|---|")
    rows = []
    for decoder in decoders:
        for _ in range(rounds):
            for tree in trees:
                env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(tree))
                cmd = [sys.executable, __file__, "workers-one", str(root), decoder,
                       str(workers), str(epochs)]  # fmt: skip
                out = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if out.returncode:
                    raise RuntimeError(f"{cmd}: {out.stderr[-2000:]}")
                r = json.loads(out.stdout.strip().splitlines()[-1]) | {"tree": str(tree)}
                rows.append(r)

                def span(key: str, r=r) -> str:
                    a = [w[key] for w in r["first"]]
                    b = [w[key] for w in r["last"]]
                    return f"{min(a):.0f}-{max(a):.0f} → {min(b):.0f}-{max(b):.0f} MB"

                print(f"| {decoder} | {tree} | {span('rss')} | {span('pss')} | {span('uss')} | "
                      f"{r['clips_per_s']} |", flush=True)  # fmt: skip
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("make").add_argument("folder", type=Path)
    m = sub.add_parser("memory")
    m.add_argument("folder", type=Path)
    m.add_argument("--videos", nargs="+", default=list(VIDEOS))
    m.add_argument("--cases", nargs="+", default=list(CASES))
    m.add_argument("--decoders", nargs="+", default=list(DECODERS))
    m.add_argument("--json", type=Path)
    s = sub.add_parser("speed")
    s.add_argument("folder", type=Path)
    s.add_argument("--trees", nargs="+", required=True, help="code trees, the baseline first")
    s.add_argument("--video", default="340x256")
    s.add_argument("--cases", nargs="+", default=["train", "train4", "test"])
    s.add_argument("--decoders", nargs="+", default=list(DECODERS))
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--repeats", type=int, default=6)
    w = sub.add_parser("workers")
    w.add_argument("root", type=Path, help="a dataset of `a2video synth --encoding web`")
    w.add_argument("--trees", nargs="+", required=True, help="code trees, the baseline first")
    w.add_argument("--decoders", nargs="+", default=list(DECODERS))
    w.add_argument("--workers", type=int, default=4)
    w.add_argument("--epochs", type=int, default=6)
    w.add_argument("--rounds", type=int, default=1)
    w.add_argument("--json", type=Path)
    wo = sub.add_parser("workers-one")
    for name in ("root", "decoder", "workers", "epochs"):
        wo.add_argument(name)
    o = sub.add_parser("one")
    for name in ("folder", "video", "case", "decoder", "repeats"):
        o.add_argument(name)
    args = p.parse_args(argv)
    if args.cmd == "make":
        make(args.folder)
    elif args.cmd == "memory":
        rows = memory(args.folder, args.videos, args.cases, args.decoders)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    elif args.cmd == "workers":
        rows = workers(args.root, args.trees, args.decoders, args.workers, args.epochs,
                       args.rounds)  # fmt: skip
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    elif args.cmd == "workers-one":
        r = workers_one(Path(args.root), args.decoder, int(args.workers), int(args.epochs))
        print(json.dumps(r))
    elif args.cmd == "speed":
        speed(args.folder, args.trees, args.video, args.cases, args.decoders, args.rounds,
              args.repeats)  # fmt: skip
    else:
        r = one(Path(args.folder), args.video, args.case, args.decoder, int(args.repeats))
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
