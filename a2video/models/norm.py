"""BatchNorm3d that hands channels-last clips to the 2-D (cuDNN) kernels.

Batch normalisation over a clip (N, C, T, H, W) normalises each channel over N·T·H·W values, the
same as a 2-D BatchNorm over (N, C, T·H, W). A ``channels_last_3d`` tensor viewed that way is a
``channels_last`` 4-D tensor without a copy (T and H merge: their strides are H·W·C and W·C), and
PyTorch sends channels-last 4-D BatchNorm to cuDNN's NHWC kernels, while 5-D channels-last
BatchNorm goes to its own slower native kernels. Parameters, buffers, state-dict keys and results
are those of ``nn.BatchNorm3d``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["BatchNorm3d"]


class BatchNorm3d(nn.BatchNorm3d):
    """``nn.BatchNorm3d`` that runs channels-last clips as 4-D (N, C, T·H, W) channels-last.

    ``fold_time`` (class-wide, default True) switches the 4-D view on; off, it is plain
    ``nn.BatchNorm3d``.
    """

    fold_time: bool = True

    def forward(self, x: Tensor) -> Tensor:
        if (
            self.fold_time
            and x.dim() == 5
            and x.is_contiguous(memory_format=torch.channels_last_3d)
            and not x.is_contiguous()
        ):
            t, h = x.shape[2], x.shape[3]
            return super().forward(x.flatten(2, 3)).unflatten(2, (t, h))  # views, no copy
        return super().forward(x)

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() not in (4, 5):  # 4-D only as the folded view of a clip
            raise ValueError(f"expected 5D input (got {x.dim()}D input)")
