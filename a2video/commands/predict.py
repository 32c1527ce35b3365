"""``a2video predict --ckpt CKPT VIDEO... [--views 10x3] [--topk 5] [--json] [--attention DIR]``."""

from __future__ import annotations

import argparse
import json
import os
import sys

from a2video.commands import add_checkpoint_arguments

HELP = "Top-k action labels of video files from a trained checkpoint (multi-view)."
DECODERS = ("auto", "decord", "pyav", "torchcodec")  # --decoder's choices (no nvdec here)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "videos", nargs="+", metavar="VIDEO", help="video files, or folders of them, to label"
    )
    add_checkpoint_arguments(parser)
    parser.add_argument(
        "--views",
        default="10x3",
        help="CLIPSxCROPS averaged per video (default 10x3, the paper's protocol; 1x1 is fastest)",
    )
    parser.add_argument("--topk", type=int, default=5, help="labels listed per video (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--decoder",
        default="auto",
        choices=DECODERS,
        help="video decoder (default: decord where installed, else PyAV)",
    )
    parser.add_argument(
        "--device", default="cpu", help="torch device, e.g. cuda or cuda:1 (default cpu)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="views per forward pass (0: all at once)"
    )
    parser.add_argument(
        "--attention",
        metavar="DIR",
        default=None,
        help="also write each A2-block's gather maps over the frames of every video as PNGs "
        "(DIR/<video>/<block>.png)",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (it is drawn on stderr only where stderr is a terminal)",
    )


def video_files(paths: list[str]) -> list[str]:
    """The videos to label: each file as given, and the video files (by extension) found in
    each folder given, recursively and sorted; a folder with none is a one-line error."""
    from a2video.data.annotations import VIDEO_EXTENSIONS

    out: list[str] = []
    for path in paths:
        if not os.path.isdir(path):
            out.append(path)
            continue
        found = sorted(
            os.path.join(folder, name)
            for folder, _, names in os.walk(path)
            for name in names
            if os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS
        )
        if not found:
            raise ValueError(
                f"{path}: a folder with no video files in it (looked for "
                f"{', '.join(sorted(VIDEO_EXTENSIONS))}, in its subfolders too); pass video files"
            )
        out.extend(found)
    return out


def run(args: argparse.Namespace) -> int:
    from a2video.data.video import check_decoder
    from a2video.explore.predict import load_predictor, parse_views, predict_videos

    clips, crops = parse_views(args.views)  # a ValueError: one 'error:' line, exit 2
    if args.topk < 1:
        raise ValueError(f"--topk {args.topk}: it must be at least 1")
    if args.batch_size < 0:  # range() with a negative step: no forward, torch.cat([]) failed
        raise ValueError(
            f"--batch-size {args.batch_size}: it must be at least 0 (views per forward pass; "
            "0: all of a video's views at once)"
        )
    if args.attention is not None and os.path.isfile(args.attention):  # before any decoding
        raise ValueError(
            f"{args.attention}: a file, not a folder; --attention takes a folder for the PNGs "
            "(DIR/<video>/<block>.png)"
        )
    videos = video_files(args.videos)
    # an uninstalled decoder, in this command's spelling, before the checkpoint is read
    check_decoder(args.decoder, option="--decoder", choices=DECODERS)
    predictor = load_predictor(args.ckpt, device=args.device, unsafe=args.unsafe_load)
    if args.attention is not None:  # before any video is decoded or predicted
        from a2video.explore.attention_maps import attention_blocks

        if not attention_blocks(predictor.model):
            raise ValueError(
                f"--attention: {predictor.meta.get('arch')} has no A2-block to draw; drop "
                "--attention, or pass the checkpoint of an A2-Net (a2net_*)"
            )
    results = predict_videos(
        predictor,
        videos,
        clips=clips,
        crops=crops,
        topk=args.topk,
        decoder=args.decoder,
        batch_size=args.batch_size,
        progress=not args.no_progress and sys.stderr.isatty(),  # not into a log or a pipe
    )
    stride = predictor.clip_spec.stride
    for root, step in sorted({(r.prepared_root, r.frame_step) for r in results if r.prepared_root}):
        print(
            f"a2video predict: videos under {root} read with its a2video_prepared.json "
            f"frame_step {step} (stride {stride} original frames = {stride // step} of its frames)",
            file=sys.stderr,
        )
    if args.json:
        doc = {
            "checkpoint": str(args.ckpt),
            "arch": predictor.meta.get("arch"),
            "views": f"{clips}x{crops}",
            "videos": [r.as_dict() for r in results],
        }
        print(json.dumps(doc, indent=2))
    else:
        for r in results:
            if not r.ok:
                continue
            ranked = ", ".join(f"{name} {score:.3f}" for name, score in r.topk)
            print(f"{r.path}: {ranked}")
    if args.attention is not None:
        from a2video.explore.attention_maps import write_attention_maps

        readable = [r.path for r in results if r.ok]
        written = write_attention_maps(predictor, readable, args.attention, decoder=args.decoder)
        count = sum(len(files) for files in written.values())
        print(f"attention maps: {count} PNGs in {args.attention}", file=sys.stderr)
    for r in results:
        if not r.ok:
            print(f"a2video predict: {r.path}: {r.error}", file=sys.stderr)
    return 1 if any(not r.ok for r in results) else 0
