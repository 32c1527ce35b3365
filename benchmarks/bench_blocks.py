"""A²-block vs non-local block: forward+backward time, peak memory and GFLOP/s per stage.

Backs the paper's claim (Chen et al. 2018, Section 2.3 and the Conv2 remark of Section 4) that
double attention captures global relations at a small fraction of the non-local block's cost, at
the real res2..res5 shapes of ``a2net_r50`` (8×224²) and ``a2net_r26`` (16×112²). Every stage runs
in a fresh process; inside it the block kinds and the bare-GEMM references are timed interleaved.

``--ablation`` also times implementation variants of the A²-block at the same shapes (same
weights, outputs checked equal): three separate φ/θ/ρ convolutions vs the fused one, and the
projections as plain matrix products instead of 1×1×1 convolutions.

Usage::

    python benchmarks/bench_blocks.py                       # table to stdout
    python benchmarks/bench_blocks.py --ablation --write    # + JSON, plot, RESULTS.md section
    python benchmarks/bench.py blocks --configs r50 --stages res3   # the same, from the CLI
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import harness as bench  # noqa: E402

from a2video.models.attention import DoubleAttention  # noqa: E402

# ----------------------------------------------------------------------------- variants (ablation)


class ThreeConvA2(nn.Module):
    """The A²-block with φ, θ, ρ as three separate 1×1×1 convolutions (the unfused baseline)."""

    def __init__(self, block: DoubleAttention) -> None:
        super().__init__()
        self.block = block
        c, m, n = block.in_channels, block.m, block.n
        w, b = block.qkv.weight.detach(), block.qkv.bias.detach()
        self.phi = nn.Conv3d(c, m, 1)
        self.theta = nn.Conv3d(c, n, 1)
        self.rho = nn.Conv3d(c, n, 1)
        for conv, sl in ((self.phi, slice(0, m)), (self.theta, slice(m, m + n)),
                         (self.rho, slice(m + n, m + 2 * n))):  # fmt: skip
            conv.weight.data.copy_(w[sl])
            conv.bias.data.copy_(b[sl])

    def forward(self, x: Tensor) -> Tensor:
        blk = self.block
        a = self.phi(x).flatten(2)  # (N, m, L)
        b = torch.softmax(self.theta(x).flatten(2), dim=2)  # (N, n, L)
        v = torch.softmax(self.rho(x).flatten(2), dim=1)  # (N, n, L)
        z = blk.aggregate(a, b, v, "left")  # (N, m, L)
        return x + blk.project(z.reshape(x.shape[0], blk.m, *x.shape[2:]))


class MatmulA2(nn.Module):
    """The A²-block with its 1×1×1 convolutions as matrix products over (N, C, L).

    ``fold=True`` also re-associates the output projection: W_out·(G·V) = (W_out·G)·V, a C×n
    matrix built once per clip, which saves the m×L intermediate Z and m·n·L multiply-adds.
    """

    def __init__(self, block: DoubleAttention, fold: bool = False) -> None:
        super().__init__()
        self.block = block
        self.fold = fold

    def forward(self, x: Tensor) -> Tensor:
        blk = self.block
        n_, c = x.shape[:2]
        xf = x.reshape(n_, c, -1)  # (N, C, L)
        w = blk.qkv.weight.view(blk.qkv.out_channels, c)  # (m+2n, C)
        qkv = torch.baddbmm(blk.qkv.bias[:, None], w.expand(n_, -1, -1), xf)  # (N, m+2n, L)
        a, b, v = torch.split(qkv, [blk.m, blk.n, blk.n], dim=1)
        b = torch.softmax(b, dim=2)  # (N, n, L) over positions
        v = torch.softmax(v, dim=1)  # (N, n, L) over descriptors
        g = torch.bmm(a, b.transpose(1, 2))  # (N, m, L)(N, L, n) -> (N, m, n)
        w_out = blk.proj.weight.view(c, blk.m)  # (C, m)
        if self.fold:
            out = torch.matmul(torch.matmul(w_out, g), v)  # ((C, m)(N, m, n))(N, n, L) -> (N, C, L)
        else:
            out = torch.matmul(w_out, torch.bmm(g, v))  # (C, m)((N, m, n)(N, n, L)) -> (N, C, L)
        bn = blk.bn
        out = F.batch_norm(
            out.view_as(x), bn.running_mean, bn.running_var, bn.weight, bn.bias,
            self.training, bn.momentum, bn.eps,
        )  # fmt: skip
        return x + out


VARIANTS = {
    "fused conv (current)": lambda blk: blk,
    "3 convs": ThreeConvA2,
    "fused matmul": MatmulA2,
    "fused matmul + fold W·G": lambda blk: MatmulA2(blk, fold=True),
}


def bench_variants(
    shape: bench.StageShape, reps: int = 7, budget_s: float = 40.0
) -> list[dict[str, object]]:
    """Interleaved forward+backward times of the A²-block variants at one shape (CPU, float32)."""
    torch.manual_seed(0)
    block = DoubleAttention(shape.channels, association="left", zero_init=False)
    x = torch.randn(1, shape.channels, shape.frames, shape.height, shape.width, requires_grad=True)
    ref = block(x)
    steps, out = {}, []
    for name, make in VARIANTS.items():
        mod = make(block)
        err = (mod(x) - ref).abs().max().item() / ref.abs().max().item()
        if err > 1e-4:
            raise AssertionError(f"variant {name!r} differs from DoubleAttention: {err:.2e}")

        def step(mod=mod) -> None:
            mod(x).sum().backward()

        steps[name] = step
    times = bench.interleaved(steps, reps, budget_s=budget_s)
    base = bench.median(times["fused conv (current)"])
    for name, ts in times.items():
        t = bench.median(ts)
        out.append({
            "config": shape.config, "stage": shape.stage, "variant": name,
            "time_ms": 1e3 * t, "vs_current": t / base, "reps": len(ts),
        })  # fmt: skip
    return out


def format_variants(rows: list[dict[str, object]]) -> str:
    names = list(VARIANTS)
    head = "| net | stage | " + " | ".join(names) + " |\n|---|---|" + "---:|" * len(names)
    lines = [head]
    keys = list(dict.fromkeys((r["config"], r["stage"]) for r in rows))
    for key in keys:
        by = {r["variant"]: r for r in rows if (r["config"], r["stage"]) == key}
        cells = [f"{by[n]['time_ms']:.1f} ms (×{by[n]['vs_current']:.2f})" for n in names]
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plot


def plot(results: list[bench.BlockResult], path: str) -> None:
    """Time and peak memory per stage, A²(left/right/auto) vs non-local, one panel per net."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = list(dict.fromkeys(r.config for r in results))
    kinds = [k for k in bench.BLOCK_KINDS if any(r.kind == k for r in results)]
    fig, axes = plt.subplots(2, len(configs), figsize=(4.2 * len(configs), 5.6), squeeze=False)
    width = 0.8 / len(kinds)
    for j, config in enumerate(configs):
        stages = [s for s in bench.STAGES if any(r.config == config and r.stage == s
                                                 for r in results)]  # fmt: skip
        for row, (attr, label) in enumerate((("time_ms", "fwd+bwd ms"),
                                             ("peak_mib", "peak MiB"))):  # fmt: skip
            ax = axes[row][j]
            for i, kind in enumerate(kinds):
                vals = []
                for s in stages:
                    key = (config, s, kind)
                    r = next((r for r in results if (r.config, r.stage, r.kind) == key), None)
                    vals.append(getattr(r, attr) if r and r.status == "ok" else float("nan"))
                xs = [k + (i - (len(kinds) - 1) / 2) * width for k in range(len(stages))]
                ax.bar(xs, vals, width, label=kind)
                for xx, vv in zip(xs, vals, strict=True):
                    if vv != vv:  # NaN: skipped or failed
                        ax.text(xx, 1, "×", ha="center", va="bottom", color="red", fontsize=8)
            ax.set_yscale("log")
            ax.set_xticks(range(len(stages)), stages)
            ax.set_ylabel(label)
            if row == 0:
                arch, frames, size = bench.CONFIGS.get(config, (config, 0, 0))
                ax.set_title(f"{arch} {frames}×{size}²")
            ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ----------------------------------------------------------------------------- RESULTS.md


