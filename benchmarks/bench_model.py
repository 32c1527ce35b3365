"""Whole-model throughput (clips/s) and the A²-blocks' share of a training step.

Two measurements:

- clips/s of an arch for inference and training, eager or ``torch.compile``, contiguous or
  ``channels_last_3d`` (the variants of one mode timed interleaved);
- the five A²-blocks' share of ``a2net_r50``'s training-step time at 8×224², against their share
  of its FLOPs (goal: time share at most 1.5× FLOP share, i.e. the blocks run as efficiently as
  the convolutions around them). Time is attributed by module hooks and, independently, by the
  step-time difference to ``i3d_r50`` (the same network without the blocks), timed interleaved.

Usage::

    python benchmarks/bench_model.py --arch a2net_r50 --frames 8 --size 224 --write
    python benchmarks/bench.py model a2net_r50 --compile both --channels-last both
    python benchmarks/bench.py share a2net_r50 --baseline i3d_r50
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import harness as bench  # noqa: E402


def results_section(payloads: list[dict]) -> str:
    """The "Model throughput" section of RESULTS.md from one or more runs' JSON payloads."""
    parts: list[str] = []
    for payload in payloads:
        parts += [f"Command: `{payload['command']}`", "", bench.format_machine(payload["machine"])]
        if payload.get("throughput"):
            results = [bench.ModelResult(**r) for r in payload["throughput"]]
            parts += ["", bench.format_models(results)]
        if payload.get("share"):
            parts += ["", "```", bench.format_share(payload["share"]), "```"]
        parts.append("")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="a2net_r50")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--modes", nargs="+", default=["infer", "train"])
    p.add_argument("--compile", choices=["off", "on", "both"], default="both")
    p.add_argument("--channels-last", choices=["off", "on", "both"], default="both")
    p.add_argument(
        "--views-2d",
        choices=["off", "on", "both"],
        default="on",
        help="convolutions and max-pools as 2-D kernels on views (a2video.models.layers)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--budget-s", type=float, default=150.0)
    p.add_argument("--share", action="store_true", help="also measure the blocks' share")
    p.add_argument("--share-reps", type=int, default=5)
    p.add_argument("--no-throughput", action="store_true")
    p.add_argument("--write", action="store_true", help="write JSON under benchmarks/results")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument(
        "--results-md",
        default=None,
        help="rewrite this file's 'Model throughput' section from every model_*.json in --out",
    )
    args = p.parse_args(argv)
    opts = {"off": (False,), "on": (True,), "both": (False, True)}
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    machine = bench.machine_info(args.device)
    command = " ".join(["python", "benchmarks/bench_model.py", *sys.argv[1:]])
    payload: dict[str, object] = {"machine": machine, "command": command}
    if not args.no_throughput:
        results = bench.bench_model(
            args.arch,
            frames=args.frames,
            size=args.size,
            batch=args.batch,
            modes=tuple(args.modes),
            compile_opts=opts[args.compile],
            channels_last_opts=opts[args.channels_last],
            views_2d_opts=opts[args.views_2d],
            device=args.device,
            dtype=dtype,
            reps=args.reps,
            budget_s=args.budget_s,
        )
        print(bench.format_models(results))
        payload["throughput"] = [asdict(r) for r in results]
    if args.share:
        share = bench.block_share(
            args.arch, "i3d_r50", frames=args.frames, size=args.size, reps=args.share_reps
        )
        print(bench.format_share(share))
        payload["share"] = share
    print(bench.format_machine(machine))
    if args.write:
        os.makedirs(args.out, exist_ok=True)
        tag = "cpu" if args.device == "cpu" else "gpu"
        name = f"model_{args.arch}_{args.frames}x{args.size}_{tag}"
        with open(os.path.join(args.out, name + ".json"), "w") as f:
            json.dump(payload, f, indent=1)
    if args.results_md:
        payloads = []
        for fname in sorted(os.listdir(args.out)):
            if fname.startswith("model_") and fname.endswith(".json"):
                with open(os.path.join(args.out, fname)) as f:
                    payloads.append(json.load(f))
        bench.replace_section(args.results_md, "Model throughput", results_section(payloads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
