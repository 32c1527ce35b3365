"""``a2video check-data --layout kinetics|ucf101 ROOT``: list missing/undecodable/short videos."""

from __future__ import annotations

import argparse
import os

MIN_FRAMES = 1  # = a2video.data.check.MIN_FRAMES, not imported here: --help stays instant
HELP = "Decode every listed video once; list missing, undecodable and too-short files."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "root",
        help="dataset root (Kinetics: holds annotations/, train/...; "
        "UCF-101: holds UCF-101/ and ucfTrainTestlist/)",
    )
    parser.add_argument("--layout", choices=["kinetics", "ucf101"], required=True)
    parser.add_argument(
        "--split",
        action="append",
        default=None,
        help="split name or annotation file; repeatable (default: all; Kinetics' test where "
        "its CSV is)",
    )
    parser.add_argument(
        "--fold", type=int, default=None, choices=[1, 2, 3], help="UCF-101 fold (default 1)"
    )
    parser.add_argument(
        "--annotation-dir",
        metavar="DIR",
        default=None,
        help="folder holding the annotation files (default: ROOT/annotations for Kinetics, "
        "ROOT/ucfTrainTestlist for UCF-101)",
    )
    parser.add_argument(
        "--min-frames",
        type=int,
        default=MIN_FRAMES,
        metavar="N",
        help="list videos with fewer decodable frames than N as too short (default "
        f"{MIN_FRAMES}: the loaders repeat the frames of a video shorter than a clip, so a "
        "short video is usable; a higher N opts in to listing and, with --write-clean, "
        "dropping them)",
    )
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument(
        "--write-clean",
        metavar="DIR",
        default=None,
        help="write cleaned annotation files (usable videos only) into DIR",
    )
    parser.add_argument("--report", metavar="CSV", default=None, help="write a per-video CSV")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from a2video.data.check import (
        check_outputs,
        check_root,
        check_split,
        default_splits,
        format_report,
        load_split,
        write_clean,
        write_csv_report,
    )

    if args.fold is not None and args.layout != "ucf101":
        raise ValueError(
            f"--fold {args.fold}: UCF-101's fold (--layout ucf101); a {args.layout} split is "
            "chosen with --split"
        )
    args.fold = args.fold or 1
    splits = args.split or default_splits(args.layout, args.root, args.annotation_dir)
    # ROOT and every split's annotations first: a wrong root or a missing annotation file is
    # one line (exit 2) before any video is decoded, said once, not once per split
    check_root(args.layout, args.root, splits, args.annotation_dir)
    loaded = [
        (split, load_split(args.layout, args.root, split, args.fold, args.annotation_dir))
        for split in splits
    ]
    check_outputs([split_ann for _, split_ann in loaded], args.write_clean, args.report)
    unusable, all_checks = 0, []
    for split, split_ann in loaded:
        checks, _ = check_split(
            args.layout,
            args.root,
            split,
            args.fold,
            args.annotation_dir,
            args.min_frames,
            args.workers,
            progress=not args.no_progress,
            split_ann=split_ann,
        )
        all_checks.extend(checks)
        print(f"[{split}] {split_ann.source}")
        print(format_report(checks))
        unusable += sum(c.status != "ok" for c in checks)
        if args.write_clean:
            cleaned = write_clean(args.layout, split_ann, checks, args.write_clean)
            print(f"[{split}] cleaned annotations: {cleaned}")
    if args.report:
        write_csv_report(all_checks, args.report)
    if unusable:
        print(f"{unusable} unusable entries")
    return 1 if unusable else 0