def results_section(payload: dict, figure: str) -> str:
    """The "A²-block performance" section of RESULTS.md from one run's JSON payload."""
    results = [bench.BlockResult(**r) for r in payload["results"]]
    parts = [
        f"Command: `{payload['command']}`",
        "",
        bench.format_machine(payload["machine"]),
        "",
        "Forward+backward of one block, batch 1, float32; each stage in a fresh process, the "
        "block kinds and the bare-GEMM references timed interleaved (medians). Peak memory: "
        "bytes allocated above the inputs and weights during one forward+backward "
        "(`torch.profiler` memory events). GFLOP counts 2 per multiply-add (convolutions and "
        "matrix products, forward and backward). *Same GEMMs bare*: the block's own matrix "
        "products (convolutions as GEMMs) replayed with `torch.bmm` into preallocated outputs; "
        "*square mm*: one square product of the same total work.",
        "",
        "### Goals per stage",
        "",
        bench.format_goals(payload["goals"]),
        "",
        "### All measurements",
        "",
        bench.format_blocks(results),
        "",
        f"![A²-block vs non-local]({figure})",
    ]
    if payload.get("variants"):
        parts += [
            "",
            "### Implementation variants of the A²-block (same weights, interleaved)",
            "",
            format_variants(payload["variants"]),
        ]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=list(bench.CONFIGS))
    p.add_argument("--stages", nargs="+", default=list(bench.STAGES))
    p.add_argument("--kinds", nargs="+", default=list(bench.BLOCK_KINDS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, help="float32 on CPU, bfloat16 on CUDA by default")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--budget-s", type=float, default=60.0, help="timing budget per stage")
    p.add_argument("--max-mem-gib", type=float, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--ablation", action="store_true", help="also time implementation variants")
    p.add_argument("--write", action="store_true", help="write JSON, plot and RESULTS.md section")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--results-md", default=os.path.join(HERE, "RESULTS.md"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(
        torch, args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    )
    machine = bench.machine_info(args.device)
    results: list[bench.BlockResult] = []
    variants: list[dict[str, object]] = []
    for config in args.configs:
        for shape in bench.stage_shapes(config):
            if shape.stage not in args.stages:
                continue
            print(f"# {config} {shape.stage} C={shape.channels} T={shape.frames} "
                  f"{shape.height}×{shape.width} L={shape.length}",
                  file=sys.stderr, flush=True)  # fmt: skip
            results += bench.bench_stage_subprocess(
                shape, kinds=tuple(args.kinds), device=args.device, dtype=dtype, reps=args.reps,
                budget_s=args.budget_s, max_mem_gib=args.max_mem_gib,
                threads=torch.get_num_threads(),
            )  # fmt: skip
            if args.ablation and args.device == "cpu":
                variants += bench_variants(shape)
    goals = bench.goals_blocks(results)
    print(bench.format_blocks(results))
    print()
    print(bench.format_goals(goals))
    if variants:
        print()
        print(format_variants(variants))
    print()
    print(bench.format_machine(machine))
    if args.write:
        tag = "cpu" if args.device == "cpu" else "gpu"
        os.makedirs(args.out, exist_ok=True)
        payload = {
            "machine": machine,
            "command": " ".join(["python", "benchmarks/bench_blocks.py", *sys.argv[1:]]),
            "results": [asdict(r) for r in results],
            "goals": goals,
            "variants": variants,
        }
        with open(os.path.join(args.out, f"blocks_{tag}.json"), "w") as f:
            json.dump(payload, f, indent=1)
        plot(results, os.path.join(HERE, "figures", f"blocks_{tag}.png"))
        heading = "A²-block performance" + ("" if tag == "cpu" else " (GPU)")
        body = results_section(payload, f"figures/blocks_{tag}.png")
        bench.replace_section(args.results_md, heading, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
