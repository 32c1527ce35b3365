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
