"""One sample's peak memory and decode time against the video's resolution.

``make`` writes three 10-second 30 fps H.264 videos with PyAV (a 3840x2160 phone video, a
1920x1080 and a 340x256 one, the size a Kinetics download is usually resized to) and a
checkpoint of ``a2net_tiny`` with the configs' clip spec (8x8 clips, 256/224 test scale/crop),
for ``a2video predict``. ``memory`` runs every case in a fresh Python process and reports the
peak RSS it adds (``resource.getrusage`` max RSS after the sample, less the RSS before it, with
torch, the decoders and the dataset already loaded). ``speed`` times the samples of the
340x256 video with each code tree given, in alternating processes (rounds interleaved), and
reports the medians and their ratios.

    python benchmarks/bench_sample_memory.py make /tmp/memvid
    PYTHONPATH=/work/main python benchmarks/bench_sample_memory.py memory /tmp/memvid
    python benchmarks/bench_sample_memory.py speed /tmp/memvid --trees /work/main /tmp/hmem

Cases: ``train`` (one clip), ``train4`` (``repeat=4`` clips from one decode), ``val`` (the
centre clip), ``test`` (10 clips x 3 crops), ``predict`` (``predict_videos``: the test views
and the network's forward, batch 16); each with decord and PyAV. Output float clips (the
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
    for name, (w, h) in VIDEOS.items():
        path = folder / f"{name}.mp4"
        if path.exists():
            continue
        tmp = path.with_suffix(".part.mp4")
        with av.open(str(tmp), "w") as container:
            stream = container.add_stream(
                "libx264", rate=Fraction(FPS), options={"preset": "ultrafast"}
            )
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.codec_context.gop_size = GOP
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
        mode = {"train4": "train", "test": "test", "val": "val"}.get(case, "train")
        ds = VideoClipDataset(records, mode, spec, decoder, repeat=4 if case == "train4" else 1)
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
    print(f"# {video}: {rounds} rounds x {repeats} samples per process, trees interleaved")
    print("| case | decoder | " + " | ".join(f"{t} ms/sample" for t in trees) + " | ratio |")
    print("|---|---|" + "---|" * (len(trees) + 1))
    for case in cases:
        for decoder in decoders:
            per = {t: [] for t in trees}
            for _ in range(rounds):
                for tree in trees:
                    r = _child(folder, video, case, decoder, repeats, tree)
                    per[tree].extend(r["seconds"][1:])  # the first sample warms the caches
            med = {t: statistics.median(v) * 1000 for t, v in per.items()}
            ratio = med[trees[-1]] / med[trees[0]]
            print(f"| {case} | {decoder} | " + " | ".join(f"{med[t]:.1f}" for t in trees)
                  + f" | {ratio:.3f} |", flush=True)  # fmt: skip


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
    elif args.cmd == "speed":
        speed(args.folder, args.trees, args.video, args.cases, args.decoders, args.rounds,
              args.repeats)  # fmt: skip
    else:
        r = one(Path(args.folder), args.video, args.case, args.decoder, int(args.repeats))
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
