"""Benchmark logic and report writers shared by ``benchmarks/bench_*.py`` and
``benchmarks/bench.py`` (``a2video bench`` runs it from a source checkout).

Three measurements back the paper's efficiency claim (Chen et al. 2018, Section 2.3: double
attention gathers and distributes global features at a fraction of the non-local block's cost):

- :func:`bench_stage`: forward+backward time and peak memory of one attention block
  (DoubleAttention left/right/auto, NonLocal) at one feature-map shape, the achieved GFLOP/s, and
  the GFLOP/s of plain matrix products of the same sizes (the block's own GEMMs replayed with
  ``torch.mm`` on preallocated operands) and of one square matrix product of the same total work,
  all timed interleaved in the same process.
- :func:`bench_model`: clips/s of a whole network for inference or training, eager or
  ``torch.compile``, contiguous or ``channels_last_3d``.
- :func:`block_share`: the attention blocks' share of a training step's time against their share
  of its FLOPs.

Timing rule: the machines these run on are shared, so every comparison is made side by side: the
candidates of one comparison run round-robin (one repetition of each in turn) and each reports
its median. Absolute times are only meaningful next to :func:`machine_info`.
"""

from __future__ import annotations

import datetime
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from a2video.models.attention import attention_blocks

BLOCK_KINDS = ("a2_left", "a2_right", "a2_auto", "nonlocal")
STAGES = ("res2", "res3", "res4", "res5")
# (arch, frames, size): the paper's Kinetics model and its ablation backbone.
CONFIGS: dict[str, tuple[str, int, int]] = {
    "r50": ("a2net_r50", 8, 224),
    "r26": ("a2net_r26", 16, 112),
}
GIB = 1024**3


# ----------------------------------------------------------------------------- machine and timing


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else what platform reports)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """What the numbers were measured on: CPU model, cores, threads, torch, GPU, date."""
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "nproc": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        import psutil

        info["mem_total_gib"] = round(psutil.virtual_memory().total / GIB, 1)
    except ImportError:  # pragma: no cover - psutil is a dependency
        pass
    return info


def _sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    fns: dict[str, Callable[[], Any]],
    reps: int,
    *,
    warmup: int = 1,
    device: torch.device | str = "cpu",
    budget_s: float | None = None,
) -> dict[str, list[float]]:
    """Times each callable ``reps`` times, round-robin, after ``warmup`` untimed calls each.

    Args:
        fns: Name -> callable to time.
        reps: Repetitions of each callable (fewer if ``budget_s`` runs out, never fewer than 1).
        warmup: Untimed calls of each callable before timing.
        device: Synchronised around each call when it is a CUDA device.
        budget_s: Stop adding rounds once this many seconds were spent timing.

    Returns:
        Name -> list of seconds, one entry per repetition.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    start = time.perf_counter()
    for _ in range(reps):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
        if budget_s is not None and time.perf_counter() - start > budget_s:
            break
    return times


def failed_status(err: BaseException, limit: int = 160) -> str:
    """A result row's status for a measurement that raised: ``failed (Type: message)``.

    Keeps the message's first line whole up to ``limit`` characters; a longer one is cut at a
    word boundary and ends with an ellipsis (never mid-word).
    """
    lines = str(err).strip().splitlines()
    first = " ".join(lines[0].split()) if lines else ""
    if len(first) > limit:
        head = first[: limit + 1]
        cut = head.rfind(" ")
        first = (head[:cut] if cut > 0 else first[:limit]).rstrip(" ,;:.([{") + "…"
    return f"failed ({type(err).__name__}: {first})" if first else f"failed ({type(err).__name__})"


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


# ----------------------------------------------------------------------------- shapes


@dataclass
class StageShape:
    """The feature map entering a stage's attention blocks (batch excluded)."""

    config: str
    stage: str
    channels: int
    frames: int
    height: int
    width: int
    source: str  # "model" (read from a forward hook) or "analytic"

    @property
    def length(self) -> int:
        return self.frames * self.height * self.width


