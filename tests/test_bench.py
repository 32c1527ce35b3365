"""The benchmark code paths on tiny shapes, and the association cost model behind ``"auto"``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from a2video.models import DoubleAttention, association_cost

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import harness as bench

TINY = bench.StageShape("tiny", "res3", channels=16, frames=1, height=16, width=16, source="test")


def _flops(module: torch.nn.Module, x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(x)
    return counter.get_total_flops()


def test_bench_stage_measures_every_block_kind_on_a_tiny_shape() -> None:
    results = bench.bench_stage(TINY, reps=2, budget_s=5.0)
    by = {r.kind: r for r in results}
    assert set(by) == set(bench.BLOCK_KINDS)
    for r in results:
        assert r.status == "ok", r.status
        assert r.time_ms > 0 and r.peak_mib > 0 and r.gflop > 0 and r.gflops > 0
        assert len(r.times_ms) == 2
    assert by["a2_left"].gemm_gflops > 0 and by["a2_left"].square_gflops > 0
    # L = 256 > m = 4: the cost model picks the left association.
    assert by["a2_auto"].association == "left"
    assert by["nonlocal"].gflop > by["a2_left"].gflop
    goals = bench.goals_blocks(results)
    assert goals[0]["auto_picks"] == "left" and goals[0]["time_ratio"] > 0
    assert "a2_left" in bench.format_blocks(results)
    assert "auto picks" in bench.format_goals(goals)


def test_peak_memory_sees_the_LxL_tensor_of_non_local_and_right_but_not_of_left() -> None:
    channels, length = 16, 32 * 32
    lxl_bytes = length * length * 4
    peaks = {}
    for kind in ("a2_left", "a2_right", "nonlocal"):
        block = bench.make_block(kind, channels)
        x = torch.randn(1, channels, 1, 32, 32, requires_grad=True)
        peaks[kind] = bench.cpu_peak_bytes(
            bench._fwd_bwd(block, x, torch.device("cpu"), torch.float32)
        )
    assert peaks["nonlocal"] >= lxl_bytes
    assert peaks["a2_right"] >= lxl_bytes
    assert peaks["a2_left"] < lxl_bytes / 4


def test_recorded_gemms_are_the_blocks_whole_matrix_work() -> None:
    """The bare-GEMM reference does exactly the FLOPs the FLOP counter sees in forward+backward."""
    for kind in ("a2_left", "nonlocal"):
        block = bench.make_block(kind, 32)
        x = torch.randn(1, 32, 2, 4, 4, requires_grad=True)
        step = bench._fwd_bwd(block, x, torch.device("cpu"), torch.float32)
        counter = FlopCounterMode(display=False)
        with counter:
            step()
        assert bench.gemm_flops(bench.record_gemms(step)) == counter.get_total_flops()


@pytest.mark.parametrize(
    ("channels", "frames", "size"),
    [(64, 1, 2), (64, 1, 3), (64, 1, 4), (64, 1, 5), (64, 2, 8), (256, 2, 4), (256, 4, 7)],
)
def test_auto_association_runs_the_cheaper_order_by_the_cost_model(
    channels: int, frames: int, size: int
) -> None:
    """``association="auto"`` must do the work of whichever order the cost model says is cheaper."""
    x = torch.randn(1, channels, frames, size, size)
    blocks = {a: DoubleAttention(channels, association=a) for a in ("left", "right", "auto")}
    flops = {a: _flops(b, x) for a, b in blocks.items()}
    m, n, length = blocks["auto"].m, blocks["auto"].n, frames * size * size
    cost = association_cost(m, n, length)
    cheaper = "left" if cost["left"] <= cost["right"] else "right"
    # The cost model and the counted FLOPs agree on which order is cheaper ...
    assert flops[cheaper] == min(flops["left"], flops["right"])
    # ... and "auto" runs exactly that order.
    assert flops["auto"] == flops[cheaper]
    assert bench.resolved_association(blocks["auto"], length) == cheaper


def test_auto_is_right_at_the_tiny_and_left_at_the_large_shapes() -> None:
    """L < 2mn/(m+n) makes the right association cheaper (res5 of a2net_r50: L=196 < m=512)."""
    block = DoubleAttention(2048, association="auto")
    assert bench.resolved_association(block, 196) == "right"
    assert bench.resolved_association(block, 25088) == "left"


def test_cli_bench_blocks_custom_shape_json(capsys: pytest.CaptureFixture[str]) -> None:
    from a2video.cli import main

    argv = ["bench", "blocks", "--shape", "8", "1", "4", "4", "--reps", "1", "--in-process"]
    assert main([*argv, "--kinds", "a2_left", "nonlocal", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in payload["results"]] == ["a2_left", "nonlocal"]
    assert payload["machine"]["nproc"] >= 1


def test_replace_section_keeps_the_other_sections(tmp_path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\n## Other\n\nkeep me\n\n## Mine\n\nold\n\n## Last\n\nkeep too\n")
    bench.replace_section(str(path), "Mine", "new table")
    bench.replace_section(str(path), "Appended", "more")
    text = path.read_text()
    assert "keep me" in text and "keep too" in text and "new table" in text
    assert "old" not in text and text.rstrip().endswith("more")


def test_bench_model_and_block_share_on_the_tiny_net() -> None:
    results = bench.bench_model(
        "a2net_tiny", frames=2, size=32, batch=2, num_classes=5, reps=1, warmup=1,
        channels_last_opts=(False, True),
    )  # fmt: skip
    assert [(r.mode, r.channels_last) for r in results] == [
        ("infer", False), ("infer", True), ("train", False), ("train", True)
    ]  # fmt: skip
    for r in results:
        assert r.status == "ok" and r.clips_per_s > 0
    share = bench.block_share("a2net_tiny", "i3d_tiny", frames=2, size=64, reps=1)
    assert len(share["blocks"]) >= 1
    assert 0 < share["flop_share"] < 1 and 0 < share["time_share_hooks"] < 1
    assert "FLOP share" in bench.format_share(share)


# ----------------------------------------------------------------------------- argument checks

NO_GPU = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU: never available


def _no_measuring(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any measurement fails the test: the checks must run before anything is measured."""

    def measured(*_args, **_kwargs):
        raise AssertionError("a measurement started before the arguments were checked")

    for name in ("stage_shapes", "bench_stage", "bench_stage_subprocess", "bench_model"):
        monkeypatch.setattr(bench, name, measured)
    monkeypatch.setattr(bench, "block_share", measured)


