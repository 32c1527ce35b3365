"""Specification of the double attention block (paper Eq. 1-7) and the non-local baseline."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from a2video.models import DoubleAttention, NonLocal, association_cost


def _randomise(block: torch.nn.Module) -> torch.nn.Module:
    """Non-zero output BN scale and non-trivial running statistics: not the identity."""
    with torch.no_grad():
        block.bn.weight.normal_(1.0, 0.3)
        block.bn.bias.normal_(0.0, 0.3)
        block.bn.running_mean.normal_(0.0, 0.3)
        block.bn.running_var.uniform_(0.5, 1.5)
        if hasattr(block.qkv, "bias"):
            block.qkv.bias.normal_(0.0, 0.3)
    return block.eval()


SHAPES = [(2, 16, 3, 5, 4), (2, 16, 6, 7)]  # video (N,C,T,H,W) and image (N,C,H,W)


@pytest.mark.parametrize("shape", SHAPES, ids=["video", "image"])
def test_forward_is_x_plus_project_of_a_bt_v(shape: tuple[int, ...]) -> None:
    block = _randomise(DoubleAttention(16))
    x = torch.randn(shape)
    a, b, v = block.descriptors(x)
    n, m = x.shape[0], block.m
    z = (a @ b.transpose(1, 2) @ v).view(n, m, *x.shape[2:])
    expected = x + block.project(z)
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(block(x), x)


@pytest.mark.parametrize("shape", SHAPES, ids=["video", "image"])
def test_descriptor_shapes_and_softmax_axes(shape: tuple[int, ...]) -> None:
    block = DoubleAttention(16, m=3, n=5)
    x = torch.randn(shape)
    length = int(torch.tensor(shape[2:]).prod())
    a, b, v = block.descriptors(x)
    assert a.shape == (2, 3, length)
    assert b.shape == (2, 5, length) and v.shape == (2, 5, length)
    # B: each of the n attention maps is a distribution over the L positions (gather).
    torch.testing.assert_close(b.sum(dim=2), torch.ones(2, 5))
    # V: at each position a distribution over the n global descriptors (distribute).
    torch.testing.assert_close(v.sum(dim=1), torch.ones(2, length))
    assert (b >= 0).all() and (v >= 0).all()


def test_default_widths_are_a_quarter_of_the_channels() -> None:
    block = DoubleAttention(64)
    assert (block.m, block.n) == (16, 16)
    assert block.qkv.out_channels == 16 + 2 * 16  # one fused conv for φ, θ, ρ


@pytest.mark.parametrize("shape", SHAPES, ids=["video", "image"])
def test_left_and_right_association_agree(shape: tuple[int, ...]) -> None:
    left = _randomise(DoubleAttention(16, association="left"))
    right = DoubleAttention(16, association="right").eval()
    right.load_state_dict(left.state_dict())
    x = torch.randn(shape)
    torch.testing.assert_close(left(x), right(x), rtol=0, atol=1e-5)


def test_auto_association_picks_the_cheaper_order() -> None:
    block = DoubleAttention(16, m=4, n=4, association="auto")
    # 2·m·n·L against (m+n)·L²: right is cheaper only when L < 2mn/(m+n) = 4.
    assert association_cost(4, 4, 3) == {"left": 96, "right": 72}
    assert block._choose(3) == "right"
    assert block._choose(4) == "left"
    assert block._choose(8 * 28 * 28) == "left"
    x = torch.randn(1, 16, 1, 1, 3)
    ref = DoubleAttention(16, m=4, n=4, association="left")
    ref.load_state_dict(block.state_dict())
    torch.testing.assert_close(block(x), ref(x))


def test_association_costs_match_the_counted_flops() -> None:
    """The docstring's cost formulas are what the products cost (flop_counter: 2 per MAC)."""
    block = DoubleAttention(8, m=2, n=3).eval()
    length = 4 * 8 * 8
    a = torch.randn(1, 2, length)
    b = torch.softmax(torch.randn(1, 3, length), dim=2)
    v = torch.softmax(torch.randn(1, 3, length), dim=1)
    for order in ("left", "right"):
        with FlopCounterMode(display=False) as counter:
            block.aggregate(a, b, v, order)
        assert counter.get_total_flops() == 2 * association_cost(2, 3, length)[order]


@pytest.mark.parametrize("cls", [DoubleAttention, NonLocal])
@pytest.mark.parametrize("shape", SHAPES, ids=["video", "image"])
def test_fresh_block_is_the_identity(cls: type, shape: tuple[int, ...]) -> None:
    block = cls(16)
    x = torch.randn(shape)
    torch.testing.assert_close(block(x), x, rtol=0, atol=0)
    torch.testing.assert_close(block.eval()(x), x, rtol=0, atol=0)