def _analytic_shapes(config: str, frames: int, size: int) -> list[StageShape]:
    # I3D ResNet: stem strides 4 in space, no temporal stride; each later stage halves H, W.
    return [
        StageShape(config, s, 256 * 2**i, frames, size // 4 // 2**i, size // 4 // 2**i, "analytic")
        for i, s in enumerate(STAGES)
    ]


def stage_shapes(config: str) -> list[StageShape]:
    """Real res2..res5 output shapes of ``CONFIGS[config]``'s network, from forward hooks.

    Falls back to the analytic I3D shapes when the model registry is not importable.
    """
    arch, frames, size = CONFIGS[config]
    try:
        from a2video.models import build_model
    except ImportError:
        return _analytic_shapes(config, frames, size)
    model = build_model(arch, num_classes=10).eval()
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        getattr(model, f"layer{i + 1}").register_forward_hook(
            lambda _m, _i, out, s=s: shapes.__setitem__(s, tuple(out.shape))
        )
        for i, s in enumerate(STAGES)
    ]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, frames, size, size))
    finally:
        for h in hooks:
            h.remove()
    return [
        StageShape(config, s, shapes[s][1], shapes[s][2], shapes[s][3], shapes[s][4], "model")
        for s in STAGES
    ]


# ----------------------------------------------------------------------------- blocks


def make_block(kind: str, channels: int) -> nn.Module:
    """A fresh attention block: ``a2_left|a2_right|a2_auto`` or ``nonlocal`` (embedded Gaussian)."""
    from a2video.models.attention import DoubleAttention, NonLocal

    if kind.startswith("a2_"):
        return DoubleAttention(channels, association=kind[3:])
    if kind == "nonlocal":
        return NonLocal(channels)
    raise ValueError(f"unknown block kind {kind!r}; expected one of {BLOCK_KINDS}")


def resolved_association(block: nn.Module, length: int) -> str | None:
    """The association an A²-block runs at ``length`` positions (None for other blocks)."""
    if not hasattr(block, "m") or not hasattr(block, "association"):
        return None
    if block.association != "auto":
        return block.association
    from a2video.models.attention import association_cost

    cost = association_cost(block.m, block.n, length)
    return "left" if cost["left"] <= cost["right"] else "right"


def estimate_peak_bytes(kind: str, channels: int, length: int, batch: int, elem: int = 4) -> int:
    """Rough upper estimate of a block's forward+backward extra memory (to skip what cannot fit).

    Calibrated on the profiler's measurements: the non-local block holds about four L×L tensors
    (affinity, scaled affinity, softmax, its gradient), the right association about two.
    """
    linear = 8 * channels * length * batch * elem
    sq = length * length * batch * elem
    if kind == "nonlocal":
        return linear + int(4.5 * sq)
    if kind == "a2_right" or (kind == "a2_auto" and length < channels // 4):
        return linear + int(2.5 * sq)
    return linear


def _fwd_bwd(block: nn.Module, x: Tensor, device: torch.device, dtype: torch.dtype):
    autocast = device.type == "cuda" and dtype != torch.float32

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=autocast):
            y = block(x)
        y.float().sum().backward()

    return step


def cpu_peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak bytes allocated by torch on the CPU during ``fn()``, above what was live before.

    Reads the allocation and free events of ``torch.profiler(profile_memory=True)`` in time order
    and returns the running sum's maximum: the CPU analogue of ``torch.cuda.max_memory_allocated``.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    cur = peak = 0
    for e in events:
        if e.device_type() != torch.autograd.DeviceType.CPU:
            continue
        cur += e.nbytes()
        peak = max(peak, cur)
    return peak


def peak_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak extra memory of ``fn()`` on ``device`` (CPU: profiler events; CUDA: allocator)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    return cpu_peak_bytes(fn)


# GEMM recording: the block's matrix products (convolutions as the matrix products they are), so
# the same products can be timed bare, as the machine's limit for this work.


