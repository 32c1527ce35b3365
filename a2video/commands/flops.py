"""``a2video flops ARCH --frames T --size S [--json]``: multiply-adds and parameters of an arch.

GFLOPs are 10⁹ multiply-adds, as the A²-Nets paper counts them (torch.utils.flop_counter FLOPs / 2),
for one clip of T×S×S. ``ARCH`` may be ``all`` (or ``--all``) for a table of every arch.
"""

from __future__ import annotations

import argparse
import json

HELP = "GFLOPs (multiply-adds) and parameters of a model arch on one clip."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("arch", nargs="?", default=None, help="registered arch, or 'all'")
    parser.add_argument("--all", action="store_true", help="every registered arch")
    parser.add_argument("--frames", "-t", type=int, default=8, help="clip length T (default 8)")
    parser.add_argument("--size", "-s", type=int, default=224, help="spatial size (default 224)")
    parser.add_argument("--num-classes", type=int, default=400, help="head size (default 400)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--blocks", action="store_true", help="include per-attention-block details in the JSON"
    )


def _row(r: dict) -> str:
    attn = ""
    if r["attn_blocks"]:
        attn = f"  (+{r['attn_blocks']} blocks: {r['attn_gflops']:.2f} GFLOPs"
        attn += f", {r['attn_params_m']:.2f} M params)"
    return (
        f"{r['arch']:<12} {r['frames']}x{r['size']}x{r['size']}  "
        f"{r['gflops']:8.2f} GFLOPs  {r['params_m']:7.2f} M params{attn}"
    )


def run(args: argparse.Namespace) -> int:
    from a2video.models import check_clip_size, count_arch_flops, list_models

    for flag, value in (
        ("--frames", args.frames),
        ("--size", args.size),
        ("--num-classes", args.num_classes),
    ):
        if value < 1:
            raise ValueError(f"{flag} {value}: must be a positive integer")

    if args.all or args.arch in (None, "all"):
        archs = list_models()
    elif args.arch in list_models():
        archs = [args.arch]
    else:  # stderr through exit_on_user_error (exit 2), never into --json's stdout
        import difflib

        close = difflib.get_close_matches(args.arch, list_models(), n=1)
        guess = f"did you mean {close[0]}? " if close else ""
        raise ValueError(
            f"unknown arch {args.arch!r}; {guess}choose from {', '.join(list_models())} or 'all'"
        )
    results = []
    for arch in archs:  # a clip too small for an arch: one line naming --frames/--size
        check_clip_size(arch, args.frames, args.size, num_classes=args.num_classes)
        r = count_arch_flops(arch, args.frames, args.size, num_classes=args.num_classes)
        if not args.blocks:
            r.pop("blocks")
        results.append(r)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results, indent=2))
    else:
        for r in results:
            print(_row(r))
    return 0