@pytest.mark.parametrize("cls", [DoubleAttention, NonLocal])
def test_gradients_reach_every_parameter(cls: type) -> None:
    block = cls(16)
    x = torch.randn(2, 16, 2, 4, 4, requires_grad=True)
    # From the zero-initialised state only the BN scale/bias get signal, as in training step 1.
    block(x).square().sum().backward()
    assert block.bn.weight.grad is not None and block.bn.weight.grad.abs().sum() > 0
    block.zero_grad()
    _randomise(block).train()
    block(x).square().sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_nonlocal_matches_a_direct_embedded_gaussian() -> None:
    block = _randomise(NonLocal(8, inter_channels=4))
    x = torch.randn(2, 8, 2, 3, 3)
    d = 4
    w = block.qkv.weight.view(3 * d, 8)
    feats = torch.einsum("oc,nct->not", w, x.flatten(2)) + block.qkv.bias.view(1, -1, 1)
    theta, phi, g = feats.split(d, dim=1)
    f = torch.softmax(theta.transpose(1, 2) @ phi / d**0.5, dim=-1)  # (N, L, L)
    y = (g @ f.transpose(1, 2)).view(2, d, 2, 3, 3)
    expected = x + block.bn(block.proj(y))
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


def test_nonlocal_with_key_subsampling_runs_on_video() -> None:
    block = _randomise(NonLocal(8, pool=(1, 2, 2)))
    x = torch.randn(1, 8, 2, 4, 4)
    assert block(x).shape == x.shape


def test_float32_precision_keeps_attention_in_float32_under_autocast() -> None:
    block = _randomise(DoubleAttention(16, precision="float32"))
    x = torch.randn(1, 16, 2, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b, v = block.descriptors(x)
        y = block(x)
    assert a.dtype == b.dtype == v.dtype == torch.float32
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, block(x), rtol=0.05, atol=0.05)


BF16_TOLERANCE = 1e-2
"""Largest error of a bf16-autocast A²-block's output against float64, relative to its scale."""


@pytest.mark.parametrize("association", ["left", "right"])
def test_bf16_products_stay_close_to_a_float64_reference(association: str) -> None:
    """The default precision runs softmaxes and products in bf16 under autocast (fp32 accumulate).

    Stated tolerance: max |y_bf16 − y_float64| ≤ 1e-2 · max |y_float64| (measured 3.8e-3;
    float32 products under the same autocast convolutions: 3.1e-3) on a block with live
    (non-identity) output BN, at a res3-like width.
    """
    block = _randomise(DoubleAttention(64, association=association))
    x = torch.randn(2, 64, 4, 14, 14)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, _, _ = block.descriptors(x)
        y = block(x)
    assert a.dtype == torch.bfloat16 and y.dtype == torch.float32
    ref64 = block.double()(x.double())
    err = (y.double() - ref64).abs().max() / ref64.abs().max()
    assert err <= BF16_TOLERANCE, float(err)


