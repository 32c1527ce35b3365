"""benchmarks/bench_gpu.py and the GPU call (gpu_checks.sh) run on the CPU with tiny nets, as on a
GPU host: without decord, PyAV or jsonargparse."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from bare_host import bare_env

ROOT = Path(__file__).resolve().parents[1]

# Runs the benchmark with decord, PyAV and jsonargparse made unimportable (as on a GPU host with
# its own torch build), then checks none of them was imported.
RUNNER = """
import runpy, sys

BLOCKED = {"decord", "av", "jsonargparse"}


class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None


sys.meta_path.insert(0, Block())
script = sys.argv[1]
sys.argv = [script, *sys.argv[2:]]
runpy.run_path(script, run_name="__main__")
assert not BLOCKED & set(sys.modules), BLOCKED & set(sys.modules)
print("BLOCKED-MODULES-NEVER-IMPORTED")
"""


# What benchmarks/gpu_checks.sh runs on the GPU host, from its top-level imports on: each entry
# point's --help and the modules its sections import late.
ENTRY_POINTS = """
import importlib, runpy, sys

for script in ("bench_gpu.py", "bench_handover.py", "bench_nvdec.py"):
    sys.argv = [script, "--help"]
    try:
        runpy.run_path(f"benchmarks/{script}", run_name="__main__")
    except SystemExit as stop:
        assert stop.code in (0, None), (script, stop.code)
for module in ("a2video.training.module", "a2video.data.datamodules", "a2video.data.mixed"):
    importlib.import_module(module)
print("ENTRY-POINTS-IMPORTED")
"""
# bench_handover and the batch ring need no torchvision (the GPU host's python3 may lack it, or
# hold one built for another torch); Lightning and torchmetrics import it where installed
NO_TORCHVISION = """
import sys

import a2video.data.datasets, a2video.data.ring, a2video.data.transforms

assert "torchvision" not in sys.modules, "a2video.data imports torchvision at import"
"""


@pytest.mark.timeout(120)
def test_gpu_checks_entry_points_import_without_the_packages_a_gpu_host_lacks(tmp_path) -> None:
    """No decord, PyAV or jsonargparse on the GPU host: a top-level import of any of them in a
    bench, in the library modules its sections use or in tests/test_gpu.py would cost the whole
    GPU call. The benches' top-level imports, then the `gpu` tests' collection."""
    env = bare_env(tmp_path / "site")
    run = dict(capture_output=True, text=True, env=env, cwd=ROOT, timeout=100)
    proc = subprocess.run([sys.executable, "-c", ENTRY_POINTS], **run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ENTRY-POINTS-IMPORTED" in proc.stdout
    proc = subprocess.run([sys.executable, "-c", NO_TORCHVISION], **run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tests = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "gpu"]
    proc = subprocess.run([*tests, "tests/test_gpu.py", "-p", "no:cacheprovider"], **run)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert re.search(r"\d+ tests? collected", proc.stdout), proc.stdout[-3000:]


@pytest.mark.timeout(240)
def test_gpu_checks_sh_runs_its_sections_in_order_on_a_bare_cpu_host(tmp_path) -> None:
    """benchmarks/gpu_checks.sh end to end, tiny, on the CPU, without decord, PyAV, jsonargparse
    or PyNvVideoCodec: each section writes its file under $OUT, the NVDEC part is skipped, and
    the log names each section's end, in the order of importance, within 8 files."""
    out = tmp_path / "out"
    env = bare_env(tmp_path / "site")
    env.update(
        PYTHON=sys.executable,
        OUT=str(out),
        GPU_SITE=str(tmp_path / "gpusite"),
        GPU_BENCH_S="30",
        GPU_BENCH_SECTIONS="info,lightning_compiled",
        GPU_BENCH_ARGS="--arch-scale tiny --device cpu --steps 1 --warmup 0 --lightning-batch 2 "
        "--compile-backend eager --compile-estimate-s 1",
        HANDOVER_ARGS="--batch-clips 2 --frames 2 --crop 16 --workers 1 --prefetch 2 --rounds 1 "
        "--fill-s 0.1 --worker-reps 1",
    )
    script = ["bash", "benchmarks/gpu_checks.sh"]
    proc = subprocess.run(script, cwd=ROOT, env=env, capture_output=True, text=True, timeout=220)
    log = (out / "log.txt").read_text()
    assert proc.returncode == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    ends = re.findall(r"gpu_checks: (.+) ended at \d+ s \((.+)\)", log)
    assert ends == [("bench_gpu", "exit 0"), ("handover", "exit 0"), ("GPU tests", "exit 0")]
    assert "the NVDEC benches are skipped" in log and "gpu_checks: no av on this host" not in log
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "bench_gpu/bench_gpu.json",
        "bench_gpu/bench_gpu.md",
        "gpu_tests.txt",
        "handover.json",
        "log.txt",
    ]
    (pair,) = json.loads((out / "bench_gpu" / "bench_gpu.json").read_text())["sections"][
        "lightning"
    ]
    assert pair["mode"] == "compiled" and pair["raw_ms"] > 0 and pair["lightning_ms"] > 0
    assert json.loads((out / "handover.json").read_text())["training_process_ms_per_batch"]
    assert "skipped" in (out / "gpu_tests.txt").read_text()  # no CUDA here


