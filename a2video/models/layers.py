"""3-D layers that run channels-last clips through 2-D kernels on free views.

A ``channels_last_3d`` clip (N, C, T, H, W) is stored N, T, H, W, C. Two reshapes of it are
``channels_last`` 4-D tensors without a copy:

- (N·T, C, H, W): N and T merge (stride of N = T × stride of T), for layers that act on each
  frame alone: 1×kh×kw convolutions and 1×kh×kw max-pools;
- (N, C, T, H·W): H and W merge (in either memory format), for layers that do not mix spatial
  positions: kt×1×1 convolutions (1×1×1 included) and kt×1×1 max-pools, and BatchNorm, which
  normalises each channel over all the other axes.

PyTorch sends 4-D channels-last tensors to its 2-D kernels (cuDNN/oneDNN convolutions, NHWC
BatchNorm and pooling): faster than the 5-D ones on oneDNN and for BatchNorm; cuDNN's 2-D and
5-D convolutions are about level (benchmarks/RESULTS.md, "GPU"). Every layer of a
bottleneck 3-D ResNet except a stem with a temporal kernel is of one of these shapes; that stem,
on CUDA, runs as one 2-D convolution over its kt shifted frames stacked into channels. The
classes subclass their ``torch.nn`` namesakes: parameters, buffers, state-dict keys and results
are the same, and a class-wide switch turns the views off (``benchmarks/bench_gpu.py`` times
both). Inputs the views do not fit (other kernels, dilation, padding modes) take the 5-D path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BatchNorm3d", "Conv3d", "MaxPool3d", "channels_last_clip"]


def channels_last_clip(x: Tensor) -> bool:
    """Whether ``x`` is a 5-D clip stored channels-last (and not also plainly contiguous)."""
    return (
        x.dim() == 5
        and x.is_contiguous(memory_format=torch.channels_last_3d)
        and not x.is_contiguous()
    )


def _frames_view(x: Tensor) -> Tensor:
    """(N, C, T, H, W) channels-last → (N·T, C, H, W) channels-last, a view."""
    return x.transpose(1, 2).flatten(0, 1)


def _from_frames(y: Tensor, n: int) -> Tensor:
    """(N·T, C, H, W) → (N, C, T, H, W); channels-last in, channels-last out (a view)."""
    return y.unflatten(0, (n, -1)).transpose(1, 2)


def _keep_layout(y: Tensor, x: Tensor) -> Tensor:
    """``y`` in ``x``'s memory format. A no-op but where a kernel saw an ambiguous view (e.g.
    CPU ``max_pool2d`` on a batch of one clip returns it contiguous) and a copy restores it."""
    if channels_last_clip(x) and not y.is_contiguous(memory_format=torch.channels_last_3d):
        return y.contiguous(memory_format=torch.channels_last_3d)
    return y


class BatchNorm3d(nn.BatchNorm3d):
    """``nn.BatchNorm3d`` that runs channels-last clips as 4-D (N, C, T·H, W) channels-last.

    ``fold_time`` (class-wide, default True) switches the 4-D view on; off, it is plain
    ``nn.BatchNorm3d``.
    """

    fold_time: bool = True

    def forward(self, x: Tensor) -> Tensor:
        if self.fold_time and channels_last_clip(x):
            t, h = x.shape[2], x.shape[3]
            return super().forward(x.flatten(2, 3)).unflatten(2, (t, h))  # views, no copy
        return super().forward(x)

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() not in (4, 5):  # 4-D only as the folded view of a clip
            raise ValueError(f"expected 5D input (got {x.dim()}D input)")


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` that runs 1×kh×kw and kt×1×1 kernels as 2-D convolutions on views.

    - 1×kh×kw (temporal stride 1, no temporal padding) on a channels-last clip: ``conv2d`` over
      the (N·T, C, H, W) frames view with the weight's (O, C, kh, kw) view;
    - kt×1×1 (spatial stride 1, no spatial padding), any memory format: ``conv2d`` over the
      (N, C, T, H·W) view with a kt×1 kernel.

    - kt×kh×kw with few input channels (C·kt ≤ 32: a stem on RGB frames), temporal stride 1,
      on a channels-last clip: the kt shifted frames are stacked into C·kt channels (zero-padded
      to a multiple of 8) and one 2-D convolution runs with the weight's (O, C·kt, kh, kw) view.
      cuDNN runs a 3-channel 3-D convolution with slow "indexed" kernels (the 5×7×7 stem of
      a2net_r50 took 24 % of a compiled H200 step at batch 32); the stacked copy holds about kt
      times the clip.

    ``as_2d`` (class-wide, default True) switches the views on; off, it is plain ``nn.Conv3d``.
    ``time_to_channels`` (class-wide) switches the stacked stem: None (default) on CUDA only.
    """

    as_2d: bool = True
    time_to_channels: bool | None = None

    def _plain(self) -> bool:
        return (
            not self.as_2d
            or self.padding_mode != "zeros"
            or isinstance(self.padding, str)
            or self.dilation != (1, 1, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with(x, self.weight, self.bias)

    def forward_with(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """This layer's convolution of ``x`` with another ``weight`` and ``bias`` of the same
        shapes (e.g. with a BatchNorm folded in), through the same 2-D views."""
        if self._plain() or x.dim() != 5:
            return self._conv_forward(x, weight, bias)
        (kt, kh, kw), (st, sh, sw), (pt, ph, pw) = self.kernel_size, self.stride, self.padding
        if kh == kw == 1 and sh == sw == 1 and ph == pw == 0:
            h, w = x.shape[3:]
            y = F.conv2d(x.flatten(3), weight.flatten(3), bias, (st, 1), (pt, 0), 1, self.groups)
            return _keep_layout(y.unflatten(3, (h, w)), x)
        if (
            kt == 1
            and st == 1
            and pt == 0
            and x.is_contiguous(memory_format=torch.channels_last_3d)
        ):
            y = F.conv2d(
                _frames_view(x), weight.squeeze(2), bias, (sh, sw), (ph, pw), 1, self.groups
            )
            return _keep_layout(_from_frames(y, x.shape[0]), x)
        if self._stacks_time(x):
            return self._time_in_channels(x, weight, bias)
        return self._conv_forward(x, weight, bias)

    def _stacks_time(self, x: Tensor) -> bool:
        use = self.time_to_channels if self.time_to_channels is not None else x.is_cuda
        return (
            use
            and self.groups == 1
            and self.stride[0] == 1
            and self.in_channels * self.kernel_size[0] <= 32
            and channels_last_clip(x)
        )

    def _time_in_channels(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """The convolution as one 2-D convolution over (N·T', C·kt, H, W) stacked frames."""
        n, c, t, h, w = x.shape
        kt, (pt, ph, pw) = self.kernel_size[0], self.padding
        if torch.is_autocast_enabled(x.device.type):  # stack in the dtype the kernel reads
            x = x.to(torch.get_autocast_dtype(x.device.type))
        t_out = t + 2 * pt - kt + 1
        width = -(-c * kt // 8) * 8  # tensor-core kernels want channels in multiples of 8
        frames = x.permute(0, 2, 3, 4, 1)  # (N, T, H, W, C): a view of a channels-last clip
        stacked = x.new_zeros(n, t_out, h, w, width)
        for tau in range(kt):  # output frame j reads input frame j - pt + tau (zero outside)
            lo, hi = max(0, pt - tau), min(t_out, t + pt - tau)
            if lo < hi:
                stacked[:, lo:hi, :, :, tau : c * kt : kt] = frames[
                    :, lo - pt + tau : hi - pt + tau
                ]
        weight = F.pad(weight.flatten(1, 2), (0, 0, 0, 0, 0, width - c * kt))
        y = F.conv2d(
            stacked.flatten(0, 1).permute(0, 3, 1, 2), weight, bias, self.stride[1:], (ph, pw)
        )
        return _from_frames(y, n)


class MaxPool3d(nn.MaxPool3d):
    """``nn.MaxPool3d`` that runs 1×kh×kw pools on the frames view of a channels-last clip and
    kt×1×1 pools on the (N, C, T, H·W) view, as ``max_pool2d``.

    ``as_2d`` (class-wide, default True) switches the views on; off, it is plain
    ``nn.MaxPool3d``.
    """

    as_2d: bool = True

    def forward(self, x: Tensor) -> Tensor:
        if not self.as_2d or self.return_indices or x.dim() != 5:
            return super().forward(x)
        k, s, p, d = (nn.modules.utils._triple(v) for v in (
            self.kernel_size, self.stride or self.kernel_size, self.padding, self.dilation
        ))  # fmt: skip
        if d != (1, 1, 1):
            return super().forward(x)
        if k[1] == k[2] == 1 and s[1] == s[2] == 1 and p[1] == p[2] == 0:
            h, w = x.shape[3:]
            y = F.max_pool2d(x.flatten(3), (k[0], 1), (s[0], 1), (p[0], 0), 1, self.ceil_mode)
            return _keep_layout(y.unflatten(3, (h, w)), x)
        if (
            k[0] == 1
            and s[0] == 1
            and p[0] == 0
            and x.is_contiguous(memory_format=torch.channels_last_3d)
        ):
            y = F.max_pool2d(_frames_view(x), k[1:], s[1:], p[1:], 1, self.ceil_mode)
            return _keep_layout(_from_frames(y, x.shape[0]), x)
        return super().forward(x)