@pytest.mark.parametrize("association", ["left", "right"])
def test_channels_last_input_gives_the_same_output(association: str) -> None:
    """Positions-major products (Z stored (N, L, m)) on a channels-last clip change nothing."""
    block = _randomise(DoubleAttention(16, association=association))
    x = torch.randn(2, 16, 3, 5, 4)
    cl = block.to(memory_format=torch.channels_last_3d)
    y = cl(x.contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(y, block(x), rtol=1e-5, atol=1e-5)
    assert y.is_contiguous(memory_format=torch.channels_last_3d)


@pytest.mark.parametrize("fold_bn", [False, True], ids=["bn", "folded"])
def test_channels_last_convolutions_get_their_gradients_channels_last(fold_bn) -> None:
    """On a channels-last clip both 1×1×1 convolutions' backwards get the gradient of their
    output in their input's layout (cuDNN copies it otherwise: φ, θ, ρ's came channels-first
    when the three maps were split by channels), with the channels-first block's gradients."""
    from torch.utils._python_dispatch import TorchDispatchMode

    layouts: list[tuple[bool, bool]] = []

    class ConvBackwards(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket is torch.ops.aten.convolution_backward:
                grad, inp = args[0], args[1]
                cl = torch.channels_last if grad.dim() == 4 else torch.channels_last_3d
                layouts.append(
                    (grad.is_contiguous(memory_format=cl), inp.is_contiguous(memory_format=cl))
                )
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    block = _randomise(DoubleAttention(16, fold_bn=fold_bn)).train().double()
    ref = copy.deepcopy(block)  # channels-first
    x = torch.randn(2, 16, 3, 5, 4, dtype=torch.float64)
    x_cl = x.contiguous(memory_format=torch.channels_last_3d).requires_grad_(True)
    x = x.requires_grad_(True)
    with ConvBackwards():
        y = block.to(memory_format=torch.channels_last_3d)(x_cl)
        y.backward(torch.cos(y.detach()))
    assert layouts == [(True, True), (True, True)]  # the output projection's, then φ, θ, ρ's
    y_ref = ref(x)
    y_ref.backward(torch.cos(y_ref.detach()))
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(x_cl.grad, x.grad)
    for (name, p), q in zip(block.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_timed_auto_picks_a_measured_order_once_per_shape(monkeypatch) -> None:
    """On a timed device, ``auto`` times both orders once and caches the choice by shape."""
    import a2video.models.attention as attention

    monkeypatch.setattr(attention, "TIMED_AUTO_DEVICES", {"cpu"})
    monkeypatch.setattr(attention, "_TIMED_CHOICE", {})
    block = _randomise(DoubleAttention(16, association="auto"))
    calls = []
    aggregate = block.aggregate
    monkeypatch.setattr(
        block, "aggregate", lambda *a, **k: calls.append(a[3]) or aggregate(*a, **k)
    )
    x = torch.randn(2, 16, 2, 3, 3)
    y = block(x)
    timed = len(calls)
    block(x)
    assert {"left", "right"} <= set(calls[:timed]) and len(calls) == timed + 1
    (choice,) = attention._TIMED_CHOICE.values()
    assert calls[-1] == choice
    ref = DoubleAttention(16, association="left").eval()
    ref.load_state_dict(block.state_dict())
    torch.testing.assert_close(y, ref(x), rtol=1e-5, atol=1e-5)


def test_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError):
        DoubleAttention(8, association="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        DoubleAttention(8)(torch.randn(8, 4))


def _fold_pair(momentum: float | None) -> tuple[DoubleAttention, DoubleAttention]:
    """A live float64 block with its output BN applied, and the same block with it folded."""
    torch.manual_seed(0)
    plain = _randomise(DoubleAttention(16)).double()
    plain.bn.momentum = momentum
    with torch.no_grad():
        plain.bn.bias.normal_(0.0, 0.5)
    folded = copy.deepcopy(plain)
    folded.fold_bn = True
    return plain, folded


@pytest.mark.parametrize("shape", [(2, 16, 3, 5, 4), (3, 16, 6, 5)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_folded_output_bn_is_the_same_function_gradients_and_statistics(
    shape: tuple[int, ...], channels_last: bool, momentum: float | None
) -> None:
    """``fold_bn``: BN(W·Z) as W'·Z + b' with the batch statistics from Z's covariance gives
    the BN's output, every gradient, and running statistics (two training steps, then eval) to
    float64 rounding."""
    plain, folded = _fold_pair(momentum)
    if channels_last and len(shape) == 5:
        plain, folded = (b.to(memory_format=torch.channels_last_3d) for b in (plain, folded))
    for step in range(2):
        x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(step))
        if channels_last and len(shape) == 5:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        xs = [x.clone().requires_grad_(True) for _ in range(2)]
        outs = [block(xi) for block, xi in zip((plain, folded), xs, strict=True)]
        torch.testing.assert_close(outs[1], outs[0], rtol=1e-10, atol=1e-10)
        weights = torch.randn_like(outs[0])
        for out in outs:
            (out * weights).sum().backward()
        torch.testing.assert_close(xs[1].grad, xs[0].grad, rtol=1e-9, atol=1e-10)
    for (name, p), q in zip(plain.named_parameters(), folded.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-9, atol=1e-10, msg=name)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(folded.bn, name), getattr(plain.bn, name), msg=name)
    plain.eval(), folded.eval()
    x = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(folded(x), plain(x), rtol=1e-10, atol=1e-10)
    assert folded.state_dict().keys() == plain.state_dict().keys()


def test_folded_output_bn_in_bf16_stays_close_to_a_float64_reference() -> None:
    """Under bf16 autocast the folded block keeps the unfolded block's stated tolerance."""
    block = _randomise(DoubleAttention(64, fold_bn=True))
    x = torch.randn(2, 64, 4, 14, 14)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = block(x)
    ref = copy.deepcopy(block).double()
    ref.fold_bn = False
    ref64 = ref(x.double())
    err = (y.double() - ref64).abs().max() / ref64.abs().max()
    assert err <= BF16_TOLERANCE, float(err)


def test_sync_batchnorm_is_never_folded(monkeypatch) -> None:
    """A SyncBatchNorm's statistics span the ranks: the block applies it as a module."""
    from a2video.models import attention

    def refuse(*args, **kwargs):
        raise AssertionError("folded a SyncBatchNorm")

    block = _randomise(DoubleAttention(16, fold_bn=True))
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(block)).eval()
    monkeypatch.setattr(attention, "folded_bn_projection", refuse)
    x = torch.randn(2, 16, 3, 5, 4)
    block.fold_bn = False
    torch.testing.assert_close(synced(x), block.eval()(x))


def test_a_network_built_with_folded_bn_is_the_same_network() -> None:
    """``build_model(..., attn_fold_bn=True)``: every A²-block folds; the state dict loads both
    ways, and a training step's output and gradients are the unfolded network's (float64)."""
    from a2video.models import build_model

    torch.manual_seed(0)
    plain = build_model("a2net_tiny", num_classes=5).double()
    folded = build_model("a2net_tiny", num_classes=5, attn_fold_bn=True).double()
    for block in plain.attention_blocks.values():
        torch.nn.init.normal_(block.bn.weight, 1.0, 0.3)
    folded.load_state_dict(plain.state_dict())
    assert all(b.fold_bn for b in folded.attention_blocks.values())
    x = torch.randn(2, 3, 4, 32, 32, dtype=torch.float64)
    outs = [net(x) for net in (plain, folded)]
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-10, atol=1e-10)
    for out in outs:
        out.square().sum().backward()
    for (name, p), q in zip(plain.named_parameters(), folded.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-8, atol=1e-10, msg=name)
