"""``a2video synth ROOT --layout kinetics|ucf101``: write a synthetic dataset in the real layout."""

from __future__ import annotations

import argparse

HELP = "Write a synthetic Kinetics- or UCF-101-layout dataset of motion classes."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="output folder (the dataset root)")
    parser.add_argument("--layout", choices=["kinetics", "ucf101"], default="kinetics")
    parser.add_argument("--classes", type=int, default=8, help="motion classes (1-16)")
    parser.add_argument(
        "--videos-per-class",
        type=int,
        default=6,
        help="Kinetics: train videos per class; UCF-101: videos per class over all groups",
    )
    parser.add_argument(
        "--val-per-class",
        type=int,
        default=None,
        help="Kinetics val and test videos per class (default M//3)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--duration",
        type=float,
        nargs=2,
        default=None,
        metavar=("MIN", "MAX"),
        help="seconds per video (default 2 4; 10 10 with --encoding web)",
    )
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=None,
        metavar=("W", "H"),
        help="fixed frame size (default: varied for Kinetics, 320x240 UCF)",
    )
    parser.add_argument(
        "--max-side",
        type=int,
        default=None,
        help="scale frame sizes down to this long side (quick datasets)",
    )
    parser.add_argument(
        "--structure",
        choices=["flat", "per-class", "mixed"],
        default=None,
        help="Kinetics video folders (default mixed: train mostly per-class)",
    )
    parser.add_argument(
        "--missing",
        type=float,
        default=None,
        help="Kinetics: share of listed videos not written (default 0.05)",
    )
    parser.add_argument(
        "--broken",
        type=float,
        default=0.0,
        help="share of videos replaced by unusable files (zero-byte, text, truncated, audio-only)",
    )
    parser.add_argument(
        "--quirks",
        action="store_true",
        help="add one unusual-but-usable video of each kind (short, 1 frame, "
        "97x61, grayscale, VP9 webm, rotated, VFR)",
    )
    parser.add_argument(
        "--encoding",
        choices=["fast", "web"],
        default="fast",
        help="fast: x264 veryfast, a keyframe every second (quick tests); web: download-like "
        "Kinetics (x264 medium, crf 23, keyint 250, 30 fps, short side 256, 10 s)",
    )
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from a2video.data.synthetic import check_synth_root, synthesize

    check_synth_root(args.root, args.layout)
    manifest = synthesize(
        args.root,
        layout=args.layout,
        classes=args.classes,
        videos_per_class=args.videos_per_class,
        val_per_class=args.val_per_class,
        seed=args.seed,
        duration=tuple(args.duration) if args.duration else None,
        size=tuple(args.size) if args.size else None,
        max_side=args.max_side,
        structure=args.structure,
        missing=args.missing,
        broken=args.broken,
        quirks=args.quirks,
        progress=not args.no_progress,
        encoding=args.encoding,
    )
    print(
        f"{args.layout} dataset in {args.root}: {len(manifest['classes'])} classes, "
        f"{len(manifest['missing'])} listed-but-missing, {len(manifest['special'])} special files"
    )
    return 0