def record_gemms(fn: Callable[[], Any]) -> list[tuple[int, int, int, int]]:
    """Runs ``fn`` and returns its matrix products as (batch, M, K, N) tuples.

    mm/addmm/bmm/baddbmm are taken as they are; a convolution of kernel volume k is the product
    (C_out × C_in·k)(C_in·k × L_out); its backward the two products giving the input and weight
    gradients.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    aten = torch.ops.aten
    gemms: list[tuple[int, int, int, int]] = []

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            packet = getattr(func, "overloadpacket", None)
            if packet in (aten.mm,):
                a, b = args[0], args[1]
                gemms.append((1, a.shape[0], a.shape[1], b.shape[1]))
            elif packet in (aten.addmm,):
                a, b = args[1], args[2]
                gemms.append((1, a.shape[0], a.shape[1], b.shape[1]))
            elif packet in (aten.bmm,):
                a, b = args[0], args[1]
                gemms.append((a.shape[0], a.shape[1], a.shape[2], b.shape[2]))
            elif packet in (aten.baddbmm,):
                a, b = args[1], args[2]
                gemms.append((a.shape[0], a.shape[1], a.shape[2], b.shape[2]))
            elif packet in (aten.convolution,):
                x, w = args[0], args[1]
                out = func(*args, **kwargs)
                kvol = math.prod(w.shape[2:])
                lo = out[0].numel() // out.shape[1]  # positions of one output channel, batch incl.
                gemms.append((1, w.shape[0], w.shape[1] * kvol, lo * x.shape[0]))
                return out
            elif packet in (aten.convolution_backward,):
                grad, x, w = args[0], args[1], args[2]
                mask = args[-1]
                kvol = math.prod(w.shape[2:])
                lo = grad.numel() // grad.shape[1]
                if mask[0]:  # grad input: (C_in·k × C_out)(C_out × L)
                    gemms.append((1, w.shape[1] * kvol, w.shape[0], lo))
                if mask[1]:  # grad weight: (C_out × L)(L × C_in·k)
                    gemms.append((1, w.shape[0], lo, w.shape[1] * kvol))
            return func(*args, **kwargs)

    with Recorder():
        fn()
    return gemms


def gemm_flops(gemms: list[tuple[int, int, int, int]]) -> int:
    """FLOPs (2 per multiply-add) of a list of (batch, M, K, N) products."""
    return sum(2 * b * m * k * n for b, m, k, n in gemms)


def gemm_replay(
    gemms: list[tuple[int, int, int, int]], device: torch.device, dtype: torch.dtype
) -> Callable[[], None]:
    """A callable running the same products with ``torch.mm``/``bmm`` into preallocated outputs."""
    ops = []
    for b, m, k, n in gemms:
        lhs = torch.randn(b, m, k, device=device, dtype=dtype)
        rhs = torch.randn(b, k, n, device=device, dtype=dtype)
        out = torch.empty(b, m, n, device=device, dtype=dtype)
        ops.append((lhs, rhs, out))

    def run() -> None:
        for lhs, rhs, out in ops:
            torch.bmm(lhs, rhs, out=out)

    return run


def square_matmul(flops: int, device: torch.device, dtype: torch.dtype) -> Callable[[], None]:
    """One square ``torch.mm`` of (about) ``flops`` FLOPs, capped at 4096² (the rest repeated)."""
    side = max(64, round((flops / 2) ** (1 / 3)))
    repeat = 1
    if side > 4096:
        repeat = max(1, round(flops / (2 * 4096**3)))
        side = 4096
    a = torch.randn(side, side, device=device, dtype=dtype)
    b = torch.randn(side, side, device=device, dtype=dtype)
    out = torch.empty(side, side, device=device, dtype=dtype)

    def run() -> None:
        for _ in range(repeat):
            torch.mm(a, b, out=out)

    run.flops = 2 * side**3 * repeat  # type: ignore[attr-defined]
    return run


@dataclass
class BlockResult:
    config: str
    stage: str
    kind: str
    shape: list[int]  # N, C, T, H, W
    device: str
    dtype: str
    association: str | None = None
    status: str = "ok"  # ok | skipped (...) | failed (...)
    time_ms: float | None = None
    times_ms: list[float] = field(default_factory=list)
    peak_mib: float | None = None
    gflop: float | None = None  # forward+backward, 2 FLOPs per multiply-add
    gflops: float | None = None  # achieved GFLOP/s
    gemm_gflops: float | None = None  # same products bare (torch.mm), same run
    square_gflops: float | None = None  # one square mm of the same total work, same run


def bench_stage(
    shape: StageShape,
    kinds: tuple[str, ...] = BLOCK_KINDS,
    *,
    batch: int = 1,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    reps: int = 5,
    budget_s: float = 60.0,
    max_mem_gib: float | None = None,
    with_reference: bool = True,
) -> list[BlockResult]:
    """Forward+backward time, peak memory and GFLOP/s of each block kind at one shape.

    The kinds (and the bare-GEMM references of the first A²-kind) are timed interleaved.

    Args:
        shape: The stage's feature map.
        kinds: Block kinds to measure (see :func:`make_block`).
        batch: Clips per batch.
        device: ``"cpu"`` or a CUDA device.
        dtype: float32, or bfloat16 (autocast on CUDA).
        reps: Timed repetitions per kind (reduced to fit ``budget_s``).
        budget_s: Time budget for the timed rounds.
        max_mem_gib: Skip kinds whose estimated memory exceeds this (default: 80% of free memory).
        with_reference: Also time the bare GEMM references.
    """
    dev = torch.device(device)
    if max_mem_gib is None:
        if dev.type == "cuda":
            free, _ = torch.cuda.mem_get_info(dev)
        else:
            import psutil

            free = psutil.virtual_memory().available
        max_mem_gib = 0.8 * free / GIB
    n, c, t, h, w = batch, shape.channels, shape.frames, shape.height, shape.width
    elem = torch.finfo(dtype).bits // 8
    results: list[BlockResult] = []
    steps: dict[str, Callable[[], None]] = {}
    for kind in kinds:
        r = BlockResult(shape.config, shape.stage, kind, [n, c, t, h, w], device, str(dtype)[6:])
        results.append(r)
        est = estimate_peak_bytes(kind, c, shape.length, n, max(elem, 4)) / GIB
        if est > max_mem_gib:
            r.status = f"skipped (needs ~{est:.1f} GiB > {max_mem_gib:.1f} GiB)"
            continue
        torch.manual_seed(0)
        block = make_block(kind, c)
        r.association = resolved_association(block, shape.length)
        try:
            x = torch.randn(n, c, t, h, w, device=dev, requires_grad=True)
            step = _fwd_bwd(block.to(dev), x, dev, dtype)
            r.peak_mib = peak_bytes(step, dev) / 2**20
        except (RuntimeError, MemoryError) as err:  # out of memory
            r.status = failed_status(err)
            continue
        gemms = record_gemms(step)
        r.gflop = gemm_flops(gemms) / 1e9
        steps[kind] = step
        if with_reference and "gemm" not in steps:
            gdtype = dtype if dev.type == "cuda" else torch.float32
            steps["gemm"] = gemm_replay(gemms, dev, gdtype)
            steps["square"] = square_matmul(gemm_flops(gemms), dev, gdtype)
            ref_flops = {"gemm": gemm_flops(gemms), "square": steps["square"].flops}
            ref_kind = kind
    if not steps:
        return results
    times = interleaved(steps, reps, device=dev, budget_s=budget_s)
    ref_gflops = {}
    if with_reference and "gemm" in steps:
        ref_gflops = {k: ref_flops[k] / median(times[k]) / 1e9 for k in ("gemm", "square")}
    for r in results:
        if r.kind not in times:
            continue
        r.times_ms = [1e3 * s for s in times[r.kind]]
        r.time_ms = median(r.times_ms)
        r.gflops = r.gflop / (r.time_ms / 1e3)
        if ref_gflops and r.kind == ref_kind:
            r.gemm_gflops = ref_gflops["gemm"]
            r.square_gflops = ref_gflops["square"]
    return results


def bench_stage_subprocess(shape: StageShape, **kwargs: Any) -> list[BlockResult]:
    """:func:`bench_stage` in a fresh interpreter, so an out-of-memory kill loses one stage only.

    A stage whose worker dies is re-run without the kinds that need an L×L tensor, and those are
    reported as failed.
    """
    kinds = tuple(kwargs.pop("kinds", BLOCK_KINDS))
    dtype = kwargs.pop("dtype", torch.float32)
    payload = {"shape": asdict(shape), "kinds": kinds, "dtype": str(dtype)[6:], **kwargs}
    here = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import sys; sys.path[:0] = [{here!r}, {os.path.dirname(here)!r}]; "
        "from harness import _worker; _worker(sys.argv[1])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(payload)],
        capture_output=True,
        text=True,
        env={**os.environ, "KINETO_LOG_LEVEL": "5"},
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == 0 and lines:
        return [BlockResult(**d) for d in json.loads(lines[-1])["results"]]
    reason = f"failed (worker exit {proc.returncode}, likely out of memory)"
    linear = tuple(
        k for k in kinds if estimate_peak_bytes(k, shape.channels, shape.length, 1) < GIB
    )
    if set(linear) == set(kinds):
        raise RuntimeError(f"bench worker failed: {proc.stderr[-2000:]}")
    rest = bench_stage_subprocess(shape, kinds=linear, dtype=dtype, **kwargs)
    failed = [
        BlockResult(
            shape.config,
            shape.stage,
            k,
            [1, shape.channels, shape.frames, shape.height, shape.width],
            kwargs.get("device", "cpu"),
            str(dtype)[6:],
            status=reason,
        )
        for k in kinds
        if k not in linear
    ]
    return rest + failed


def _worker(payload_json: str) -> None:
    payload = json.loads(payload_json)
    torch.set_num_threads(payload.pop("threads", torch.get_num_threads()))
    shape = StageShape(**payload.pop("shape"))
    payload["kinds"] = tuple(payload["kinds"])
    payload["dtype"] = getattr(torch, payload["dtype"])
    results = bench_stage(shape, **payload)
    print(json.dumps({"results": [asdict(r) for r in results]}))


# ----------------------------------------------------------------------------- whole models


@dataclass
class ModelResult:
    arch: str
    mode: str  # infer | train
    compile: bool
    channels_last: bool
    clip: list[int]  # B, 3, T, H, W
    device: str
    dtype: str
    views_2d: bool = True  # a2video.models.layers: convs/pools as 2-D kernels on views
    status: str = "ok"
    clips_per_s: float | None = None
    step_ms: float | None = None
    times_ms: list[float] = field(default_factory=list)
    compile_s: float | None = None


def _model_step(
    arch: str,
    mode: str,
    *,
    frames: int,
    size: int,
    batch: int,
    num_classes: int,
    compile: bool,
    channels_last: bool,
    device: torch.device,
    dtype: torch.dtype,
    views_2d: bool = True,
) -> Callable[[], None]:
    from a2video.models import build_model
    from a2video.models.layers import Conv3d, MaxPool3d

    def switch() -> None:  # class-wide: set before every call (the variants interleave)
        Conv3d.as_2d = MaxPool3d.as_2d = views_2d

    torch.manual_seed(0)
    model = build_model(arch, num_classes=num_classes).to(device)
    x = torch.randn(batch, 3, frames, size, size, device=device)
    y = torch.randint(0, num_classes, (batch,), device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    net: Callable[[Tensor], Tensor] = torch.compile(model) if compile else model
    autocast = dtype != torch.float32
    if mode == "infer":
        model.eval()

        def step() -> None:
            switch()
            with torch.inference_mode(), torch.autocast(device.type, dtype, enabled=autocast):
                net(x)

        return step
    if mode != "train":
        raise ValueError(f"mode must be 'infer' or 'train', got {mode!r}")
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        switch()
        with torch.autocast(device.type, dtype, enabled=autocast):
            loss = nn.functional.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def bench_model(
    arch: str,
    *,
    frames: int = 8,
    size: int = 224,
    batch: int = 1,
    modes: tuple[str, ...] = ("infer", "train"),
    compile_opts: tuple[bool, ...] = (False,),
    channels_last_opts: tuple[bool, ...] = (False,),
    views_2d_opts: tuple[bool, ...] = (True,),
    num_classes: int = 400,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    reps: int = 5,
    warmup: int = 2,
    budget_s: float = 120.0,
) -> list[ModelResult]:
    """Clips/s of ``arch`` for every combination of mode × compile × channels_last_3d × 2-D views.

    The variants of one mode are timed interleaved; compilation happens in the warm-up, timed
    separately (``compile_s``).
    """
    from a2video.models.registry import UnknownArchError, list_models

    if arch not in list_models():  # a bad name is the caller's error, not a failed measurement
        raise UnknownArchError(f"unknown arch {arch!r}; choose from {', '.join(list_models())}")
    dev = torch.device(device)
    results: list[ModelResult] = []
    for mode in modes:
        steps: dict[int, Callable[[], None]] = {}
        for comp in compile_opts:
            for cl, v2 in itertools.product(channels_last_opts, views_2d_opts):
                r = ModelResult(
                    arch,
                    mode,
                    comp,
                    cl,
                    [batch, 3, frames, size, size],
                    views_2d=v2,
                    device=device,
                    dtype=str(dtype)[6:],
                )
                results.append(r)
                try:
                    step = _model_step(
                        arch,
                        mode,
                        frames=frames,
                        size=size,
                        batch=batch,
                        num_classes=num_classes,
                        compile=comp,
                        channels_last=cl,
                        views_2d=v2,
                        device=dev,
                        dtype=dtype,
                    )
                    t0 = time.perf_counter()
                    step()
                    _sync(dev)
                    if comp:
                        r.compile_s = time.perf_counter() - t0
                except Exception as err:  # out of memory, a compiler error: one row
                    r.status = failed_status(err)
                    continue
                steps[len(results) - 1] = step
        if not steps:
            continue
        named = {str(i): fn for i, fn in steps.items()}
        times = interleaved(named, reps, warmup=warmup - 1, device=dev, budget_s=budget_s)
        for key, ts in times.items():
            r = results[int(key)]
            r.times_ms = [1e3 * s for s in ts]
            r.step_ms = median(r.times_ms)
            r.clips_per_s = batch / (r.step_ms / 1e3)
    return results


# ----------------------------------------------------------------------------- block share


def flops_by_block(model: nn.Module, x: Tensor) -> tuple[int, dict[str, int]]:
    """Training-step FLOPs (forward+backward) of ``model`` in total and per attention block."""
    from torch.utils.flop_counter import FlopCounterMode

    names = list(attention_blocks(model))
    counter = FlopCounterMode(display=False)
    with counter:
        model(x).sum().backward()
    counts = counter.get_flop_counts()
    total = counter.get_total_flops()
    per: dict[str, int] = {}
    for key, ops in counts.items():
        for name in names:
            if key.endswith("." + name) or key == name:
                per[name] = sum(ops.values())
    model.zero_grad(set_to_none=True)
    return total, per


def _time_blocks_hooks(model: nn.Module) -> tuple[dict[str, float], Callable[[], None]]:
    """Accumulates forward and backward seconds of each attention block through module hooks."""
    acc: dict[str, float] = {}
    starts: dict[str, float] = {}
    handles = []
    for name, mod in attention_blocks(model).items():
        acc[name] = 0.0

        def fpre(_m, _i, name=name):
            starts[name] = time.perf_counter()

        def fpost(_m, _i, _o, name=name):
            acc[name] += time.perf_counter() - starts[name]

        def bpre(_m, _g, name=name):
            starts[name + "/b"] = time.perf_counter()

        def bpost(_m, _gi, _go, name=name):
            acc[name] += time.perf_counter() - starts[name + "/b"]

        handles += [
            mod.register_forward_pre_hook(fpre),
            mod.register_forward_hook(fpost),
            mod.register_full_backward_pre_hook(bpre),
            mod.register_full_backward_hook(bpost),
        ]

    def remove() -> None:
        for h in handles:
            h.remove()

    return acc, remove


def block_share(
    arch: str = "a2net_r50",
    baseline_arch: str | None = "i3d_r50",
    *,
    frames: int = 8,
    size: int = 224,
    batch: int = 1,
    reps: int = 3,
    budget_s: float = 240.0,
) -> dict[str, Any]:
    """The attention blocks' share of a training step's time and of its FLOPs (CPU, float32).

    Time is attributed two ways, both measured in this run: module hooks around each block's
    forward and backward (step times with hooks attached), and the difference between the step
    time of ``arch`` and of ``baseline_arch`` (the same network without blocks), timed interleaved.
    """
    from a2video.models import build_model

    torch.manual_seed(0)
    model = build_model(arch, num_classes=400)
    x = torch.randn(batch, 3, frames, size, size, requires_grad=False)
    total_flops, per_block = flops_by_block(model, x)
    block_flops = sum(per_block.values())

    def step_of(net: nn.Module) -> Callable[[], None]:
        def step() -> None:
            net(x).sum().backward()
            net.zero_grad(set_to_none=True)

        return step

    steps = {"model": step_of(model)}
    if baseline_arch:
        torch.manual_seed(0)
        steps["baseline"] = step_of(build_model(baseline_arch, num_classes=400))
    times = interleaved(steps, reps, budget_s=budget_s)
    acc, remove = _time_blocks_hooks(model)
    hook_steps: list[float] = []
    hook_block: list[float] = []
    try:
        for _ in range(max(1, min(reps, len(times["model"])))):
            for k in acc:
                acc[k] = 0.0
            t0 = time.perf_counter()
            steps["model"]()
            hook_steps.append(time.perf_counter() - t0)
            hook_block.append(sum(acc.values()))
    finally:
        remove()
    t_model = median(times["model"])
    out: dict[str, Any] = {
        "arch": arch,
        "clip": [batch, 3, frames, size, size],
        "blocks": sorted(per_block),
        "flops_total_g": total_flops / 1e9,
        "flops_blocks_g": block_flops / 1e9,
        "flop_share": block_flops / total_flops,
        "step_ms": 1e3 * t_model,
        "hook_step_ms": 1e3 * median(hook_steps),
        "hook_blocks_ms": 1e3 * median(hook_block),
        "time_share_hooks": median([b / s for b, s in zip(hook_block, hook_steps, strict=True)]),
    }
    if baseline_arch:
        t_base = median(times["baseline"])
        out.update(
            baseline_arch=baseline_arch,
            baseline_step_ms=1e3 * t_base,
            time_share_diff=(t_model - t_base) / t_model,
        )
    out["ratio_hooks"] = out["time_share_hooks"] / out["flop_share"]
    if baseline_arch:
        out["ratio_diff"] = out["time_share_diff"] / out["flop_share"]
    return out


# ----------------------------------------------------------------------------- reports


def _f(x: float | None, fmt: str = ".1f") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def format_machine(info: dict[str, Any]) -> str:
    gpu = f", GPU {info['gpu']}" if "gpu" in info else ""
    return (
        f"Machine: {info['cpu']} ({info['capability']}), nproc {info['nproc']}, "
        f"torch threads {info['torch_threads']}, {info.get('mem_total_gib', '?')} GiB RAM{gpu}; "
        f"torch {info['torch']}; {info['date']}."
    )


def format_blocks(results: list[BlockResult]) -> str:
    """Markdown table: one row per (config, stage, block kind)."""
    head = (
        "| net | stage | C×T×H×W | block | assoc | fwd+bwd ms | peak MiB | GFLOP | GFLOP/s "
        "| same GEMMs bare GFLOP/s | square mm GFLOP/s | status |\n"
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|"
    )
    rows = [head]
    for r in results:
        _, c, t, h, w = r.shape
        rows.append(
            f"| {r.config} | {r.stage} | {c}×{t}×{h}×{w} | {r.kind} | {r.association or ''} "
            f"| {_f(r.time_ms)} | {_f(r.peak_mib)} | {_f(r.gflop, '.2f')} | {_f(r.gflops)} "
            f"| {_f(r.gemm_gflops)} | {_f(r.square_gflops)} | {r.status} |"
        )
    return "\n".join(rows)


def goals_blocks(results: list[BlockResult]) -> list[dict[str, Any]]:
    """Per (config, stage): A²(auto) vs non-local time and memory, auto's pick vs the faster."""
    out = []
    keys = sorted(
        {(r.config, r.stage) for r in results},
        key=lambda k: (k[0], STAGES.index(k[1]) if k[1] in STAGES else -1),
    )
    for key in keys:
        by = {r.kind: r for r in results if (r.config, r.stage) == key and r.status == "ok"}
        auto, nl = by.get("a2_auto"), by.get("nonlocal")
        left, right = by.get("a2_left"), by.get("a2_right")
        row: dict[str, Any] = {"config": key[0], "stage": key[1]}
        if auto and nl:
            row["time_ratio"] = auto.time_ms / nl.time_ms
            row["mem_ratio"] = auto.peak_mib / nl.peak_mib if nl.peak_mib else None
        if left and right:
            faster = "left" if left.time_ms <= right.time_ms else "right"
            row["faster"] = faster
            row["left_over_right"] = left.time_ms / right.time_ms
            row["auto_picks"] = auto.association if auto else None
            row["auto_ok"] = row["auto_picks"] == faster if auto else None
        elif left and auto:
            row["auto_picks"] = auto.association
            row["faster"] = "left (right skipped: out of memory)"
            row["auto_ok"] = auto.association == "left"
        if left and left.gemm_gflops:
            row["efficiency_gemm"] = left.gflops / left.gemm_gflops
            row["efficiency_square"] = left.gflops / left.square_gflops
        out.append(row)
    return out


