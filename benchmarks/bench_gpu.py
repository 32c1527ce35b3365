"""GPU training efficiency of the I3D / A²-Net / non-local ResNet-50s, in one command.

Measures, on one CUDA device (bf16 autocast, ``channels_last_3d``, 8×224² clips on the device):

- ``models``: raw-loop train steps (forward, backward, fused SGD) of i3d_r50 / a2net_r50 / nl_r50,
  eager and ``torch.compile``'d, at batch 16 and 32: clips/s, TFLOP/s (3 × the forward's
  multiply-adds × 2), the fraction of a measured large bf16 matmul rate, peak memory; and the five
  A²-blocks' share of step time (a2net_r50 − i3d_r50, same run) against their FLOP share.
- ``lightning``: ``VideoClassifier`` in ``Trainer.fit`` (bf16-mixed) against a plain loop over
  the same network and batch (eager; ``lightning_compiled``: both compiled, the plain loop's row
  also joins the ``models`` table). ``Trainer.fit`` gets what users' loaders hand over: uint8
  clips, normalised on the device by the DataModules' transfer hook (``--lightning-input
  float``: the raw loop's float channels-last clips), so its row holds that work too.
- ``blocks``: the A²-block (left / right / auto; float32 products = the old default) against its
  own matrix products run bare and against the non-local block at res2..res5 of a2net_r50;
  ``blocks_compiled``: both blocks compiled (as the GPU configs train them), also as CUDA graphs.
- ``stem``: the RGB stem as a 3-D convolution and as stacked frames (``compiled_3d_stem``: the
  compiled step with the 3-D stem).
- ``profile``: where a2net_r50's eager step spends device time (torch.profiler, by op class).
- ``variants``: the layout/precision options side by side (BatchNorm folded to 4-D, A² products
  in bf16, convolutions and pools on 2-D views: ``a2video.models.layers``), whole step and per
  layer; ``compiled_5d``: the compiled a2net step with the 2-D views switched off.

Compiled rows run each in a fresh Python process (``--no-isolate`` keeps them in this one), so no
earlier compilation, Trainer or cuDNN state can leak into them; each row reports the graphs and
graph breaks TorchDynamo made.

It imports only torch, Lightning, torchmetrics and ``a2video.models`` / ``a2video.training.module``
(no decord, PyAV or jsonargparse). Every section is time-boxed (``--budget-s`` in all) and the
table is printed and written (``DIR/bench_gpu.md``, ``DIR/bench_gpu.json``) after each one, so a
run cut short still leaves what it measured.

    python benchmarks/bench_gpu.py --out runs/bench_gpu                  # the default sections
    python benchmarks/bench_gpu.py --out /tmp/b --arch-scale tiny --device cpu   # seconds, CPU
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/harness.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package

from a2video.models import DoubleAttention, NonLocal, build_model, count_arch_flops
from a2video.models.attention import _compute_dtype, _no_autocast
from a2video.models.layers import BatchNorm3d, Conv3d, MaxPool3d, channels_last_clip

CL3D = torch.channels_last_3d
ARCHS = ("i3d", "a2net", "nl")
# In order of what the goals of #12 need first: a run cut short by its budget loses the last.
DEFAULT_SECTIONS = (
    "info,lightning_compiled,blocks_compiled,compiled,blocks,stem,variants,lightning,models,"
    "compiled_3d_stem,compiled_5d,profile"
)
ROW_MARK = "BENCH-GPU-ROW "


# ----------------------------------------------------------------------------- set-up


class Budget:
    """Wall-clock budget of the whole run; sections and items ask before starting."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def allows(self, estimate_s: float) -> bool:
        return self.left() > estimate_s


def arch_name(kind: str, scale: str) -> str:
    """Row label of ``kind``: a registry name (``nl_tiny``: a2net_tiny with non-local blocks)."""
    return f"{kind}_{'tiny' if scale == 'tiny' else 'r50'}"