def _run_cli(argv: list[str]) -> int:
    from a2video.cli import main

    try:
        return main(["bench", *argv])
    except SystemExit as exit_:
        return exit_.code


BAD_ARGUMENTS = {  # id: (arguments of ``a2video bench``, what the one line must name)
    "model-arch": (["model", "nosuch", "--size", "32"], ["'nosuch'", "a2net_tiny", "i3d_r50"]),
    "model-cuda-index": (["model", "a2net_tiny", "--device", NO_GPU], [repr(NO_GPU), "cpu"]),
    "model-device-name": (["model", "a2net_tiny", "--device", "gpu0"], ["'gpu0'", "cpu"]),
    "model-size": (["model", "a2net_tiny", "--size", "-32"], ["--size", "-32"]),
    "model-frames": (["model", "a2net_tiny", "--frames", "0"], ["--frames", "0"]),
    "model-batch": (["model", "a2net_tiny", "--batch", "0"], ["--batch", "0"]),
    "model-dtype": (["model", "a2net_tiny", "--dtype", "float64x"], ["'float64x'", "bfloat16"]),
    "blocks-stage": (["blocks", "--configs", "r26", "--stages", "res9"], ["'res9'", "res2"]),
    "blocks-config": (["blocks", "--configs", "r99"], ["'r99'", "r50", "r26"]),
    "blocks-kind": (["blocks", "--kinds", "foo"], ["'foo'", "a2_left", "nonlocal"]),
    "blocks-shape": (["blocks", "--shape", "16", "-2", "8", "8"], ["--shape", "16 -2 8 8"]),
    "blocks-cuda-index": (["blocks", "--device", NO_GPU], [repr(NO_GPU), "cpu"]),
    "blocks-cpu-bfloat16": (["blocks", "--dtype", "bfloat16"], ["'bfloat16'", "float32"]),
    "blocks-reps": (["blocks", "--reps", "0"], ["--reps", "0"]),
    "share-frames": (["share", "a2net_tiny", "--frames", "0", "--size", "32"], ["--frames"]),
}


@pytest.mark.parametrize(("argv", "named"), BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
def test_cli_bench_bad_argument_is_one_line_and_exit_2_before_measuring(
    argv: list[str],
    named: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _no_measuring(monkeypatch)
    assert _run_cli([*argv, "--budget-s", "1"] if argv[0] != "share" else argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no table, no "failed" rows
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("a2video bench: error: ")
    for word in named:
        assert word in lines[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cli_bench_model_on_cuda_without_a_gpu_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_measuring(monkeypatch)
    assert _run_cli(["model", "a2net_tiny", "--device", "cuda", "--budget-s", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "'cuda'" in err and "is_available() is False" in err and "cpu" in err


def test_bench_script_run_directly_names_itself_in_the_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import runpy

    _no_measuring(monkeypatch)
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"
    main = runpy.run_path(str(script), run_name="bench_test")["main"]
    assert main(["blocks", "--stages", "res9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python benchmarks/bench.py: error: unknown stage 'res9'")


def test_failed_row_keeps_whole_words_of_the_first_line() -> None:
    words = "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of " * 4
    status = bench.failed_status(RuntimeError(words.strip() + "\nsecond line"))
    assert status.startswith("failed (RuntimeError: CUDA out of memory. Tried to allocate")
    assert status.endswith("…)") and "second line" not in status
    body = status[len("failed (RuntimeError: ") : -len("…)")]
    assert words.startswith(body) and words[len(body)] in " .,"  # cut between words
    short = bench.failed_status(ValueError("unknown arch 'nosuch'; choose from [a, i3d]"))
    assert short == "failed (ValueError: unknown arch 'nosuch'; choose from [a, i3d])"


def test_bench_model_refuses_an_unknown_arch_instead_of_failed_rows() -> None:
    with pytest.raises(ValueError, match=r"unknown arch 'nosuch'; choose from .*a2net_tiny"):
        bench.bench_model("nosuch", frames=2, size=32, reps=1)
