"""``python benchmarks/bench.py blocks|model|share`` (also ``a2video bench …`` from a source
checkout): attention-block and whole-model speed benchmarks.

- ``blocks``: forward+backward time, peak memory and GFLOP/s of the A²-block (left, right, auto)
  and the non-local block at the res2..res5 shapes of ``a2net_r50`` (8×224²) and ``a2net_r26``
  (16×112²), next to bare matrix products of the same sizes timed in the same run.
- ``model``: clips/s of any arch for inference and training, eager or ``torch.compile``,
  contiguous or ``channels_last_3d``.
- ``share``: the attention blocks' share of a training step's time against their share of its
  FLOPs.

Every comparison is timed interleaved in one process (see ``harness``); results print as a
table and, with ``--json``, as JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

HELP = "Benchmark attention blocks (time, memory, GFLOP/s) and whole models (clips/s)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)

    blocks = sub.add_parser("blocks", help="A²-block vs non-local at the networks' stage shapes")
    blocks.add_argument("--configs", nargs="+", default=["r50", "r26"], help="r50 (8×224²), r26")
    blocks.add_argument("--stages", nargs="+", default=["res2", "res3", "res4", "res5"])
    blocks.add_argument(
        "--kinds", nargs="+", default=["a2_left", "a2_right", "a2_auto", "nonlocal"]
    )
    blocks.add_argument(
        "--shape", nargs=4, type=int, metavar=("C", "T", "H", "W"), help="one custom shape instead"
    )
    blocks.add_argument("--batch", type=int, default=1)
    _common(blocks)
    blocks.add_argument("--max-mem-gib", type=float, default=None, help="skip larger cases")
    blocks.add_argument("--budget-s", type=float, default=60.0, help="timing budget per stage")
    blocks.add_argument(
        "--in-process", action="store_true", help="do not isolate each stage in a subprocess"
    )

    model = sub.add_parser("model", help="clips/s of an arch, inference and training")
    model.add_argument("arch")
    model.add_argument("--frames", type=int, default=8)
    model.add_argument("--size", type=int, default=224)
    model.add_argument("--batch", type=int, default=1)
    model.add_argument("--modes", nargs="+", default=["infer", "train"], choices=["infer", "train"])
    model.add_argument("--compile", choices=["off", "on", "both"], default="off")
    model.add_argument("--channels-last", choices=["off", "on", "both"], default="off")
    model.add_argument("--num-classes", type=int, default=400)
    model.add_argument("--budget-s", type=float, default=120.0)
    _common(model)

    share = sub.add_parser("share", help="attention blocks' share of step time vs of FLOPs")
    share.add_argument("arch", nargs="?", default="a2net_r50")
    share.add_argument("--baseline", default="i3d_r50", help="same net without blocks ('' none)")
    share.add_argument("--frames", type=int, default=8)
    share.add_argument("--size", type=int, default=224)
    share.add_argument("--batch", type=int, default=1)
    share.add_argument("--reps", type=int, default=3)
    share.add_argument("--threads", type=int, default=None)
    share.add_argument("--json", action="store_true")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument(
        "--dtype",
        default=None,
        help="float32 (CPU default), bfloat16 (CUDA default) or float16; not float32: autocast",
    )
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _opts(choice: str) -> tuple[bool, ...]:
    return {"off": (False,), "on": (True,), "both": (False, True)}[choice]


DTYPES = ("float32", "bfloat16", "float16")


def _positive(args: argparse.Namespace, *names: str, optional: bool = False) -> None:
    for name in names:
        value = getattr(args, name)
        if optional and value is None:
            continue
        if not value > 0:
            flag = "--" + name.replace("_", "-")
            kind = "number" if isinstance(value, float) else "integer"
            raise ValueError(f"{flag} must be a positive {kind}, got {value}")


def _choice(what: str, value: str, choices: Sequence[str], flag: str = "") -> None:
    if value not in choices:
        where = f" in {flag}" if flag else ""
        raise ValueError(f"unknown {what} {value!r}{where}; choose from {', '.join(choices)}")


def check_device(device: str) -> None:
    """Raises ``ValueError`` unless ``device`` is ``cpu`` or a CUDA device this machine has
    (:func:`a2video.devices.resolve_device`; the benches time CPU and CUDA only)."""
    from a2video.devices import devices_here, resolve_device

    if resolve_device(device).type not in ("cpu", "cuda"):
        here = ", ".join(devices_here())
        raise ValueError(f"--device {device!r} is not supported by the bench; choose from {here}")


def check_args(args: argparse.Namespace) -> None:
    """Checks every argument before anything is measured; raises ``ValueError`` naming the bad
    value and the valid choices (``main`` prints it as one line and exits with status 2)."""
    import harness as bench

    from a2video.models import list_models

    archs = list_models()
    _positive(args, "batch", "reps")
    _positive(args, "threads", optional=True)
    if args.what == "share":
        _choice("arch", args.arch, archs)
        if args.baseline:
            _choice("arch", args.baseline, archs, "--baseline")
        _positive(args, "frames", "size")
        return
    check_device(args.device)
    if args.dtype is not None:
        _choice("dtype", args.dtype, DTYPES, "--dtype")
        if args.what == "blocks" and args.device.startswith("cpu") and args.dtype != "float32":
            raise ValueError(  # _fwd_bwd autocasts on CUDA only: the label would be wrong
                f"--dtype {args.dtype!r} with --device cpu: the block benchmark runs float32 on "
                "the CPU; choose from float32 (or a CUDA --device)"
            )
    _positive(args, "budget_s")
    if args.what == "model":
        _choice("arch", args.arch, archs)
        _positive(args, "frames", "size", "num_classes")
        return
    for config in args.configs:
        _choice("config", config, list(bench.CONFIGS), "--configs")
    for stage in args.stages:
        _choice("stage", stage, bench.STAGES, "--stages")
    for kind in args.kinds:
        _choice("block kind", kind, bench.BLOCK_KINDS, "--kinds")
    if args.shape is not None:
        bad = [v for v in args.shape if v <= 0]
        if bad:
            shape = " ".join(map(str, args.shape))
            raise ValueError(f"--shape C T H W must be positive integers, got {shape}")
    _positive(args, "max_mem_gib", optional=True)


def run(args: argparse.Namespace) -> int:
    import json

    import harness as bench
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.what == "share":
        out = bench.block_share(
            args.arch,
            args.baseline or None,
            frames=args.frames,
            size=args.size,
            batch=args.batch,
            reps=args.reps,
        )
        out["machine"] = bench.machine_info()
        print(json.dumps(out, indent=2) if args.json else bench.format_share(out))
        return 0
    dtype_name = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    dtype = getattr(torch, dtype_name)
    if args.what == "blocks":
        results = []
        if args.shape:
            c, t, h, w = args.shape
            shapes = [bench.StageShape("custom", "custom", c, t, h, w, "argument")]
        else:
            shapes = [
                s
                for config in args.configs
                for s in bench.stage_shapes(config)
                if s.stage in args.stages
            ]
        for shape in shapes:
            kwargs = dict(
                kinds=tuple(args.kinds),
                batch=args.batch,
                device=args.device,
                dtype=dtype,
                reps=args.reps,
                budget_s=args.budget_s,
                max_mem_gib=args.max_mem_gib,
            )
            if args.in_process:
                results += bench.bench_stage(shape, **kwargs)
            else:
                results += bench.bench_stage_subprocess(
                    shape, threads=torch.get_num_threads(), **kwargs
                )
        return _report(results, bench.format_blocks, args)
    results = bench.bench_model(
        args.arch,
        frames=args.frames,
        size=args.size,
        batch=args.batch,
        modes=tuple(args.modes),
        compile_opts=_opts(args.compile),
        channels_last_opts=_opts(args.channels_last),
        num_classes=args.num_classes,
        device=args.device,
        dtype=dtype,
        reps=args.reps,
        budget_s=args.budget_s,
    )
    return _report(results, bench.format_models, args)


def _report(results: list, table: Callable[[list], str], args: argparse.Namespace) -> int:
    """Print ``results`` with the machine: JSON with ``--json``, else ``table`` of them."""
    import json
    from dataclasses import asdict

    import harness as bench

    machine = bench.machine_info(args.device)
    if args.json:
        print(json.dumps({"machine": machine, "results": [asdict(r) for r in results]}, indent=2))
    else:
        print(table(results))
        print(bench.format_machine(machine))
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "python benchmarks/bench.py") -> int:
    """Parses and checks the arguments, then runs; a bad value prints ``<prog>: error: <message>``
    (one line, naming the valid choices) and returns 2 before anything is measured."""
    parser = argparse.ArgumentParser(prog=prog, description=HELP)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        check_args(args)
    except ValueError as err:
        print(f"{prog}: error: {err}", file=sys.stderr, flush=True)
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
