"""The 3-D layers that run on 2-D kernels (a2video/models/layers.py): same numbers, same layout,
and the 2-D kernels really run."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from a2video.models.layers import Conv3d, MaxPool3d
from a2video.models.registry import build_model

CL = torch.channels_last_3d

# (kernel, stride, padding) of every convolution shape in the registered ResNets, and others.
CONVS = [
    ((1, 1, 1), (1, 1, 1), (0, 0, 0)),  # conv3, A²/non-local projections
    ((1, 1, 1), (1, 2, 2), (0, 0, 0)),  # strided shortcut
    ((3, 1, 1), (1, 1, 1), (1, 0, 0)),  # temporal conv1
    ((1, 3, 3), (1, 2, 2), (0, 1, 1)),  # spatial conv2, strided
    ((1, 7, 7), (1, 2, 2), (0, 3, 3)),  # 2-D stem
    ((5, 7, 7), (1, 2, 2), (2, 3, 3)),  # temporal stem: stays 5-D
    ((3, 1, 1), (2, 1, 1), (1, 0, 0)),  # temporal stride
]


class _Ops(TorchDispatchMode):
    """Records every op the dispatcher runs: its name and its first argument's rank."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, int | None]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        first = args[0] if args and isinstance(args[0], torch.Tensor) else None
        self.ops.append((func.__name__.split(".")[0], None if first is None else first.dim()))
        return func(*args, **(kwargs or {}))

    @property
    def conv_and_pool_ranks(self) -> list[tuple[str, int]]:
        prefixes = ("convolution", "max_pool", "mkldnn_convolution", "_convolution")
        return [(name, rank) for name, rank in self.ops if name.startswith(prefixes)]

    @property
    def copies(self) -> int:
        return sum(name in ("copy_", "clone") for name, _ in self.ops)


def _pair(kernel, stride, padding, groups: int = 1):
    torch.manual_seed(0)
    ours = Conv3d(8, 12, kernel, stride=stride, padding=padding, bias=True, groups=groups)
    ref = nn.Conv3d(8, 12, kernel, stride=stride, padding=padding, bias=True, groups=groups)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


@pytest.mark.parametrize("kernel,stride,padding", CONVS)
@pytest.mark.parametrize("channels_last", [True, False])
def test_conv3d_on_views_matches_nn_conv3d(kernel, stride, padding, channels_last) -> None:
    """Output, input and weight gradients equal nn.Conv3d's; channels-last stays channels-last."""
    ours, ref = _pair(kernel, stride, padding)
    x = torch.randn(2, 8, 6, 10, 9)
    if channels_last:
        x = x.contiguous(memory_format=CL)
        ours, ref = ours.to(memory_format=CL), ref.to(memory_format=CL)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y, y_ref = ours(x1), ref(x2)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y_ref)
    y.backward(g), y_ref.backward(g)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad, rtol=1e-4, atol=1e-4)
    if channels_last:
        assert y.is_contiguous(memory_format=CL)


@pytest.mark.parametrize(
    "kernel,stride,padding",
    [((1, 3, 3), (1, 2, 2), (0, 1, 1)), ((2, 1, 1), (2, 1, 1), (0, 0, 0)), ((3, 3, 3), 2, 1)],
)
def test_maxpool3d_on_views_matches_nn_maxpool3d(kernel, stride, padding) -> None:
    for fmt in (CL, torch.contiguous_format):
        x = torch.randn(2, 8, 6, 11, 9).contiguous(memory_format=fmt)
        x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        y = MaxPool3d(kernel, stride, padding)(x1)
        y_ref = nn.MaxPool3d(kernel, stride, padding)(x2)
        torch.testing.assert_close(y, y_ref)
        y.sum().backward(), y_ref.sum().backward()
        torch.testing.assert_close(x1.grad, x2.grad)


def test_grouped_conv_on_views_matches() -> None:
    ours, ref = _pair((1, 3, 3), (1, 1, 1), (0, 1, 1), groups=4)
    x = torch.randn(1, 8, 3, 7, 7).contiguous(memory_format=CL)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_channels_last_a2net_runs_every_conv_and_pool_but_the_stem_in_2d() -> None:
    """The 2-D kernels really run: in a channels-last a2net, only the 5×7×7 stem stays 5-D;
    with the switch off, everything is 5-D again (and the logits are the same)."""
    model = build_model("a2net_tiny", num_classes=5).eval().to(memory_format=CL)
    x = torch.randn(1, 3, 8, 32, 32).contiguous(memory_format=CL)
    with torch.no_grad(), _Ops() as on:
        y = model(x)
    five_d = [name for name, rank in on.conv_and_pool_ranks if rank == 5]
    stem = model.conv1.kernel_size[0] > 1
    assert five_d == (["convolution"] if stem else []), on.conv_and_pool_ranks
    assert sum(rank == 4 for _, rank in on.conv_and_pool_ranks) >= 10
    try:
        Conv3d.as_2d = MaxPool3d.as_2d = False
        with torch.no_grad(), _Ops() as off:
            y_off = model(x)
    finally:
        Conv3d.as_2d = MaxPool3d.as_2d = True
    assert off.conv_and_pool_ranks and all(rank == 5 for _, rank in off.conv_and_pool_ranks), (
        off.conv_and_pool_ranks
    )
    torch.testing.assert_close(y, y_off, rtol=1e-4, atol=1e-5)