@pytest.mark.timeout(300)
def test_bench_gpu_runs_tiny_on_the_cpu_without_video_or_cli_packages(tmp_path) -> None:
    out = tmp_path / "bench"
    script = str(ROOT / "benchmarks" / "bench_gpu.py")
    cmd = [sys.executable, "-c", RUNNER, script, "--out", str(out), "--arch-scale", "tiny"]
    cmd += [
        "--device",
        "cpu",
        "--sections",
        "info,models,compiled,compiled_5d,compiled_3d_stem,compile_modes,variants,stem,"
        "lightning,lightning_compiled,blocks,blocks_compiled,profile",
    ]
    cmd += ["--extra-compile-modes", "reduce-overhead"]
    cmd += ["--archs", "i3d,a2net", "--batches", "2", "--compiled-archs", "a2net"]
    cmd += ["--compiled-batches", "2", "--compile-backend", "eager", "--steps", "1"]
    cmd += ["--warmup", "0", "--block-steps", "1"]
    # no section skipped for the benchmark's own time budget (sized for a GPU's 5 minutes) on a
    # loaded CPU: this test's limit is the subprocess timeout below
    cmd += ["--budget-s", "100000"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "BLOCKED-MODULES-NEVER-IMPORTED" in proc.stdout
    result = json.loads((out / "bench_gpu.json").read_text())
    assert not result.get("errors"), result["errors"]
    assert result["info"]["device"] == "cpu" and result["info"]["torch"]
    models = {(r["arch"], r["mode"]) for r in result["sections"]["models"]}
    assert models == {
        ("i3d_tiny", "eager"),
        ("a2net_tiny", "eager"),
        ("a2net_tiny", "compiled"),
        ("a2net_tiny", "compiled (5-D layers)"),
        ("a2net_tiny", "compiled (3-D stem)"),
        ("a2net_tiny", "compiled (reduce-overhead)"),
    }
    # compiled rows come from fresh processes, each reporting its TorchDynamo graphs
    compiled = [r for r in result["sections"]["models"] if r["mode"].startswith("compiled")]
    assert all(r["graphs"] >= 1 and r["graph_breaks"] == 0 for r in compiled)
    assert len({r["pid"] for r in compiled}) == len(compiled) and os.getpid() not in {
        r["pid"] for r in compiled
    }
    whole = result["variants"]["whole_step_ms"]
    assert len(whole) == 6 and all(v > 0 for v in whole.values())
    layers = result["variants"]["layers_ms"]
    assert any("2-D view" in k for k in layers) and any(", 5-D" in k for k in layers)
    assert all(r["clips_per_s"] > 0 and r["tflops"] > 0 for r in result["sections"]["models"])
    lightning = {r["mode"]: r for r in result["sections"]["lightning"]}
    assert all(r["raw_ms"] > 0 and r["lightning_ms"] > 0 for r in lightning.values())
    # the users' path: uint8 clips through the DataModules' transfer hook, which normalises them
    # for an eager module and leaves them to a compiled one's graph
    assert {r["input"] for r in lightning.values()} == {"uint8"}
    assert lightning["eager"]["uint8_to_module"] == 0
    assert lightning["compiled"]["uint8_to_module"] >= 2
    kinds = {r["kind"].split(" (")[0] for r in result["sections"]["blocks"]}
    assert {"a2 auto", "a2 left", "a2 right", "a2 auto, BN folded", "non-local"} <= kinds
    assert {r["stage"] for r in result["sections"]["blocks"]} == {"res2", "res3", "res4", "res5"}
    compiled_blocks = result["sections"]["blocks_compiled"]
    assert {(r["stage"], r["kind"]) for r in compiled_blocks} == {
        (stage, kind)
        for stage in ("res2", "res3", "res4", "res5")
        for kind in (
            "a2 auto compiled",
            "a2 auto compiled, backward into .grad",  # the rows before 2026-11-27
            "a2 auto, BN folded compiled",
            "a2 auto, split by channels compiled",
            "a2 auto, projections as GEMMs compiled",
            "non-local compiled",
        )
    }
    assert all((r["of_gemms"] is not None) == r["kind"].startswith("a2") for r in compiled_blocks)
    assert sum(result["profile"]["categories"].values()) == pytest.approx(1.0)
    stem = result["stem_ms"]  # the stem as 3-D and as stacked frames, alone and in the step
    assert len(stem) == 7 and all(v > 0 for v in stem.values())
    md = (out / "bench_gpu.md").read_text()
    for title in ("Machine", "Train step", "A²-blocks", "Trainer.fit", "Attention blocks"):
        assert title in md


def test_compiled_kernel_profile_is_sorted_by_class_and_tabled(tmp_path) -> None:
    """The kernel classes of a compiled CUDA step (names as cuDNN, cuBLAS and Inductor gave
    them on an H200) and the tables written from a row's profile."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_gpu

    names = {
        "sm80_xmma_fprop_implicit_gemm_indexed_bf16bf16_bf16f32_f32_nhwckrsc_nhwc": "convolution",
        "void cutlass__5x_cudnn::Kernel<cutlass_tensorop_bf16_s16816fprop_optimized": "convolution",
        "triton_red_fused__native_batch_norm_legit_functional_view_9": "fused",
        "triton_poi_fused__native_batch_norm_legit_functional_convolution_backward_7": "fused",
        "nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NTN": "matmul",
        "Memcpy DtoD (Device -> Device)": "copies",
    }
    for name, cls in names.items():
        assert bench_gpu._kernel_category(name).startswith(cls), name
    ctx = bench_gpu.Ctx(bench_gpu.parse_args(["--out", str(tmp_path), "--device", "cpu"]))
    row = {"arch": "a2net_r50", "mode": "compiled", "batch": 32}
    row["kernels"] = {
        "device_ms_per_step": 39.2,
        "categories": {"fused (Triton)": 0.5, "convolution (cuDNN)": 0.5},
        "top": [["triton_poi_fused_copy_0", 0.05]],
    }
    bench_gpu._kernel_tables(ctx, row)
    md = (tmp_path / "bench_gpu.md").read_text()
    assert "Where the compiled step goes (a2net_r50 compiled, batch 32; 39.2 ms" in md
    assert "| triton_poi_fused_copy_0 | 5.0% |" in md
    assert json.loads((tmp_path / "bench_gpu.json").read_text())["compiled_profile"]["top"]


def test_block_sections_run_the_stages_asked_in_that_order_and_table_block_kernels(
    tmp_path,
) -> None:
    """``--block-stages res5,res2`` measures res5 first (a cut budget loses res2, not res5); an
    unknown stage stops before anything runs; the compiled block's kernel classes are tabled."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_gpu

    def ctx_for(stages: str) -> bench_gpu.Ctx:
        argv = ["--out", str(tmp_path), "--device", "cpu", "--arch-scale", "tiny"]
        return bench_gpu.Ctx(bench_gpu.parse_args([*argv, "--block-stages", stages]))

    assert [s[0] for s in bench_gpu._block_stages(ctx_for("res5,res2"))] == ["res5", "res2"]
    with pytest.raises(SystemExit, match="res6"):
        bench_gpu._block_stages(ctx_for("res5,res6"))
    ctx = ctx_for("res2")
    prof = {
        "device_ms_per_step": 1.3,
        "categories": {"fused (Triton)": 0.55, "matmul (cuBLAS)": 0.3, "convolution (cuDNN)": 0.15},
        "top": [["triton_red_fused__native_batch_norm_legit_functional_3", 0.2]],
    }
    bench_gpu._block_profile_table(ctx, {"res2": prof})
    md = (tmp_path / "bench_gpu.md").read_text()
    assert "| res2 | 1.3 | 45% | triton_red_fused__native_batch_norm_legit_functi 20% |" in md


@pytest.mark.parametrize("kt,pt,channels", [(5, 2, 3), (3, 0, 3), (5, 2, 4)])
def test_the_stem_sections_candidate_layout_computes_the_librarys_result(kt, pt, channels) -> None:
    """The stem section times a candidate stacking layout against the library's: same numbers."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_gpu

    from a2video.models.layers import Conv3d

    stem = Conv3d(channels, 8, (kt, 7, 7), stride=(1, 2, 2), padding=(pt, 3, 3)).double()
    x = torch.randn(2, channels, 6, 20, 18, dtype=torch.float64)
    x = x.contiguous(memory_format=torch.channels_last_3d)
    got = bench_gpu._stacked_by_unfold(stem, x)
    expected = stem._time_in_channels(x, stem.weight, stem.bias)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    assert got.is_contiguous(memory_format=torch.channels_last_3d)


def test_block_sections_feed_a_block_what_a2net_feeds_it() -> None:
    """Under bf16 autocast an A²-block inside a2net gets a bf16 channels-last map; the block
    sections' input is the same (not a float32 map, which adds casts and float32 adds)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_gpu

    from a2video.models import attention_blocks, build_model
    from a2video.models.layers import channels_last_clip

    net = build_model("a2net_r50", num_classes=4).to(memory_format=torch.channels_last_3d)
    seen = []
    for block in attention_blocks(net).values():
        block.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    clip = torch.randn(1, 3, 4, 32, 32).contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        net(clip)
    assert len(seen) == 5 and all(x.dtype == torch.bfloat16 for x in seen)
    ctx = SimpleNamespace(amp=True, device=torch.device("cpu"))
    x = bench_gpu._block_input(ctx, 2, 8, 2, 3, 3)
    assert x.dtype == torch.bfloat16 and x.requires_grad
    assert channels_last_clip(x)


@pytest.mark.parametrize("c,t,h,w", [(64, 4, 8, 8), (128, 2, 4, 4)])
def test_the_block_candidates_compute_the_librarys_block(c, t, h, w) -> None:
    """The block rows compare like with like: the block before the row split and the one with
    GEMM projections give the library block's output and gradients (float64, channels-last)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_gpu

    from a2video.models import DoubleAttention

    torch.manual_seed(0)
    ref = DoubleAttention(c, association="left").double()
    torch.nn.init.normal_(ref.bn.weight, 1.0, 0.2)  # live: not the identity
    x = torch.randn(2, c, t, h, w, dtype=torch.float64)
    x = x.contiguous(memory_format=torch.channels_last_3d).requires_grad_()
    out = ref(x)
    grads = torch.autograd.grad(out.square().sum(), [x, *ref.parameters()])
    for kind in (bench_gpu._SplitByChannels, bench_gpu._ProjectionsAsGemms):
        alt = kind(c, association="left").double()
        alt.load_state_dict(ref.state_dict())
        got = alt(x)
        torch.testing.assert_close(got, out, rtol=0, atol=1e-12)
        alt_grads = torch.autograd.grad(got.square().sum(), [x, *alt.parameters()])
        for a, b in zip(alt_grads, grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-10)
    with pytest.raises(SystemExit):  # an unknown kind stops before anything runs
        bench_gpu.parse_args(["--out", "/tmp/x", "--block-kinds", "plain,gemms"])