def format_goals(rows: list[dict[str, Any]]) -> str:
    head = (
        "| net | stage | A²(auto) / NL time | A²(auto) / NL peak mem | left / right time "
        "| faster | auto picks | A² GFLOP/s ÷ same GEMMs | ÷ square mm |\n"
        "|---|---|---:|---:|---:|---|---|---:|---:|"
    )
    rows_s = [head]
    for r in rows:
        ok = {True: " ✓", False: " ✗", None: ""}[r.get("auto_ok")]
        rows_s.append(
            f"| {r['config']} | {r['stage']} | {_f(r.get('time_ratio'), '.3f')} "
            f"| {_f(r.get('mem_ratio'), '.3f')} | {_f(r.get('left_over_right'), '.2f')} "
            f"| {r.get('faster', '—')} | {r.get('auto_picks') or '—'}{ok} "
            f"| {_f(r.get('efficiency_gemm'), '.2f')} | {_f(r.get('efficiency_square'), '.2f')} |"
        )
    return "\n".join(rows_s)


def format_models(results: list[ModelResult]) -> str:
    head = (
        "| arch | clip B×3×T×H×W | mode | compile | channels_last_3d | 2-D views | step ms "
        "| clips/s | compile s | status |\n|---|---|---|---|---|---|---:|---:|---:|---|"
    )
    rows = [head]
    for r in results:
        comp, cl, v2 = ("on" if f else "off" for f in (r.compile, r.channels_last, r.views_2d))
        rows.append(
            f"| {r.arch} | {'×'.join(map(str, r.clip))} | {r.mode} | {comp} | {cl} | {v2} "
            f"| {_f(r.step_ms)} | {_f(r.clips_per_s, '.2f')} | {_f(r.compile_s)} | {r.status} |"
        )
    return "\n".join(rows)


