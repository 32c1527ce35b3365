"""``a2video export --ckpt CKPT --format onnx|torchscript [--out FILE]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from a2video.commands import add_checkpoint_arguments

HELP = (
    "Export a checkpoint's network to ONNX or TorchScript for a fixed clip shape (parity checked)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_arguments(parser)
    parser.add_argument("--format", required=True, choices=["onnx", "torchscript"])
    parser.add_argument(
        "--out", default=None, help="output file (default: next to the checkpoint, .onnx / .pt)"
    )
    parser.add_argument("--batch", type=int, default=1, help="clips per call (fixed, default 1)")
    parser.add_argument(
        "--frames", type=int, default=None, help="frames per clip (default: the checkpoint's)"
    )
    parser.add_argument(
        "--size", type=int, default=None, help="crop size (default: the checkpoint's)"
    )
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: exporter's)")
    parser.add_argument(
        "--tolerance", type=float, default=1e-3, help="largest |logit difference| accepted"
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from a2video.explore.export import SUFFIX, export_model, parity_check
    from a2video.explore.predict import load_predictor
    from a2video.models import check_clip_size
    from a2video.training.checkpoint import holds_weights

    for flag, value in (("--batch", args.batch), ("--frames", args.frames), ("--size", args.size)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} {value}: must be a positive integer (or left out)")
    if args.opset is not None and args.format != "onnx":  # a TorchScript trace has no opset
        raise ValueError(f"--opset {args.opset}: ONNX only; drop it with --format {args.format}")
    if args.out and Path(args.out).is_dir():  # before the checkpoint is read
        name = Path(args.ckpt).with_suffix(SUFFIX[args.format]).name
        raise ValueError(
            f"{args.out}: a folder; --out takes the file to write, e.g. {Path(args.out) / name}"
        )
    predictor = load_predictor(args.ckpt, unsafe=args.unsafe_load)
    _, frames, size, _ = predictor.clip_shape
    frames = frames if args.frames is None else args.frames
    size = size if args.size is None else args.size
    options = predictor.meta.get("arch_options") or {}
    check_clip_size(
        predictor.meta["arch"], frames, size, num_classes=predictor.num_classes, **options
    )
    shape = (args.batch, 3, frames, size, size)
    out = Path(args.out) if args.out else Path(args.ckpt).with_suffix(SUFFIX[args.format])
    other = out.with_name(out.stem + "_export" + SUFFIX[args.format])
    if out.exists() and out.resolve() == Path(args.ckpt).resolve():
        raise ValueError(
            f"{out}: the export would write over the checkpoint it reads (--ckpt); pass --out "
            f"with another file, e.g. {other}"
        )
    if holds_weights(out):  # e.g. the run's best checkpoint: an earlier export is replaced
        raise ValueError(
            f"{out}: a file of trained weights (a checkpoint or state dict); the export would "
            f"write over it: pass --out with another file, e.g. {other}"
        )
    path = export_model(predictor.model, out, shape, fmt=args.format, opset=args.opset)
    print(f"exported {predictor.meta.get('arch')} to {path} ({args.format}, input {list(shape)})")
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(shape, generator=generator)
    parity = parity_check(predictor.model, path, args.format, inputs, tolerance=args.tolerance)
    print(parity.summary())
    return 0 if parity.ok else 1
