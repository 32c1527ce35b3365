"""``a2video prepare SRC DST --layout kinetics|ucf101``: re-encode a dataset for fast training."""

from __future__ import annotations

import argparse
import sys

HELP = "Re-encode a Kinetics/UCF-101 dataset (same layout) into a copy that decodes fast."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="dataset root (never modified)")
    parser.add_argument("dst", help="output root, outside SRC; rerun to resume")
    parser.add_argument("--layout", choices=["kinetics", "ucf101"], required=True)
    parser.add_argument(
        "--short-side", type=int, default=256, help="short side in pixels (never upscaled)"
    )
    parser.add_argument("--gop", type=int, default=16, help="keyframe interval in frames")
    parser.add_argument("--crf", type=int, default=23, help="x264 quality (lower: better)")
    parser.add_argument(
        "--frame-step",
        type=int,
        default=1,
        help="keep every N-th frame; configs keep their stride (in original frames), which "
        "must then be a multiple of N",
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
    parser.add_argument("--no-progress", action="store_true")


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def run(args: argparse.Namespace) -> int:
    from a2video.data.prepare import Encoding, PrepareError, prepare_dataset

    limits = {
        "--short-side": (args.short_side, 2, None),
        "--gop": (args.gop, 1, None),
        "--crf": (args.crf, 0, 51),  # x264's range
        "--frame-step": (args.frame_step, 1, None),
        "--workers": (args.workers, 1, None),
    }
    for flag, (value, low, high) in limits.items():
        if value is not None and (value < low or (high is not None and value > high)):
            span = f"{low}..{high}" if high is not None else f">= {low}"
            print(f"a2video prepare: error: {flag} {value}: must be {span}", file=sys.stderr)
            return 2
    enc = Encoding(
        short_side=args.short_side, gop=args.gop, crf=args.crf, frame_step=args.frame_step
    )
    try:
        report = prepare_dataset(
            args.src, args.dst, args.layout, enc, args.workers, progress=not args.no_progress
        )
    except PrepareError as err:
        print(f"a2video prepare: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the progress bar's line is ended; the encoders ignore Ctrl-C
        print(
            f"a2video prepare: interrupted; rerun the same command to resume into {args.dst}",
            file=sys.stderr,
        )
        return 130
    print(
        f"{report.videos} videos: {report.encoded} written, {report.skipped} already done; "
        f"videos on disk {_size(report.bytes_before)} -> {_size(report.bytes_after)}"
    )
    if report.unreadable:
        print(f"{len(report.unreadable)} unreadable videos, copied unchanged:")
        for path, reason in sorted(report.unreadable.items()):
            print(f"  {path}: {reason}")
    return 0
