"""A configurable 3-D ResNet with attention blocks inserted after named residual units.

The backbones of the A²-Nets paper (Chen et al., NeurIPS 2018, Section 3 and Table 1) are
bottleneck ResNets whose convolutions are inflated to 3-D (I3D, Carreira & Zisserman 2017).
Parameter names follow torchvision's 2-D ResNet (``conv1``, ``bn1``, ``layer1..4.<i>.conv1..3``,
``bn1..3``, ``downsample.0/1``, ``fc``), so ImageNet inflation is a key-for-key mapping, and an
attention block after unit i of stage S lives at ``layerS.i.attn``.

Temporal modelling sits where I3D-R50 (PySlowFast, PyTorchVideo) puts it: the stem convolution
has a temporal kernel ``stem_temporal_kernel``; each unit's first 1×1 convolution (``conv1``)
has a temporal kernel chosen per stage and per unit; the 3×3 convolution stays 1×3×3 and
carries the spatial stride (ResNet v1.5, as torchvision and PyTorchVideo). An optional max-pool
(2×1×1, stride 2) after ``layer1`` halves the clip length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from a2video.models.attention import attention_blocks as find_attention_blocks
from a2video.models.layers import BatchNorm3d, Conv3d, MaxPool3d

__all__ = ["Bottleneck3d", "StageSpec", "VideoResNet"]

AttnFactory = Callable[[int], nn.Module]
StageSpec = int | Sequence[int]
"""A per-stage temporal kernel: one int for every unit, or a list repeated over the units."""


def _unit_values(spec: StageSpec, depth: int) -> list[int]:
    """Expands a per-stage spec to one value per unit (a list is cycled, as PyTorchVideo does)."""
    if isinstance(spec, int):
        return [spec] * depth
    values = list(spec)
    return [values[i % len(values)] for i in range(depth)]


class Bottleneck3d(nn.Module):
    """Bottleneck residual unit: (kt×1×1) → (1×3×3, spatial stride) → (1×1×1), ×4 expansion.

    Args:
        inplanes: Input channels.
        planes: Bottleneck width; output channels are ``planes * 4``.
        stride: Spatial stride of the 3×3 convolution (and of the shortcut).
        temporal_kernel: Temporal size of ``conv1`` (odd; 1 keeps the unit 2-D).
        attn: Factory ``attn(channels) -> nn.Module`` for a block applied after the unit's
            residual sum and ReLU (``self.attn``), or ``None``.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        temporal_kernel: int = 1,
        attn: AttnFactory | None = None,
    ) -> None:
        super().__init__()
        if temporal_kernel % 2 != 1:
            raise ValueError(f"temporal kernels must be odd, got {temporal_kernel}")
        out = planes * self.expansion
        kt = temporal_kernel
        self.conv1 = Conv3d(inplanes, planes, (kt, 1, 1), padding=(kt // 2, 0, 0), bias=False)
        self.bn1 = BatchNorm3d(planes)
        self.conv2 = Conv3d(
            planes, planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False
        )
        self.bn2 = BatchNorm3d(planes)
        self.conv3 = Conv3d(planes, out, 1, bias=False)
        self.bn3 = BatchNorm3d(out)
        # Not in place: BatchNorm3d and Conv3d return views of their 2-D kernels' outputs, and an
        # in-place op on a view makes autograd copy the whole gradient of its base (CopySlices).
        self.relu = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                Conv3d(inplanes, out, 1, stride=(1, stride, stride), bias=False),
                BatchNorm3d(out),
            )
        self.attn: nn.Module | None = attn(out) if attn is not None else None

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = self.relu(out + identity)
        if self.attn is not None:
            out = self.attn(out)
        return out


class VideoResNet(nn.Module):
    """3-D bottleneck ResNet for clips (N, 3, T, H, W) with optional attention blocks.

    Args:
        layers: Residual units per stage (res2..res5), e.g. ``(3, 4, 6, 3)`` for ResNet-50.
        num_classes: Output classes of ``fc``.
        width: Channels of the stem (64 for the standard ResNets); stage S has bottleneck
            width ``width·2^(S-2)`` and ``4×`` that many output channels.
        stem_temporal_kernel: Temporal size of the 7×7 stem convolution.
        temporal_kernels: Per stage, the temporal size of each unit's ``conv1`` (int, or a list
            cycled over the units).
        temporal_pool: Max-pool 2×1×1 with stride 2 after ``layer1`` (I3D-R50 8×8).
        attn_layer: Factory ``attn(channels) -> nn.Module`` for inserted blocks.
        attn_units: Per stage, the indices of the units followed by an ``attn_layer`` block.
        dropout: Dropout before ``fc``.
        zero_init_residual: Zero the last BN scale of every unit (torchvision's option).
        arch: Registered name, kept for checkpoints and reports.
    """

    def __init__(
        self,
        layers: Sequence[int],
        *,
        num_classes: int = 400,
        # Stem and width
        width: int = 64,
        stem_temporal_kernel: int = 1,
        # Temporal modelling
        temporal_kernels: Sequence[StageSpec] = (1, 1, 1, 1),
        temporal_pool: bool = False,
        # Inserted blocks
        attn_layer: AttnFactory | None = None,
        attn_units: Sequence[Sequence[int]] = ((), (), (), ()),
        # Head
        dropout: float = 0.0,
        zero_init_residual: bool = False,
        arch: str = "",
    ) -> None:
        super().__init__()
        if not (len(layers) == len(temporal_kernels) == len(attn_units) == 4):
            raise ValueError("layers, temporal_kernels and attn_units need one entry per stage")
        for stage, (depth, units) in enumerate(zip(layers, attn_units, strict=True)):
            if any(not 0 <= i < depth for i in units):
                raise ValueError(f"attn_units {units} out of range for stage {stage + 2}")
        if any(units for units in attn_units) and attn_layer is None:
            raise ValueError("attn_units given without an attn_layer")
        self.arch = arch
        self.num_classes = num_classes
        kt = stem_temporal_kernel
        self.conv1 = Conv3d(
            3, width, (kt, 7, 7), stride=(1, 2, 2), padding=(kt // 2, 3, 3), bias=False
        )
        self.bn1 = BatchNorm3d(width)
        self.relu = nn.ReLU()  # not in place: see Bottleneck3d
        self.maxpool = MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.temporal_pool = (
            MaxPool3d((2, 1, 1), stride=(2, 1, 1)) if temporal_pool else nn.Identity()
        )
        inplanes = width
        stages = []
        for idx, depth in enumerate(layers):
            planes = width * 2**idx
            kernels = _unit_values(temporal_kernels[idx], depth)
            units = []
            for i in range(depth):
                units.append(
                    Bottleneck3d(
                        inplanes,
                        planes,
                        stride=2 if (idx > 0 and i == 0) else 1,
                        temporal_kernel=kernels[i],
                        attn=attn_layer if i in attn_units[idx] else None,
                    )
                )
                inplanes = planes * Bottleneck3d.expansion
            stages.append(nn.Sequential(*units))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.feature_dim = inplanes
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(self.feature_dim, num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for name, mod in self.named_modules():
            if ".attn" in name:  # attention blocks keep their own (identity) initialisation
                continue
            if isinstance(mod, nn.Conv3d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(mod, nn.BatchNorm3d):
                nn.init.ones_(mod.weight)
                nn.init.zeros_(mod.bias)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)
        if zero_init_residual:
            for mod in self.modules():
                if isinstance(mod, Bottleneck3d):
                    nn.init.zeros_(mod.bn3.weight)

    @property
    def attention_blocks(self) -> dict[str, nn.Module]:
        """Inserted blocks by name (``layerS.i.attn``)."""
        return find_attention_blocks(self)

    def forward_features(self, x: Tensor) -> Tensor:
        """(N, 3, T, H, W) → last feature map (N, feature_dim, t, h, w)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.temporal_pool(self.layer1(x))
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """Global average pool over (t, h, w), dropout, ``fc``; ``pre_logits``: pooled features."""
        x = self.avgpool(features).flatten(1)  # (N, D, 1, 1, 1) -> (N, D)
        if pre_logits:
            return x
        return self.fc(self.dropout(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replaces ``fc`` with a freshly initialised head for ``num_classes`` classes."""
        self.num_classes = num_classes
        fc = nn.Linear(self.feature_dim, num_classes)
        nn.init.normal_(fc.weight, std=0.01)
        nn.init.zeros_(fc.bias)
        self.fc = fc.to(device=self.fc.weight.device, dtype=self.fc.weight.dtype)

    def get_classifier(self) -> nn.Linear:
        return self.fc

    @torch.no_grad()
    def example_input(self, frames: int = 8, size: int = 224, batch: int = 1) -> Tensor:
        """A zero clip of the given shape on the model's device (for tracing and FLOP counts)."""
        p = next(self.parameters())
        return torch.zeros(batch, 3, frames, size, size, device=p.device, dtype=p.dtype)
