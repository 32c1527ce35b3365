"""torch.compile and channels_last_3d give the eager outputs (CPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from a2video.models import DoubleAttention, build_model

ROOT = Path(__file__).resolve().parents[1]


def _model() -> torch.nn.Module:
    model = build_model("a2net_tiny", num_classes=5).eval()
    for block in model.attention_blocks.values():  # make the blocks do something
        torch.nn.init.normal_(block.bn.weight, 1.0, 0.2)
    return model


def test_channels_last_3d_matches_eager() -> None:
    model = _model()
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        expected = model(x)
        model_cl = model.to(memory_format=torch.channels_last_3d)
        got = model_cl(x.to(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compiled_block_matches_eager_forward_and_backward(backend: str) -> None:
    block = DoubleAttention(16)
    torch.nn.init.ones_(block.bn.weight)
    compiled = torch.compile(block, backend=backend, fullgraph=True)
    x = torch.randn(2, 16, 2, 4, 4, requires_grad=True)
    y_ref = block(x)
    (g_ref,) = torch.autograd.grad(y_ref.square().sum(), x)
    y = compiled(x)
    (g,) = torch.autograd.grad(y.square().sum(), x)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    # fp32 reassociation noise relative to the gradient's scale (~37 here): compiled and eager
    # both sit within 2e-6 of a float64 reference.
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-5 * float(g_ref.abs().max()))


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiled_model_matches_eager(backend: str) -> None:
    model = _model()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        expected = model(x)
        got = torch.compile(model, backend=backend)(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_folded_batchnorm_matches_batchnorm3d_in_train_and_eval() -> None:
    """The channels-last 4-D view of BatchNorm3d gives the same output, statistics and grads."""
    from a2video.models.layers import BatchNorm3d

    folded, plain = BatchNorm3d(8), torch.nn.BatchNorm3d(8)
    plain.load_state_dict(folded.state_dict())
    x = torch.randn(2, 8, 3, 5, 4).contiguous(memory_format=torch.channels_last_3d)
    x.requires_grad_(True)
    for train in (True, False):
        folded.train(train), plain.train(train)
        y = folded(x)
        (g,) = torch.autograd.grad(y.square().sum(), x)
        y_ref = plain(x)
        (g_ref,) = torch.autograd.grad(y_ref.square().sum(), x)
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-5)
        assert y.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(folded.running_var, plain.running_var)
    assert int(folded.num_batches_tracked) == int(plain.num_batches_tracked) == 1


def _failing_backend(gm, example_inputs):
    raise RuntimeError("no compiler on this machine")


def test_module_compile_logs_warmup_once_and_keeps_plain_checkpoint_keys(tmp_path, caplog) -> None:
    """``compile: true`` through Trainer.fit: one warm-up line, a state dict without wrappers."""
    import logging

    from test_module import TinyVideoData, tiny_model, tiny_trainer

    model = tiny_model(compile=True)
    model.compile_options = {"backend": "aot_eager"}
    trainer = tiny_trainer(tmp_path, max_steps=3, limit_val_batches=0, enable_checkpointing=True)
    with caplog.at_level(logging.INFO):
        trainer.fit(model, TinyVideoData())
    warmups = [r for r in caplog.records if "torch.compile warm-up took" in r.getMessage()]
    assert len(warmups) == 1 and model.compiled_forward.state == "warm"
    ckpt = tmp_path / "plain.ckpt"
    trainer.save_checkpoint(ckpt)
    keys = torch.load(ckpt, weights_only=True)["state_dict"].keys()
    assert keys == tiny_model().state_dict().keys()
    assert not any("_orig_mod" in k or "_compiled" in k for k in keys)


def test_module_compile_failure_warns_once_and_runs_eagerly() -> None:
    from test_module import tiny_model

    model = tiny_model(compile=True).eval()
    model.compile_options = {"backend": _failing_backend}
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        with pytest.warns(UserWarning, match="torch.compile failed .*running the network eagerly"):
            got = model(x)
        torch.testing.assert_close(got, model.net(x))
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no second warning
            model(x)
    assert model.compiled_forward.state == "failed"


def test_compile_mode_reaches_torch_compile_and_a_wrong_one_is_refused(tmp_path, monkeypatch):
    """``model.compile_mode`` through the CLI: passed to torch.compile; a typo stops at parsing
    with a message naming the option."""
    from test_module import tiny_model

    seen: list[dict] = []
    real = torch.compile

    def spy(model, **kwargs):
        seen.append(kwargs)
        return real(model, backend="eager")

    monkeypatch.setattr(torch, "compile", spy)
    model = tiny_model(compile=True, compile_mode="reduce-overhead").eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 4, 32, 32))
    assert seen == [{"mode": "reduce-overhead"}]
    seen.clear()
    tiny_model(compile=True, compile_mode="default").eval()(torch.randn(1, 3, 4, 32, 32))
    assert seen == [{}]  # "default" is torch.compile's own default: not passed

    cmd = [sys.executable, "train.py", "fit", "--config", "configs/demo_kinetics.yaml"]
    cmd += ["--model.compile_mode", "max-autotuned", "--print_config"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode != 0
    assert "compile_mode" in proc.stderr and "Traceback" not in proc.stderr