# (channels, kernel, stride, padding) of RGB stems: the temporal ones run on stacked frames
STEMS = [
    (3, (5, 7, 7), (1, 2, 2), (2, 3, 3)),  # a2net_r50 / i3d_r50
    (3, (3, 7, 7), (1, 2, 2), (1, 3, 3)),  # the tiny and ablation nets
    (3, (3, 3, 3), (1, 1, 1), (0, 1, 1)),  # no temporal padding: T shrinks
    (4, (5, 3, 3), (1, 2, 1), (2, 1, 0)),  # C·kt = 20: zero-padded to 24 channels
]


@pytest.mark.parametrize("channels,kernel,stride,padding", STEMS)
def test_stem_on_stacked_frames_matches_nn_conv3d(
    channels, kernel, stride, padding, monkeypatch
) -> None:
    """Frames stacked into channels + one 2-D convolution == nn.Conv3d: output, both gradients
    (float64), channels-last out; and it is a 4-D convolution that runs."""
    monkeypatch.setattr(Conv3d, "time_to_channels", True)
    torch.manual_seed(0)
    ours = Conv3d(channels, 6, kernel, stride=stride, padding=padding, bias=True).double()
    ref = nn.Conv3d(channels, 6, kernel, stride=stride, padding=padding, bias=True).double()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, channels, 6, 13, 11, dtype=torch.float64).contiguous(memory_format=CL)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    with _Ops() as ops:
        y = ours(x1)
    assert [r for _, r in ops.conv_and_pool_ranks] == [4], ops.conv_and_pool_ranks
    y_ref = ref(x2)
    torch.testing.assert_close(y, y_ref)
    assert y.is_contiguous(memory_format=CL)
    g = torch.randn_like(y_ref)
    y.backward(g), y_ref.backward(g)
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad)


def test_stacked_stem_under_autocast_stacks_in_bf16_and_matches(monkeypatch) -> None:
    monkeypatch.setattr(Conv3d, "time_to_channels", True)
    ours = Conv3d(3, 8, (5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False)
    ref = nn.Conv3d(3, 8, (5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 8, 32, 32).contiguous(memory_format=CL)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, y_ref = ours(x), ref(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), y_ref.float(), rtol=0.02, atol=0.05)


def test_which_convolutions_stack_frames(monkeypatch) -> None:
    """By default only on CUDA (on oneDNN the stacked copy costs more than it saves: 0.14 vs
    0.11 s for the r50 stem at batch 2); never for many channels, temporal strides or groups."""
    x = torch.randn(1, 3, 4, 8, 8).contiguous(memory_format=CL)
    stem = Conv3d(3, 4, (5, 7, 7), padding=(2, 3, 3))
    assert Conv3d.time_to_channels is None and not stem._stacks_time(x)
    monkeypatch.setattr(Conv3d, "time_to_channels", True)
    assert stem._stacks_time(x)
    assert not stem._stacks_time(x.contiguous())  # a plainly contiguous clip: 5-D
    wide = torch.randn(1, 8, 4, 8, 8).contiguous(memory_format=CL)
    assert not Conv3d(8, 4, (5, 3, 3), padding=(2, 1, 1))._stacks_time(wide)  # C·kt = 40
    assert not Conv3d(3, 4, (3, 3, 3), stride=(2, 1, 1))._stacks_time(x)


def test_with_stacked_frames_a_channels_last_a2net_runs_no_5d_convolution(monkeypatch) -> None:
    monkeypatch.setattr(Conv3d, "time_to_channels", True)
    model = build_model("a2net_tiny", num_classes=5).eval().to(memory_format=CL)
    x = torch.randn(1, 3, 8, 32, 32).contiguous(memory_format=CL)
    with torch.no_grad(), _Ops() as on:
        y = model(x)
    assert on.conv_and_pool_ranks and all(r == 4 for _, r in on.conv_and_pool_ranks)
    monkeypatch.setattr(Conv3d, "time_to_channels", False)
    torch.testing.assert_close(y, model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ["a2net_tiny", "i3d_tiny"])
def test_a_channels_last_training_step_copies_no_activations(arch: str) -> None:
    """The views' outputs are never modified in place, so backward does not copy gradients
    (an in-place ReLU on them made autograd copy 4-5 activation-sized tensors per unit)."""
    torch.manual_seed(0)
    model = build_model(arch, num_classes=5).train().to(memory_format=CL)
    x = torch.randn(2, 3, 8, 32, 32).contiguous(memory_format=CL)
    model(x).sum().backward()  # first step: gradients allocated
    with _Ops() as ops:
        model(x).sum().backward()  # accumulates into .grad: still no copy
    assert ops.copies <= 1, ops.copies