def build(kind: str, scale: str, classes: int) -> nn.Module:
    """A network of ``kind`` (i3d / a2net / nl); tiny scale swaps non-local blocks in itself."""
    name = "a2net_tiny" if (scale, kind) == ("tiny", "nl") else arch_name(kind, scale)
    model = build_model(name, num_classes=classes)
    if scale == "tiny" and kind == "nl":
        for name in list(model.attention_blocks):
            parent = model.get_submodule(name.rsplit(".", 1)[0])
            parent.attn = NonLocal(parent.attn.in_channels)
    for blk in model.attention_blocks.values():  # live blocks (not the identity they start as)
        nn.init.normal_(blk.bn.weight, 1.0, 0.1)
    return model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], steps: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` over ``steps`` back-to-back calls (one sync at each end)."""
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / steps


def interleaved(
    fns: dict[str, Callable[[], Any]], steps: int, rounds: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per call of each ``fn``, timed round-robin (``steps`` calls per turn)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(timed(fn, steps, device))
    return {k: statistics.median(v) for k, v in times.items()}


def peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


class Ctx:
    """Run-wide settings and the results gathered so far."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        self.amp = self.device.type == "cuda" and args.dtype == "bf16"
        self.budget = Budget(args.budget_s)
        self.out = Path(args.out)
        self.results: dict[str, Any] = {"command": " ".join(sys.argv), "sections": {}}
        self.tables: dict[str, str] = {}
        self.flops: dict[str, float] = {}

    def autocast(self, cache: bool = True) -> Any:
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.amp, cache_enabled=cache
        )

    def clip(self, batch: int) -> tuple[Tensor, Tensor]:
        a = self.args
        x = torch.randn(batch, 3, a.frames, a.size, a.size, device=self.device)
        y = torch.randint(0, a.classes, (batch,), device=self.device)
        return x.contiguous(memory_format=CL3D), y

    def of_matmul(self, flop: float, sec: float) -> float:
        """The rate of ``flop`` in ``sec`` as a fraction of the measured large-matmul rate."""
        return flop / sec / 1e12 / self.results["info"]["matmul_tflops"]

    def train_flop(self, kind: str) -> float:
        """Training FLOPs per clip: 3 × forward multiply-adds × 2."""
        if kind not in self.flops:
            arch = arch_name(kind, self.args.arch_scale)
            if self.args.arch_scale == "tiny":
                from torch.utils.flop_counter import FlopCounterMode

                model = build(kind, "tiny", self.args.classes).eval()
                x = torch.zeros(1, 3, self.args.frames, self.args.size, self.args.size)
                with torch.no_grad(), FlopCounterMode(display=False) as counter:
                    model(x)
                macs = counter.get_total_flops() / 2
            else:
                macs = count_arch_flops(arch, self.args.frames, self.args.size)["gflops"] * 1e9
            self.flops[kind] = 6 * macs
        return self.flops[kind]

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "bench_gpu.json").write_text(json.dumps(self.results, indent=1, default=str))
        md = "\n\n".join(self.tables.values()) + "\n"
        (self.out / "bench_gpu.md").write_text(md)

    def table(self, key: str, title: str, header: list[str], rows: list[list[Any]]) -> None:
        lines = [f"### {title}", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
        self.tables[key] = "\n".join(lines)
        print("\n" + self.tables[key], flush=True)
        self.write()


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


# ----------------------------------------------------------------------------- sections


def section_info(ctx: Ctx) -> None:
    """Device, versions, date and the large-matmul rate every fraction is taken of."""
    dev = ctx.device
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None,
        "arch_scale": ctx.args.arch_scale,
        "clip": f"{ctx.args.frames}×{ctx.args.size}²",
        "dtype": "bf16 autocast" if ctx.amp else "fp32",
    }
    side = 8192 if dev.type == "cuda" else 1024
    dtype = torch.bfloat16 if ctx.amp else torch.float32
    a = torch.randn(side, side, device=dev, dtype=dtype)
    b = torch.randn(side, side, device=dev, dtype=dtype)
    out = torch.empty(side, side, device=dev, dtype=dtype)
    sec = interleaved({"mm": lambda: torch.mm(a, b, out=out)}, 10, 3, dev)["mm"]
    info["matmul_tflops"] = 2 * side**3 / sec / 1e12
    info["matmul_shape"] = f"{side}×{side}×{side} {str(dtype)[6:]}"
    ctx.results["info"] = info
    ctx.table("info", "Machine", ["what", "value"], [[k, v] for k, v in info.items()])


def _train_step(
    ctx: Ctx, model: nn.Module, batch: int, compiled: bool
) -> tuple[Callable[[], None], nn.Module]:
    x, y = ctx.clip(batch)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, fused=True)
    fwd = model
    if compiled:
        fwd = torch.compile(model, backend=ctx.args.compile_backend, mode=ctx.args.compile_mode)

    def step() -> None:
        with ctx.autocast():
            loss = F.cross_entropy(fwd(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, fwd


def _eager_a2net_step(ctx: Ctx) -> tuple[nn.Module, Callable[[], None], int]:
    """The a2net (seed 0, channels-last, on the device) and its eager train step at the first
    of ``--batches``, for the sections that time or profile options of one network."""
    batch = ctx.args.batches[0]
    torch.manual_seed(0)
    model = build("a2net", ctx.args.arch_scale, ctx.args.classes)
    model = model.to(ctx.device).to(memory_format=CL3D)
    step, _ = _train_step(ctx, model, batch, compiled=False)
    return model, step, batch


def _model_row(ctx: Ctx, kind: str, batch: int, compiled: bool) -> dict[str, Any]:
    dev, args = ctx.device, ctx.args
    torch.manual_seed(0)
    if compiled:
        torch._dynamo.reset()
    model = build(kind, args.arch_scale, args.classes).to(dev).to(memory_format=CL3D)
    peak_reset(dev)
    step, _ = _train_step(ctx, model, batch, compiled)
    start = time.perf_counter()
    step()  # compile (if any) and cuDNN autotuning
    sync(dev)
    first = time.perf_counter() - start
    for _ in range(args.warmup):
        step()
    sec = timed(step, args.steps, dev)
    flop = ctx.train_flop(kind) * batch
    row = {
        "arch": arch_name(kind, args.arch_scale),
        "mode": "compiled" if compiled else "eager",
        "batch": batch,
        "step_ms": 1e3 * sec,
        "clips_per_s": batch / sec,
        "tflops": flop / sec / 1e12,
        "matmul_fraction": ctx.of_matmul(flop, sec),
        "peak_gib": peak_gib(dev),
        "first_step_s": first,
    }
    if compiled:
        from torch._dynamo.utils import counters

        row["graphs"] = int(counters["stats"]["unique_graphs"])
        row["graph_breaks"] = int(sum(counters["graph_break"].values()))
    if compiled and args.row_kernels:
        try:
            row["kernels"] = _kernel_profile(step, dev, args.profile_top)
        except Exception as err:  # the profile is extra: never lose the timed row to it
            print(f"[row] kernel profile failed: {type(err).__name__}: {err}", file=sys.stderr)
    if compiled and args.compile_mode not in (None, "default"):
        row["mode"] += f" ({args.compile_mode})"
    if not Conv3d.as_2d:
        row["mode"] += " (5-D layers)"
    if Conv3d.time_to_channels is False:
        row["mode"] += " (3-D stem)"
    del model, step
    peak_reset(dev)
    return row


def _isolated_row(
    ctx: Ctx,
    kind: str,
    batch: int,
    views: bool = True,
    mode: str | None = None,
    stem_stack: bool = True,
) -> dict[str, Any]:
    """A compiled ``_model_row`` in a fresh Python process (same arguments), parsed back."""
    import subprocess

    a = ctx.args
    cmd = [sys.executable, str(Path(__file__).resolve()), "--out", str(ctx.out / "rows")]
    cmd += ["--row", f"{kind}:{batch}", "--device", a.device, "--arch-scale", a.arch_scale]
    cmd += ["--dtype", a.dtype, "--frames", str(a.frames), "--size", str(a.size)]
    cmd += ["--classes", str(a.classes), "--steps", str(a.steps), "--warmup", str(a.warmup)]
    cmd += ["--compile-backend", a.compile_backend, "--sections", "info"]
    cmd += ["--matmul-tflops", str(ctx.results["info"]["matmul_tflops"])]
    if mode or a.compile_mode:
        cmd += ["--compile-mode", mode or a.compile_mode]
    if not views:
        cmd += ["--no-2d-views"]
    if not (stem_stack and a.stem_stack):
        cmd += ["--no-stem-stack"]
    if a.row_profile and not getattr(ctx, "row_profiled", False):  # the first compiled row
        cmd += ["--row-kernels"]
        ctx.row_profiled = True
    timeout = max(30.0, ctx.budget.left() + a.compile_estimate_s)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    rows = [ln[len(ROW_MARK) :] for ln in proc.stdout.splitlines() if ln.startswith(ROW_MARK)]
    if proc.returncode or not rows:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"row {kind}:{batch} failed (exit {proc.returncode}): {tail}")
    row = json.loads(rows[-1])
    _kernel_tables(ctx, row)
    return row


def compiled_row(ctx: Ctx, kind: str, batch: int, views: bool = True) -> dict[str, Any]:
    """A compiled row, isolated in its own process unless ``--no-isolate``."""
    if ctx.args.isolate:
        return _isolated_row(ctx, kind, batch, views)
    return _model_row(ctx, kind, batch, compiled=True)


def _models_table(ctx: Ctx) -> None:
    rows = ctx.results["sections"].get("models", [])
    header = ["arch", "mode", "batch", "ms/step", "clips/s", "TFLOP/s", "of matmul", "peak GiB"]
    header.append("1st step s")
    cells = [
        [
            r["arch"],
            r["mode"],
            r["batch"],
            r["step_ms"],
            r["clips_per_s"],
            r["tflops"],
            f"{100 * r['matmul_fraction']:.1f}%",
            r["peak_gib"],
            r["first_step_s"],
        ]
        for r in rows
    ]
    ctx.table("models", "Train step, raw loop (fwd + bwd + fused SGD)", header, cells)
    share = []
    by = {(r["arch"].split("_")[0], r["mode"], r["batch"]): r for r in rows}
    for (kind, mode, batch), r in sorted(by.items()):
        base = by.get(("i3d", mode, batch))
        if kind != "a2net" or base is None:
            continue
        t_share = 1 - base["step_ms"] / r["step_ms"]
        f_share = 1 - ctx.train_flop("i3d") / ctx.train_flop("a2net")
        share.append([mode, batch, f"{100 * t_share:.1f}%", f"{100 * f_share:.1f}%"])
    if share:
        ctx.results["block_share"] = share
        hdr = ["mode", "batch", "A²-blocks' share of step time", "their share of FLOPs"]
        ctx.table("share", "The A²-blocks (a2net − i3d, same run)", hdr, share)


def section_models(ctx: Ctx, compiled: bool = False) -> None:
    """Eager (``models``) or compiled (``compiled``) train steps of each arch and batch."""
    args = ctx.args
    rows = ctx.results["sections"].setdefault("models", [])
    if compiled:
        plan = [(k, b, True) for b in args.compiled_batches for k in args.compiled_archs]
    else:
        plan = [(k, b, False) for b in args.batches for k in args.archs]
    for kind, batch, compiled in plan:
        if any(
            r["arch"] == arch_name(kind, args.arch_scale)
            and r["batch"] == batch
            and r["mode"] == ("compiled" if compiled else "eager")
            for r in rows
        ):
            continue
        estimate = args.compile_estimate_s if compiled else 5.0
        if not ctx.budget.allows(estimate):
            print(f"[models] out of budget: {kind} batch {batch} compiled={compiled} skipped")
            continue
        try:
            row = (
                compiled_row(ctx, kind, batch) if compiled else _model_row(ctx, kind, batch, False)
            )
            rows.append(row)
        except Exception as err:  # OOM or a compiler error: record it and go on
            print(f"[models] {kind} batch {batch} compiled={compiled}: {type(err).__name__}: {err}")
            peak_reset(ctx.device)
        _models_table(ctx)


def section_compiled(ctx: Ctx) -> None:
    section_models(ctx, compiled=True)


def _compiled_a2net_row(ctx: Ctx, key: str, **variant: Any) -> None:
    """One more compiled a2net row at the first compiled batch, in a fresh process (``variant``:
    ``_isolated_row``'s views / mode / stem_stack); a failure is printed and the run goes on."""
    if not ctx.budget.allows(ctx.args.compile_estimate_s):
        print(f"[{key}] out of budget: skipped")
        return
    rows = ctx.results["sections"].setdefault("models", [])
    try:
        rows.append(_isolated_row(ctx, "a2net", ctx.args.compiled_batches[0], **variant))
    except Exception as err:  # a timeout or a compiler error: record it and go on
        print(f"[{key}] {type(err).__name__}: {err}")
    _models_table(ctx)


def section_compiled_5d(ctx: Ctx) -> None:
    """The compiled a2net step with the 2-D views of ``a2video.models.layers`` switched off."""
    _compiled_a2net_row(ctx, "compiled_5d", views=False)


def section_compile_modes(ctx: Ctx) -> None:
    """The compiled a2net step under other ``torch.compile`` modes (``--extra-compile-modes``),
    each in a fresh process: ``reduce-overhead`` replays CUDA graphs, ``max-autotune*`` times
    Triton/cuBLAS/cuDNN choices per layer (minutes to compile)."""
    for mode in ctx.args.extra_compile_modes:
        _compiled_a2net_row(ctx, f"compile_modes {mode}", mode=mode)


def section_compiled_3d_stem(ctx: Ctx) -> None:
    """The compiled a2net step with the stem as a 3-D convolution (not stacked frames)."""
    _compiled_a2net_row(ctx, "compiled_3d_stem", stem_stack=False)


def _stacked_by_unfold(stem: Conv3d, x: Tensor) -> Tensor:
    """A candidate layout of ``Conv3d._time_in_channels`` (same result): cast, pad T, take the
    kt-frame windows with ``unfold`` and copy them once into the channel-padded buffer (one
    index map instead of kt slice writes into zeros), timed against it by the stem section."""
    n, c, _, h, w = x.shape
    kt, (pt, ph, pw) = stem.kernel_size[0], stem.padding
    if torch.is_autocast_enabled(x.device.type):
        x = x.to(torch.get_autocast_dtype(x.device.type))
    windows = F.pad(x.permute(0, 2, 3, 4, 1), (0, 0, 0, 0, 0, 0, pt, pt)).unfold(1, kt, 1)
    width = -(-c * kt // 8) * 8
    stacked = F.pad(windows.reshape(n, -1, h, w, c * kt), (0, width - c * kt))
    weight = F.pad(stem.weight.flatten(1, 2), (0, 0, 0, 0, 0, width - c * kt))
    y = F.conv2d(
        stacked.flatten(0, 1).permute(0, 3, 1, 2), weight, stem.bias, stem.stride[1:], (ph, pw)
    )
    return y.unflatten(0, (n, -1)).transpose(1, 2)


def section_stem(ctx: Ctx) -> None:
    """The 5×7×7 RGB stem as a 3-D convolution and as one 2-D convolution over stacked frames
    (``Conv3d.time_to_channels``): the layer alone (forward + weight gradient, as in training),
    eager and compiled (with a candidate stacking layout), and the whole eager a2net step,
    interleaved."""
    dev, args = ctx.device, ctx.args
    if not ctx.budget.allows(45.0):  # three small compilations
        print("[stem] out of budget: skipped")
        return
    model, step, batch = _eager_a2net_step(ctx)
    stem = model.conv1
    x, _ = ctx.clip(batch)

    def layer(on: bool) -> Callable[[], None]:
        def run() -> None:
            Conv3d.time_to_channels = on
            with ctx.autocast():
                out = stem(x)
            out.backward(torch.ones_like(out))

        return run

    def whole(on: bool) -> Callable[[], None]:
        def run() -> None:
            Conv3d.time_to_channels = on
            step()

        return run

    def compiled(forward: Callable[[Tensor], Tensor]) -> Callable[[], None]:
        fast = torch.compile(forward, backend=args.compile_backend, dynamic=False)

        def run() -> None:
            with ctx.autocast():
                out = fast(x)
            out.backward(torch.ones_like(out))

        return run

    def conv_3d(clip: Tensor) -> Tensor:
        return F.conv3d(clip, stem.weight, None, stem.stride, stem.padding)

    fns = {
        "stem alone, 3-D": layer(False),
        "stem alone, stacked frames": layer(True),
        "a2net eager step, 3-D stem": whole(False),
        "a2net eager step, stacked stem": whole(True),
        "stem alone compiled, 3-D": compiled(conv_3d),
        "stem alone compiled, stacked frames": compiled(
            lambda clip: stem._time_in_channels(clip, stem.weight, stem.bias)
        ),
        "stem alone compiled, stacked by unfold (candidate)": compiled(
            lambda clip: _stacked_by_unfold(stem, clip)
        ),
    }
    for fn in fns.values():  # cuDNN autotuning per layout; compilation
        fn()
    times = interleaved(fns, args.steps, 3, dev)
    Conv3d.time_to_channels = None if args.stem_stack else False
    ctx.results["stem_ms"] = {k: 1e3 * v for k, v in times.items()}
    kt, kh, kw = stem.kernel_size
    rows = [[k, 1e3 * v] for k, v in times.items()]
    title = f"The {kt}×{kh}×{kw} stem (batch {batch}, forward + weight gradient)"
    ctx.table("stem", title, ["what", "ms"], rows)


class SameBatch:
    """An iterable of ``n`` times the same device-resident batch (no loader cost)."""

    def __init__(self, batch: dict[str, Tensor], n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return (self.batch for _ in range(self.n))


def _lightning_pair(ctx: Ctx, batch: int, compiled: bool, rows: list[dict[str, Any]]) -> None:
    """Step time of ``VideoClassifier`` in ``Trainer.fit`` (a row of ``rows``, written at once),
    then of the plain loop over the same network (``--no-lightning-raw``: not run)."""
    import lightning as L

    from a2video.data.datamodules import to_model_input
    from a2video.data.datasets import ClipSpec
    from a2video.training.module import VideoClassifier

    dev, args = ctx.device, ctx.args
    arch = arch_name("a2net", args.arch_scale)
    warm, steps = args.warmup + 1, args.steps  # as _model_row: one first step, then warm-up
    x, y = ctx.clip(batch)
    if args.lightning_input == "uint8":  # what the DataModules' loaders hand over
        x = torch.randint(0, 256, x.shape, dtype=torch.uint8, device=dev)
    spec = ClipSpec()

    class Batches(L.LightningDataModule):
        """The DataModules' device side: their transfer hook normalises uint8 clips, or leaves
        them to a compiled VideoClassifier's graph (``to_model_input``)."""

        uint8_to_module = 0

        def train_dataloader(self) -> SameBatch:
            return SameBatch({"video": x, "label": y}, warm + steps)

        def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
            batch = to_model_input(dict(batch), spec.mean, spec.std, self.trainer.lightning_module)
            self.uint8_to_module += batch["video"].dtype == torch.uint8
            return batch

    class Timer(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if batch_idx == warm:
                sync(dev)
                self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if batch_idx == warm + steps - 1:  # the step itself, not the epoch-end hooks
                sync(dev)
                self.sec = (time.perf_counter() - self.start) / steps

    torch.manual_seed(0)
    if compiled:
        torch._dynamo.reset()
    module = VideoClassifier(
        arch=arch,
        num_classes=args.classes,
        lr=1e-3,
        channels_last=True,
        compile=compiled,
        clip_spec=spec,
    )
    module.compile_options = {"backend": args.compile_backend, "mode": args.compile_mode}
    timer = Timer()
    trainer = L.Trainer(
        accelerator="gpu" if dev.type == "cuda" else "cpu",
        devices=1,
        precision="bf16-mixed" if ctx.amp else "32-true",
        max_steps=warm + steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        benchmark=dev.type == "cuda",
        log_every_n_steps=50,
        callbacks=[timer],
        default_root_dir=str(ctx.out / "lightning_run"),
    )
    data = Batches()
    trainer.fit(module, datamodule=data)
    pair: dict[str, Any] = {
        "mode": "compiled" if compiled else "eager",
        "batch": batch,
        "input": args.lightning_input,
        "lightning_ms": 1e3 * timer.sec,
        "raw_ms": None,
        "uint8_to_module": data.uint8_to_module,  # batches normalised in the compiled graph
    }
    flop = ctx.train_flop("a2net") * batch  # #12's goal is stated on Trainer.fit's own rate
    pair["lightning_clips_per_s"] = batch / timer.sec
    pair["lightning_matmul_fraction"] = ctx.of_matmul(flop, timer.sec)
    del trainer, module
    peak_reset(dev)
    rows.append(pair)  # written before the plain loop runs: a cut-short run keeps this row
    _lightning_table(ctx, rows)
    if not args.lightning_raw:
        return

    # the same network in a plain loop (compiled: in a fresh process, see compiled_row)
    raw = compiled_row(ctx, "a2net", batch) if compiled else _model_row(ctx, "a2net", batch, False)
    models = ctx.results["sections"].setdefault("models", [])
    same = [r for r in models if (r["arch"], r["mode"], r["batch"]) == (arch, raw["mode"], batch)]
    if not same:
        models.append(raw)
        _models_table(ctx)
    pair["raw_ms"] = raw["step_ms"]
    pair["ratio"] = pair["lightning_ms"] / pair["raw_ms"]
    _lightning_table(ctx, rows)


def _lightning_section(ctx: Ctx, compiled: bool) -> None:
    key = "lightning_compiled" if compiled else "lightning"
    rows = ctx.results["sections"].setdefault("lightning", [])
    estimate = (
        (2 if ctx.args.lightning_raw else 1) * ctx.args.compile_estimate_s if compiled else 20.0
    )
    if not ctx.budget.allows(estimate):
        print(f"[{key}] out of budget: skipped")
        return
    batch = ctx.args.lightning_batch or ctx.args.batches[0]
    try:
        _lightning_pair(ctx, batch, compiled, rows)
    except Exception as err:
        print(f"[{key}] {type(err).__name__}: {err}")


def _lightning_table(ctx: Ctx, rows: list[dict[str, Any]]) -> None:
    """Trainer.fit's rows: its step time and rate, and against the plain loop where measured."""

    def given(r: dict) -> str | None:  # the clips Trainer.fit got, and where they were normalised
        if r.get("input") != "uint8":
            return r.get("input")
        return (
            "uint8, normalised in the graph" if r.get("uint8_to_module") else "uint8, by the hook"
        )

    cells = [
        [
            *(r["mode"], r["batch"], given(r), r["raw_ms"], r["lightning_ms"], r.get("ratio")),
            *(r["lightning_clips_per_s"], f"{100 * r['lightning_matmul_fraction']:.1f}%"),
        ]
        for r in rows
    ]
    hdr = ["mode", "batch", "Trainer.fit input", "raw loop ms", "Trainer.fit ms", "Lightning / raw"]
    hdr += ["Trainer.fit clips/s", "Trainer.fit of matmul"]
    ctx.table("lightning", "VideoClassifier in Trainer.fit vs a plain loop (a2net)", hdr, cells)


def section_lightning(ctx: Ctx) -> None:
    _lightning_section(ctx, compiled=False)


def section_lightning_compiled(ctx: Ctx) -> None:
    _lightning_section(ctx, compiled=True)


def _stage_shapes(ctx: Ctx) -> list[tuple[str, int, int, int, int]]:
    """(stage, C, T, H, W) of res2..res5 outputs of the a2net arch (meta device: no compute)."""
    args = ctx.args
    with torch.device("meta"):
        model = build_model(arch_name("a2net", args.arch_scale), num_classes=10)
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        getattr(model, f"layer{i}").register_forward_hook(
            lambda _m, _i, out, i=i: shapes.__setitem__(f"res{i + 1}", tuple(out.shape))
        )
        for i in range(1, 5)
    ]
    with torch.no_grad():
        model(torch.zeros(1, 3, args.frames, args.size, args.size, device="meta"))
    for h in hooks:
        h.remove()
    return [(s, *shapes[s][1:]) for s in sorted(shapes)]


def _block_stages(ctx: Ctx) -> list[tuple[str, int, int, int, int]]:
    """The stages of ``--block-stages``, in the order given (a budget cut loses the last)."""
    shapes = {s[0]: s for s in _stage_shapes(ctx)}
    wanted = [x.strip() for x in ctx.args.block_stages.split(",") if x.strip()]
    unknown = [x for x in wanted if x not in shapes]
    if unknown:
        raise SystemExit(f"bench_gpu: --block-stages {unknown} not in {sorted(shapes)}")
    return [shapes[x] for x in wanted]


class _SplitByChannels(DoubleAttention):
    """The A²-block before 2026-11-27: A, B and V split from the fused projection by channels
    also on a channels-last clip, so their joined gradient reached φ, θ, ρ's convolution
    backward channels-first (and cuDNN copied it into the input's layout)."""

    def _split(self, qkv: Tensor, rows: bool) -> tuple[Tensor, ...]:
        return super()._split(qkv, rows=False)


class _ProjectionsAsGemms(DoubleAttention):
    """A candidate for res2-res3 (not the library's block): on a channels-last clip φθρ and the
    output projection run as GEMMs on the clip's (N·L, C) rows (``F.linear``: cuBLAS) instead of
    1×1×1 convolutions (cuDNN), whose weight and data gradients were the next cost at res2 on
    the H200 (17 % of the compiled block, 2026-11-27). On the CPU it was 1.6-1.7× slower
    (oneDNN's 1×1 convolution beats its sgemm), so it is measured here before any choice."""

    def descriptors(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if x.dim() != 5 or not channels_last_clip(x):
            return super().descriptors(x)
        n, c = x.shape[:2]
        rows = x.permute(0, 2, 3, 4, 1).reshape(-1, c)  # (N·L, C): a view of channels-last
        weight = self.qkv.weight.reshape(self.qkv.weight.shape[0], c)
        qkv = F.linear(rows, weight, self.qkv.bias).reshape(n, -1, weight.shape[0]).mT
        dtype = _compute_dtype(qkv, self.precision)
        with _no_autocast(qkv.device.type):
            a, b, v = self._split(qkv.to(dtype), rows=True)
            return a, torch.softmax(b, dim=2), torch.softmax(v, dim=1)

    def project(self, z: Tensor) -> Tensor:
        if z.dim() != 5 or not channels_last_clip(z):
            return super().project(z)
        n, m, t, h, w = z.shape
        rows = z.permute(0, 2, 3, 4, 1).reshape(-1, m)  # Z is stored positions-major
        out = F.linear(rows, self.proj.weight.reshape(-1, m))  # (N·L, C)
        out = out.reshape(n, t, h, w, -1).permute(0, 4, 1, 2, 3)  # channels-last (N, C, ...)
        return self.bn(out)


# --block-kinds: short name -> the row's label
BLOCK_KINDS = {
    "plain": "a2 auto",
    "folded": "a2 auto, BN folded",
    "split-by-channels": "a2 auto, split by channels",
    "gemm-projections": "a2 auto, projections as GEMMs",
    "non-local": "non-local",
}


def _block_kinds(
    c: int, t: int, h: int, w: int, batch: int, free_bytes: float
) -> dict[str, nn.Module]:
    """The blocks compared at one stage (those whose L×L matrices fit in ``free_bytes``)."""
    length = t * h * w
    kinds: dict[str, nn.Module] = {
        "a2 auto": DoubleAttention(c, association="auto"),
        "a2 left": DoubleAttention(c, association="left"),
        "a2 left fp32": DoubleAttention(c, association="left", precision="float32"),
        "a2 auto, BN folded": DoubleAttention(c, association="auto", fold_bn=True),
        "a2 auto, split by channels": _SplitByChannels(c, association="auto"),
        "a2 auto, projections as GEMMs": _ProjectionsAsGemms(c, association="auto"),
    }
    if 6 * batch * length * length * 2 < free_bytes:  # the right order's L×L (and its grads)
        kinds["a2 right"] = DoubleAttention(c, association="right")
    pool = (1, 2, 2) if min(h, w) >= 2 else None  # keys pooled 1×2×2 as in nl_r50
    if 10 * batch * length * length // (4 if pool else 1) * 2 < free_bytes:
        kinds["non-local"] = NonLocal(c, pool=pool)
    return kinds


def _auto_order(c: int, batch: int, length: int) -> str:
    """The order ``auto`` took at this shape: the timed choice on CUDA, else the cost model."""
    from a2video.models import attention

    for key, order in attention._TIMED_CHOICE.items():
        if key[2] == batch and key[5] == length:
            return order
    return DoubleAttention(c, association="auto")._choose(length)


def _cuda_graph(step: Callable[[], None], dev: torch.device) -> Callable[[], None] | None:
    """``step`` captured as a CUDA graph (replayed without Python/dispatch cost), or None."""
    try:
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):
            for _ in range(3):
                step()
        torch.cuda.current_stream(dev).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        return graph.replay
    except Exception as err:  # capture limits vary by torch build: the row is just left out
        print(f"[blocks] CUDA graph capture failed: {type(err).__name__}: {str(err)[:200]}")
        return None


def _block_step(
    ctx: Ctx, block: nn.Module, x: Tensor, into_grad: bool = False
) -> Callable[[], None]:
    """Forward + backward of an attention block on ``x`` (bf16 autocast on CUDA), as a training
    step runs it inside the network: the upstream gradient exists already (made once here) and
    the gradients of ``x`` and the parameters are returned, not added to ``.grad`` (``x`` is no
    leaf in a network, and after ``zero_grad(set_to_none=True)`` a parameter's gradient is
    assigned).

    ``into_grad``: the rows before 2026-11-27 instead: ``out.backward(torch.ones_like(out))``
    each step, so every step also filled the upstream gradient and added the input's (full-size)
    and the parameters' gradients to the ``.grad`` of the step before.
    """
    if into_grad:

        def backward_into_grad() -> None:
            with ctx.autocast(cache=False):
                out = block(x)
            out.backward(torch.ones_like(out))

        return backward_into_grad
    inputs = [x, *(p for p in block.parameters() if p.requires_grad)]
    upstream: list[Tensor] = []  # the layer after's gradient, in the output's layout, made once

    def step() -> None:
        with ctx.autocast(cache=False):
            out = block(x)
        if not upstream:  # the first (warm-up) call: never inside a CUDA graph's capture
            upstream.append(torch.ones_like(out))
        torch.autograd.grad(out, inputs, upstream[0])

    return step


def _block_input(ctx: Ctx, batch: int, c: int, t: int, h: int, w: int) -> Tensor:
    """A block's input as a2net gives it: channels-last, bf16 under autocast (the bottleneck
    before it ends in a convolution, BatchNorm, add and ReLU that all run in bf16), needing grad.
    """
    dtype = torch.bfloat16 if ctx.amp else torch.float32
    x = torch.randn(batch, c, t, h, w, device=ctx.device, dtype=dtype)
    return x.contiguous(memory_format=CL3D).requires_grad_(True)


def _live_block(ctx: Ctx, block: nn.Module) -> nn.Module:
    """``block`` on the device, channels-last, with a non-zero output BN (not the identity)."""
    torch.manual_seed(0)
    block = block.to(ctx.device).to(memory_format=CL3D)
    nn.init.normal_(block.bn.weight, 1.0, 0.1)
    return block


def _block_table(ctx: Ctx, key: str, title: str, rows: list[dict[str, Any]]) -> None:
    """The table of a block section's rows (with a bare-GEMM rate column where rows have one)."""
    gemm_rate = any("gemm_tflops" in r for r in rows)
    cells = [
        [r["stage"], r["shape"], r["kind"], r["ms"], r["tflops"]]
        + ([r["gemm_tflops"]] if gemm_rate else [])
        + [f"{100 * r['of_gemms']:.0f}%" if r["of_gemms"] else None]
        for r in rows
    ]
    hdr = ["stage", "N×C×T×H×W", "block", "fwd+bwd ms", "TFLOP/s"]
    hdr += ["bare GEMMs TFLOP/s", "of GEMM rate"] if gemm_rate else ["of its bare GEMMs' rate"]
    ctx.table(key, title, hdr, cells)


def section_blocks_compiled(ctx: Ctx) -> None:
    """The A²-block and the non-local block compiled, as the GPU configs train them (forward +
    backward, res2..res5; ``torch.compile(dynamic=False)`` per stage), plain and replayed as a
    CUDA graph, against the A²-block's bare GEMMs replayed as a graph too. The block with its
    output BN folded (``fold_bn``) is measured against the same GEMMs (the plain block's: its
    own add one m×m covariance product), so both rows' "of GEMM rate" share a reference; so
    is the block as it was before 2026-11-27 (``_SplitByChannels``). Each step starts from an
    upstream gradient made once and returns the gradients (``_block_step``); one row per stage
    repeats the rows before 2026-11-27, which also filled the upstream gradient and added to
    ``.grad`` each step."""
    from harness import gemm_flops, gemm_replay, record_gemms  # benchmarks/harness.py

    dev, args = ctx.device, ctx.args
    rows = ctx.results["sections"].setdefault("blocks_compiled", [])
    batch = args.block_batch
    dtype = torch.bfloat16 if ctx.amp else torch.float32
    free = torch.cuda.mem_get_info(dev)[0] * 0.5 if dev.type == "cuda" else 2 * 2**30
    for stage, c, t, h, w in _block_stages(ctx):
        if not ctx.budget.allows(args.block_compile_estimate_s):
            print(f"[blocks_compiled] out of budget at {stage}")
            break
        x = _block_input(ctx, batch, c, t, h, w)
        fns: dict[str, Callable[[], None]] = {}
        flop: dict[str, int] = {}
        kinds = _block_kinds(c, t, h, w, batch, free)
        wanted = ["a2 auto"] + [BLOCK_KINDS[k] for k in args.block_kinds if k != "plain"]
        for name in wanted:  # the plain block first: the others' GEMM reference
            if name not in kinds:
                continue
            block = _live_block(ctx, kinds[name])
            eager = _block_step(ctx, block, x)
            eager()
            gemms = record_gemms(eager)
            fast = torch.compile(
                block, backend=args.compile_backend, mode=args.compile_mode, dynamic=False
            )
            step = _block_step(ctx, fast, x)
            start = time.perf_counter()
            step()
            sync(dev)
            print(
                f"[blocks_compiled] {stage} {name}: compiled in {time.perf_counter() - start:.1f} s"
            )
            label = f"{name} compiled"
            # the plain block's products (a variant's own may be recorded as other ops)
            fns[label], flop[label] = step, flop.get("a2 auto compiled", gemm_flops(gemms))
            graphed = _cuda_graph(step, dev) if dev.type == "cuda" else None
            if graphed is not None:
                fns[f"{label}, CUDA graph"], flop[f"{label}, CUDA graph"] = graphed, flop[label]
            if name == "a2 auto":
                # the rows before 2026-11-27: each step also filled the upstream gradient and
                # added the gradients to the last step's .grad (the input's is full-size)
                old = _block_step(ctx, fast, x, into_grad=True)
                old()
                graphed = _cuda_graph(old, dev) if dev.type == "cuda" else None
                old_label = f"{label}{', CUDA graph' if graphed else ''}, backward into .grad"
                fns[old_label], flop[old_label] = graphed or old, flop[label]
                ops = _kernel_ops({"grad": step, "into .grad": old}, dev, 8)
                if ops:  # which op launched each of the top kernels (the copies' callers)
                    ctx.results.setdefault("blocks_compiled_kernel_ops", {})[stage] = ops
                    _kernel_ops_print(stage, ops)
                replay = gemm_replay(gemms, dev, dtype)
                graphed = _cuda_graph(replay, dev) if dev.type == "cuda" else None
                fns["a2 GEMMs"] = graphed or replay
        times = interleaved(fns, args.block_steps, 3, dev)
        for name in ("a2 auto", "a2 auto, BN folded"):  # where the block's device time goes
            step = fns.get(f"{name} compiled")  # measured (--block-kinds)
            prof = _kernel_profile(step, dev, 5) if step is not None else None
            if prof:
                profiles = ctx.results.setdefault("blocks_compiled_profile", {})
                profiles[stage + name[len("a2 auto") :]] = prof
                _block_profile_table(ctx, profiles)
        for label, f in flop.items():
            gemm = times["a2 GEMMs"] if label.startswith("a2") and "a2 GEMMs" in times else None
            rows.append(
                {
                    "stage": stage,
                    "shape": f"{batch}×{c}×{t}×{h}×{w}",
                    "kind": label,
                    "ms": 1e3 * times[label],
                    "tflops": f / times[label] / 1e12,
                    "of_gemms": gemm / times[label] if gemm else None,
                }
            )
        peak_reset(dev)
        title = "Attention blocks compiled, forward + backward (bf16 autocast)"
        _block_table(ctx, "blocks_compiled", title, rows)


def _block_profile_table(ctx: Ctx, profiles: dict[str, dict[str, Any]]) -> None:
    """Kernel classes of the compiled A²-block's forward + backward, per stage."""
    cells = []
    for stage, prof in profiles.items():
        cats = prof["categories"]
        gemm = sum(v for k, v in cats.items() if k.startswith(("matmul", "convolution")))
        top = "; ".join(f"{n[:48]} {100 * v:.0f}%" for n, v in prof["top"][:3])
        cells.append([stage, prof["device_ms_per_step"], f"{100 * gemm:.0f}%", top])
    hdr = ["stage", "kernel ms / step", "GEMM kernels (cuBLAS + cuDNN)", "top kernels"]
    title = "Where the compiled A²-block's time goes (forward + backward, kernels)"
    ctx.table("blocks_compiled_profile", title, hdr, cells)


def section_blocks(ctx: Ctx) -> None:
    from harness import gemm_flops, gemm_replay, record_gemms  # benchmarks/harness.py

    dev, args = ctx.device, ctx.args
    rows = ctx.results["sections"].setdefault("blocks", [])
    batch = args.block_batch
    free = torch.cuda.mem_get_info(dev)[0] * 0.5 if dev.type == "cuda" else 2 * 2**30
    for stage, c, t, h, w in _block_stages(ctx):
        if not ctx.budget.allows(8.0):
            print(f"[blocks] out of budget at {stage}")
            break
        length = t * h * w
        x = _block_input(ctx, batch, c, t, h, w)
        fns: dict[str, Callable[[], None]] = {}
        flop: dict[str, int] = {}
        for name, block in _block_kinds(c, t, h, w, batch, free).items():
            block = _live_block(ctx, block)
            step = _block_step(ctx, block, x)
            step()  # auto's one-time timing, cuDNN autotuning
            gemms = record_gemms(step)
            flop[name] = gemm_flops(gemms)
            fns[name] = step
            if dev.type == "cuda" and name in ("a2 auto", "non-local"):
                graphed = _cuda_graph(step, dev)  # no CPU dispatch: the device's own rate
                if graphed is not None:
                    fns[f"{name}, CUDA graph"] = graphed
                    flop[f"{name}, CUDA graph"] = flop[name]
            if name.startswith("a2"):
                dtype = torch.bfloat16 if ctx.amp else torch.float32
                fns[f"{name} GEMMs"] = gemm_replay(gemms, dev, dtype)
                if f"{name}, CUDA graph" in fns:  # the reference replayed as a graph too
                    replay = gemm_replay(gemms, dev, dtype)
                    fns[f"{name}, CUDA graph GEMMs"] = _cuda_graph(replay, dev) or replay
        times = interleaved(fns, args.block_steps, 3, dev)
        auto_order = _auto_order(c, batch, length)
        for name in flop:
            sec = times[name]
            rate = flop[name] / sec / 1e12
            gemm = times.get(f"{name} GEMMs")
            rows.append(
                {
                    "stage": stage,
                    "shape": f"{batch}×{c}×{t}×{h}×{w}",
                    "kind": name + (f" ({auto_order})" if name == "a2 auto" else ""),
                    "ms": 1e3 * sec,
                    "tflops": rate,
                    "gemm_tflops": flop[name] / gemm / 1e12 if gemm else None,
                    "of_gemms": gemm / sec if gemm else None,
                }
            )
        peak_reset(dev)
        title = "Attention blocks, forward + backward (bf16 autocast)"
        _block_table(ctx, "blocks", title, rows)


_CATEGORIES = (
    ("convolution", ("conv", "cudnn_convolution")),
    ("batch norm", ("batch_norm",)),
    ("copies / casts", ("copy_", "_to_copy", "contiguous", "clone")),
    ("matmul (bmm/mm)", ("bmm", "mm", "matmul", "addmm", "baddbmm")),
    ("softmax", ("softmax",)),
    ("optimizer", ("fused_sgd", "foreach", "_fused")),
    ("pooling", ("pool",)),
)


def _category(
    name: str,
    categories: tuple[tuple[str, tuple[str, ...]], ...] = _CATEGORIES,
    default: str = "elementwise / other",
) -> str:
    """The first of ``categories`` with a key in ``name`` (an aten op's or a kernel's)."""
    low = name.lower()
    for cat, keys in categories:
        if any(k in low for k in keys):
            return cat
    return default


_KERNEL_CATEGORIES = (  # first match wins: Inductor names kernels after the ops they fuse
    ("fused (Triton)", ("triton",)),
    ("convolution (cuDNN)", ("conv", "xmma", "implicit", "cudnn", "wgrad", "dgrad", "fprop")),
    ("matmul (cuBLAS)", ("gemm", "nvjet", "cutlass", "cublas")),
    ("copies", ("memcpy", "memset", "copy")),
    ("reductions / norms", ("reduce", "norm")),
)


def _kernel_category(name: str) -> str:
    return _category(name, _KERNEL_CATEGORIES, "other kernels")


def _kernel_profile(step: Callable[[], None], dev: torch.device, top: int) -> dict[str, Any]:
    """Device time of 3 ``step`` calls by kernel (a compiled step has no aten ops to read)."""
    from torch.profiler import ProfilerActivity, profile

    if dev.type != "cuda":
        return {}
    sync(dev)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            step()
        sync(dev)
    kernels: dict[str, float] = {}
    for e in prof.events():
        if str(getattr(e, "device_type", "")).endswith("CUDA"):
            kernels[e.name] = kernels.get(e.name, 0.0) + e.device_time_total
    total = sum(kernels.values()) or 1.0
    cats: dict[str, float] = {}
    for name, us in kernels.items():
        cat = _kernel_category(name)
        cats[cat] = cats.get(cat, 0.0) + us / total
    ranked = sorted(kernels.items(), key=lambda kv: -kv[1])[:top]
    return {
        "device_ms_per_step": total / 3 / 1e3,
        "categories": dict(sorted(cats.items(), key=lambda kv: -kv[1])),
        "top": [[name[:90], us / total] for name, us in ranked],
    }


def _kernel_ops(
    steps: dict[str, Callable[[], None]], dev: torch.device, top: int
) -> dict[str, list[list[Any]]]:
    """For each step: its ``top`` kernels by device time, each with the chain of ops that
    launched it (innermost first), over 3 calls; {} off CUDA."""
    from torch.profiler import ProfilerActivity, profile

    if dev.type != "cuda":
        return {}
    found: dict[str, list[list[Any]]] = {}
    for label, step in steps.items():
        sync(dev)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                step()
            sync(dev)
        spent: dict[tuple[str, str], float] = {}
        total = 0.0
        for e in prof.events():
            for k in getattr(e, "kernels", []):
                chain, q = [], e
                while q is not None and len(chain) < 5:
                    chain.append(q.name[:48])
                    q = q.cpu_parent
                key = (k.name[:70], " < ".join(chain))
                spent[key] = spent.get(key, 0.0) + k.duration
                total += k.duration
        ranked = sorted(spent.items(), key=lambda kv: -kv[1])[:top]
        found[label] = [[n, ops, round(us / 3, 1), us / (total or 1.0)] for (n, ops), us in ranked]
    return found


def _kernel_ops_print(stage: str, ops: dict[str, list[list[Any]]]) -> None:
    for label, rows in ops.items():
        print(f"[blocks_compiled] {stage}, a2 auto compiled, {label}: top kernels, by launching op")
        for name, chain, us, share in rows:
            print(f"    {100 * share:4.1f}% {us:8.1f} us/step  {name}  <-  {chain}")


def _kernel_tables(ctx: Ctx, row: dict[str, Any]) -> None:
    """Tables of a compiled row's kernel profile (``--row-profile``), when it has one."""
    prof = row.get("kernels")
    if not prof:
        return
    ctx.results["compiled_profile"] = {"row": f"{row['arch']} {row['mode']} b{row['batch']}"}
    ctx.results["compiled_profile"].update(prof)
    what = f"{row['arch']} {row['mode']}, batch {row['batch']}"
    ms = prof["device_ms_per_step"]
    cells = [[k, f"{100 * v:.1f}%"] for k, v in prof["categories"].items()]
    title = f"Where the compiled step goes ({what}; {ms:.1f} ms of kernels per step)"
    ctx.table("compiled_profile", title, ["kernel class", "share"], cells)
    cells = [[n, f"{100 * v:.1f}%"] for n, v in prof["top"]]
    ctx.table("compiled_kernels", "Top kernels of the compiled step", ["kernel", "share"], cells)


def section_profile(ctx: Ctx) -> None:
    from torch.profiler import ProfilerActivity, profile

    dev, args = ctx.device, ctx.args
    if not ctx.budget.allows(15.0):
        print("[profile] out of budget: skipped")
        return
    model, step, batch = _eager_a2net_step(ctx)
    for _ in range(args.warmup + 1):
        step()
    sync(dev)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(3):
            step()
        sync(dev)
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    key = "self_cpu_time_total"
    if dev.type == "cuda":
        key = "self_device_time_total"
        if not hasattr(events[0], key):  # older torch
            key = "self_cuda_time_total"
    total = sum(getattr(e, key, 0) for e in events) or 1.0
    cats: dict[str, float] = {}
    for e in events:
        cats[_category(e.key)] = cats.get(_category(e.key), 0.0) + getattr(e, key, 0)
    top = sorted(events, key=lambda e: -getattr(e, key, 0))[: args.profile_top]
    ctx.results["profile"] = {
        "categories": {k: v / total for k, v in cats.items()},
        "top_ops": [[e.key, getattr(e, key, 0) / total, e.count // 3] for e in top],
        "ms_per_step": total / 3 / 1e3,
    }
    cells = [[k, f"{100 * v / total:.1f}%"] for k, v in sorted(cats.items(), key=lambda i: -i[1])]
    clock = "device" if dev.type == "cuda" else "CPU"
    title = f"Where a2net's eager step goes (batch {batch}, self {clock} time)"
    ctx.table("profile", title, ["op class", "share"], cells)
    cells = [[n, f"{100 * s:.1f}%", c] for n, s, c in ctx.results["profile"]["top_ops"]]
    ctx.table("profile_ops", f"Top aten ops (self {clock} time)", ["op", "share", "calls"], cells)
    del model, step
    peak_reset(dev)


def set_views(on: bool) -> None:
    """Switches the 2-D views of ``a2video.models.layers`` (convolutions and max-pools)."""
    Conv3d.as_2d = MaxPool3d.as_2d = on


def _set_variant(
    parts: dict[str, list[nn.Module]], fold: bool, precision: str, views: bool, relu_inplace: bool
) -> None:
    """Sets the layout/precision options; ``parts``: the model's attention blocks and ReLUs,
    listed once (not walked again inside the timed steps)."""
    BatchNorm3d.fold_time = fold
    set_views(views)
    for blk in parts["blocks"]:
        blk.precision = precision
    for relu in parts["relus"]:
        relu.inplace = relu_inplace


def section_variants(ctx: Ctx) -> None:
    """Whole-step and per-layer timings of the layout/precision options, interleaved."""
    dev, args = ctx.device, ctx.args
    if not ctx.budget.allows(25.0):
        print("[variants] out of budget: skipped")
        return
    model, step, batch = _eager_a2net_step(ctx)
    configs = {
        "before #12 (5-D BN, convs, pools; A² products fp32)": (False, "float32", False, True),
        "BN folded to 4-D + A² bf16 (the last run's default)": (True, "autocast", False, True),
        "… + ReLU not in place (no CopySlices copies)": (True, "autocast", False, False),
        "convs and pools on 2-D views alone": (False, "float32", True, False),
        "all (the default now)": (True, "autocast", True, False),
        "all, but ReLU in place": (True, "autocast", True, True),
    }

    parts = {
        "blocks": list(model.attention_blocks.values()),
        "relus": [m for m in model.modules() if isinstance(m, nn.ReLU)],
    }

    def variant(cfg: tuple[bool, str, bool, bool]) -> Callable[[], None]:
        def run() -> None:
            _set_variant(parts, *cfg)
            step()

        return run

    fns = {name: variant(cfg) for name, cfg in configs.items()}
    for fn in fns.values():  # cuDNN autotuning per layout
        fn()
    times = interleaved(fns, args.steps // 2 or 1, 3, dev)
    base = times[next(iter(configs))]
    rows = [[n, 1e3 * s, batch / s, base / s] for n, s in times.items()]
    ctx.results["variants"] = {"whole_step_ms": {k: 1e3 * v for k, v in times.items()}}
    hdr = ["a2net eager step", "ms", "clips/s", "speed-up"]
    ctx.table("variants", f"Layout / precision options (batch {batch})", hdr, rows)
    _set_variant(parts, True, "autocast", True, False)
    fns.clear()  # the closures hold the model: free its memory before the per-layer rows
    peak_reset(dev)

    # Per layer, forward + backward: each layout option alone at a2net's shapes.
    layer: dict[str, Callable[[], None]] = {}
    dtype = torch.bfloat16 if ctx.amp else None

    def feature(c: int, t: int, h: int, w: int) -> Tensor:
        x = torch.randn(batch, c, t, h, w, device=dev, dtype=dtype)
        return x.contiguous(memory_format=CL3D).requires_grad_(True)

    def timed_layer(mod: nn.Module, x: Tensor, switch: Callable[[bool], None], on: bool):
        mod = mod.to(dev).to(memory_format=CL3D)

        def run() -> None:
            switch(on)
            with ctx.autocast():
                out = mod(x)
            out.backward(torch.ones_like(out))

        return run

    def fold(on: bool) -> None:
        BatchNorm3d.fold_time = on

    (res2, c2, t2, h2, w2), (res3, c3, t3, h3, w3) = _stage_shapes(ctx)[:2]
    width = c2 // 4
    cases = [
        (f"BN {res2} {c2}×{t2}×{h2}×{w2}", BatchNorm3d(c2), feature(c2, t2, h2, w2), fold),
        (f"BN {res3} {c3}×{t3}×{h3}×{w3}", BatchNorm3d(c3), feature(c3, t3, h3, w3), fold),
        (
            f"conv 1×3×3 {res2} {width}×{t2}×{h2}×{w2}",
            Conv3d(width, width, (1, 3, 3), padding=(0, 1, 1), bias=False),
            feature(width, t2, h2, w2),
            set_views,
        ),
        (
            f"conv 3×1×1 {res3} {c3}→{c3 // 4}×{t3}×{h3}×{w3}",
            Conv3d(c3, c3 // 4, (3, 1, 1), padding=(1, 0, 0), bias=False),
            feature(c3, t3, h3, w3),
            set_views,
        ),
        (
            f"conv 1×1×1 {res2} {width}→{c2}×{t2}×{h2}×{w2}",
            Conv3d(width, c2, 1, bias=False),
            feature(width, t2, h2, w2),
            set_views,
        ),
        (
            f"max-pool 1×3×3 stem {width}×{t2}×{2 * h2}×{2 * w2}",
            MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            feature(width, t2, 2 * h2, 2 * w2),
            set_views,
        ),
    ]
    for name, mod, x, switch in cases:
        on = "2-D view" if switch is set_views else "folded 4-D"
        layer[f"{name}, 5-D"] = timed_layer(mod, x, switch, False)
        layer[f"{name}, {on}"] = timed_layer(mod, x, switch, True)
    times = interleaved(layer, args.steps, 3, dev)
    BatchNorm3d.fold_time = True
    set_views(True)
    ctx.results["variants"]["layers_ms"] = {k: 1e3 * v for k, v in times.items()}
    rows = [[k, 1e3 * v] for k, v in times.items()]
    ctx.table("variant_layers", "Per layer, forward + backward", ["layer", "ms"], rows)


RUNNERS: dict[str, Callable[[Ctx], None]] = {
    "info": section_info,
    "models": section_models,
    "compiled": section_compiled,
    "lightning": section_lightning,
    "lightning_compiled": section_lightning_compiled,
    "blocks": section_blocks,
    "profile": section_profile,
    "variants": section_variants,
    "compiled_5d": section_compiled_5d,
    "compile_modes": section_compile_modes,
    "stem": section_stem,
    "blocks_compiled": section_blocks_compiled,
    "compiled_3d_stem": section_compiled_3d_stem,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for bench_gpu.md and bench_gpu.json")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch-scale", choices=("full", "tiny"), default="full")
    p.add_argument("--sections", default=DEFAULT_SECTIONS, help=f"comma list of {list(RUNNERS)}")
    p.add_argument("--budget-s", type=float, default=280.0, help="wall-clock budget of the run")
    p.add_argument("--archs", default="i3d,a2net,nl")
    p.add_argument("--batches", default="16,32")
    p.add_argument("--lightning-batch", type=int, default=None, help="default: --batches' 1st")
    p.add_argument(
        "--lightning-input",
        choices=("uint8", "float"),
        default="uint8",
        help="Trainer.fit's clips: uint8 normalised on the device by the DataModules' hook, as "
        "users train (default), or float channels-last clips, as the raw loop gets them",
    )
    p.add_argument(
        "--no-lightning-raw",
        dest="lightning_raw",
        action="store_false",
        help="time Trainer.fit alone, without the plain loop it is compared with",
    )
    p.add_argument("--compiled-archs", default="a2net,i3d")
    p.add_argument("--compiled-batches", default="16")
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument("--compile-mode", default=None)
    p.add_argument("--extra-compile-modes", default="reduce-overhead,max-autotune-no-cudagraphs")
    p.add_argument("--compile-estimate-s", type=float, default=70.0)
    p.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--classes", type=int, default=400)
    p.add_argument("--steps", type=int, default=None, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--block-batch", type=int, default=8)
    p.add_argument(
        "--block-stages",
        default="res2,res3,res4,res5",
        help="stages of the block sections, in this order (a budget cut loses the last)",
    )
    p.add_argument(
        "--block-kinds",
        type=lambda v: [k.strip() for k in v.split(",") if k.strip()],
        default=list(BLOCK_KINDS),
        help="blocks_compiled: the blocks measured beside the plain A²-block, of "
        + ", ".join(BLOCK_KINDS),
    )
    p.add_argument("--block-steps", type=int, default=None)
    p.add_argument(
        "--block-compile-estimate-s",
        type=float,
        default=40.0,
        help="blocks_compiled: seconds to compile one stage's two blocks",
    )
    p.add_argument("--profile-top", type=int, default=15)
    p.add_argument(
        "--no-isolate",
        dest="isolate",
        action="store_false",
        help="compile in this process instead of one fresh process per compiled row",
    )
    p.add_argument(
        "--no-2d-views",
        dest="views",
        action="store_false",
        help="run convolutions and max-pools as 5-D (a2video.models.layers)",
    )
    p.add_argument(
        "--no-stem-stack",
        dest="stem_stack",
        action="store_false",
        help="run the RGB stem as a 3-D convolution (a2video.models.layers.Conv3d)",
    )
    p.add_argument(
        "--no-row-profile",
        dest="row_profile",
        action="store_false",
        help="skip the kernel profile of the first compiled row (CUDA only)",
    )
    p.add_argument("--row-kernels", action="store_true", help=argparse.SUPPRESS)  # in a --row
    p.add_argument("--row", default=None, help=argparse.SUPPRESS)  # KIND:BATCH, one compiled row
    p.add_argument("--matmul-tflops", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = sorted(set(args.block_kinds) - set(BLOCK_KINDS))
    if unknown:
        p.error(f"--block-kinds {', '.join(unknown)}: not one of {', '.join(BLOCK_KINDS)}")
    tiny = args.arch_scale == "tiny"
    args.frames = args.frames or (4 if tiny else 8)
    args.size = args.size or (32 if tiny else 224)
    args.steps = args.steps or (2 if tiny else 10)
    args.block_steps = args.block_steps or (2 if tiny else 10)
    if tiny:  # seconds on a CPU
        args.block_batch = min(args.block_batch, 2)
        args.batches = args.batches if args.batches != "16,32" else "2,4"
        args.compiled_batches = args.compiled_batches if args.compiled_batches != "16" else "2"
    if torch.device(args.device).type != "cuda":
        args.dtype = "fp32"  # bf16 autocast is for GPUs (see docs/training.md on CPU bf16)
    args.archs = [a for a in args.archs.split(",") if a]
    args.compiled_archs = [a for a in args.compiled_archs.split(",") if a]
    args.batches = [int(b) for b in args.batches.split(",") if b]
    args.compiled_batches = [int(b) for b in args.compiled_batches.split(",") if b]
    args.sections = [s for s in args.sections.split(",") if s]
    args.extra_compile_modes = [m for m in args.extra_compile_modes.split(",") if m]
    for name in args.sections:
        if name not in RUNNERS:
            p.error(f"--sections: unknown section {name!r}; choose from {list(RUNNERS)}")
    for a in args.archs + args.compiled_archs:
        if a not in ARCHS:
            p.error(f"--archs: unknown arch {a!r}; choose from {list(ARCHS)}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    ctx = Ctx(args)
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    set_views(args.views)
    if not args.stem_stack:
        Conv3d.time_to_channels = False
    if args.row:  # a child of _isolated_row: one compiled row, printed as JSON
        kind, batch = args.row.split(":")
        ctx.results["info"] = {"matmul_tflops": args.matmul_tflops}
        row = _model_row(ctx, kind, int(batch), compiled=True)
        row["pid"] = os.getpid()
        print(ROW_MARK + json.dumps(row), flush=True)
        return row
    sections = args.sections if "info" in args.sections else ["info", *args.sections]
    for name in sections:
        start = time.perf_counter()
        print(f"\n== {name} (budget left {ctx.budget.left():.0f} s)", flush=True)
        try:
            RUNNERS[name](ctx)
        except Exception as err:  # one section failing never loses the others
            print(f"[{name}] failed: {type(err).__name__}: {err}", flush=True)
            ctx.results.setdefault("errors", {})[name] = f"{type(err).__name__}: {err}"
        ctx.results.setdefault("section_s", {})[name] = time.perf_counter() - start
        ctx.write()
    print(f"\nwrote {ctx.out / 'bench_gpu.md'} and {ctx.out / 'bench_gpu.json'}")
    return ctx.results


if __name__ == "__main__":
    main()