def format_share(out: dict[str, Any]) -> str:
    lines = [
        f"{out['arch']} clip {'×'.join(map(str, out['clip']))}: {len(out['blocks'])} blocks "
        f"({', '.join(out['blocks'])})",
        f"  FLOPs (fwd+bwd): total {out['flops_total_g']:.1f} G, blocks "
        f"{out['flops_blocks_g']:.1f} G -> FLOP share {100 * out['flop_share']:.1f}%",
        f"  training step {out['step_ms']:.0f} ms; blocks by hooks {out['hook_blocks_ms']:.0f} of "
        f"{out['hook_step_ms']:.0f} ms -> time share {100 * out['time_share_hooks']:.1f}% "
        f"(÷ FLOP share = {out['ratio_hooks']:.2f})",
    ]
    if "time_share_diff" in out:
        lines.append(
            f"  vs {out['baseline_arch']} {out['baseline_step_ms']:.0f} ms (interleaved) -> time "
            f"share {100 * out['time_share_diff']:.1f}% (÷ FLOP share = {out['ratio_diff']:.2f})"
        )
    return "\n".join(lines)


def replace_section(path: str, heading: str, body: str) -> None:
    """Writes ``body`` under ``## heading`` in the Markdown file ``path``, keeping other sections.

    The section runs to the next ``## `` heading; it is appended when absent, and the file is
    created when missing.
    """
    title = f"## {heading}"
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = ["# Benchmark results", ""]
    start = next((i for i, ln in enumerate(lines) if ln.strip() == title), None)
    new = [title, "", *body.strip("\n").splitlines(), ""]
    if start is None:
        if lines and lines[-1].strip():
            lines.append("")
        lines += new
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        lines[start:end] = new
    with open(path, "w") as f:
        f.write("\n".join(lines).rstrip("\n") + "\n")
