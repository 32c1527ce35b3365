"""Model registry: ``build_model(arch, num_classes, **options)`` and ``list_models()``.

Every public builder is a thin, keyword-only function over :func:`_video_resnet` (torchvision's
``_video_resnet`` shape), registered by name with :func:`register_model`.

Backbones (Section 3 and Table 1 of the A²-Nets paper; numbers in the paper's stage naming,
res2..res5 = torchvision ``layer1..layer4``):

- ``i3d_r50``: I3D ResNet-50 8×8 as in PySlowFast/PyTorchVideo: units (3, 4, 6, 3), stem 5×7×7,
  ``conv1`` temporal kernel 3 in every res2 unit, in alternate units of res3 and res4 (first,
  third…) and in the second and later alternate units of res5; max-pool 2×1×1 after res2.
  PyTorchVideo's ``i3d_r50`` Kinetics weights load key for key.
- ``a2net_r50``: the paper's Kinetics model: ``i3d_r50`` plus 5 A²-blocks, 2 in res3 (after units
  1 and 3, i.e. ``layer2.1.attn``, ``layer2.3.attn``) and 3 in res4 (``layer3.1/3/5.attn``),
  after every other unit. The paper's Table 1 lost its numbers in our copy of the text; we take
  the I3D-R50 8×8 layout the paper's baseline row (I3D, ResNet-50) describes.
- ``nl_r50``: the same places with embedded-Gaussian non-local blocks (keys sub-sampled by
  1×2×2 max-pooling, as Wang et al.'s I3D-NL and PySlowFast do).
- ``slow_r50``: PyTorchVideo's Slow R50 (8×8): stem 1×7×7, temporal kernel 1 in res2/res3 and 3
  in res4/res5, no temporal pooling; its Kinetics weights load key for key.
- ``r26`` / ``r29``: the ablation backbones (16 frames at 112², trained from scratch). Our reading
  of "ResNet-26/29" with bottleneck units (3 layers each, plus stem and fc): 26 = 3·8 + 2 with
  units (2, 2, 2, 2); 29 = 3·9 + 2 with units (2, 3, 2, 2) (the extra unit in res3, where the
  ablations place blocks). Stem 3×7×7, temporal kernel 3 in every unit, max-pool 2×1×1 after res2.
- ``a2net_r26``: ``r26`` with one A²-block after the second unit of res3 and of res4
  (``layer2.1.attn``, ``layer3.1.attn``): "after the second residual unit", spread over stages.
- ``a2net_tiny`` / ``i3d_tiny``: 14-layer, 16-wide nets for tests and CPU demos (one unit per stage,
  A²-blocks after ``layer2.0`` and ``layer3.0``).

Common options (every builder): ``num_classes``, ``dropout``, ``pretrained_2d`` (torchvision
ResNet state dict, path, or ``"imagenet"``) with ``inflate`` (``"mean"``/``"center"``),
``pretrained_ptv`` (PyTorchVideo state dict or ``.pyth`` path), and for the attention archs
``association``, ``attn_m``, ``attn_n`` (int: channels; float: fraction of the block's input
channels; ``None``: c/4 for A²-blocks).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from torch import Tensor, nn

from a2video.models.attention import Association, DoubleAttention, NonLocal
from a2video.models.inflate import Inflate, LoadReport, inflate_2d_to_3d, load_pytorchvideo
from a2video.models.resnet3d import StageSpec, VideoResNet

__all__ = ["build_model", "list_models", "register_model"]

_MODELS: dict[str, Callable[..., VideoResNet]] = {}

WeightsSource = Mapping[str, Tensor] | str | os.PathLike | None
Width = int | float | None
BlockKind = Literal["none", "a2", "nonlocal"]


def register_model(fn: Callable[..., VideoResNet]) -> Callable[..., VideoResNet]:
    """Registers a builder under its function name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} already registered")
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names of all registered archs, sorted."""
    return sorted(_MODELS)


def build_model(arch: str, num_classes: int = 400, **options: Any) -> VideoResNet:
    """Builds a registered arch.

    Args:
        arch: A name from :func:`list_models`.
        num_classes: Output classes.
        **options: Keyword options of the arch's builder (see the module docstring).

    Returns:
        The model, with ``model.arch`` set and ``model.load_reports`` listing what any pretrained
        weights loaded.
    """
    if arch not in _MODELS:
        raise KeyError(f"unknown arch {arch!r}; choose from {list_models()}")
    return _MODELS[arch](num_classes=num_classes, **options)


def _width(spec: Width, channels: int) -> int | None:
    if spec is None:
        return None
    if isinstance(spec, float):
        return max(1, round(spec * channels))
    return int(spec)


def _attn_factory(
    block: BlockKind,
    association: Association,
    attn_m: Width,
    attn_n: Width,
    nl_pool: tuple[int, int, int] | None,
) -> Callable[[int], nn.Module] | None:
    if block == "none":
        return None
    if block == "a2":

        def a2(channels: int) -> nn.Module:
            m, n = _width(attn_m, channels), _width(attn_n, channels)
            return DoubleAttention(channels, m=m, n=n, association=association)

        return a2
    if block == "nonlocal":

        def nonlocal_(channels: int) -> nn.Module:
            return NonLocal(channels, inter_channels=_width(attn_m, channels), pool=nl_pool)

        return nonlocal_
    raise ValueError(f"unknown block kind {block!r}")


def _video_resnet(
    arch: str,
    layers: Sequence[int],
    *,
    num_classes: int,
    # Backbone
    width: int = 64,
    stem_temporal_kernel: int,
    temporal_kernels: Sequence[StageSpec],
    temporal_pool: bool,
    # Inserted blocks
    block: BlockKind = "none",
    block_units: Sequence[Sequence[int]] = ((), (), (), ()),
    association: Association = "left",
    attn_m: Width = None,
    attn_n: Width = None,
    nl_pool: tuple[int, int, int] | None = (1, 2, 2),
    # Head
    dropout: float,
    # Weights
    pretrained_2d: WeightsSource = None,
    inflate: Inflate = "mean",
    pretrained_ptv: WeightsSource = None,
) -> VideoResNet:
    model = VideoResNet(
        layers,
        num_classes=num_classes,
        width=width,
        stem_temporal_kernel=stem_temporal_kernel,
        temporal_kernels=temporal_kernels,
        temporal_pool=temporal_pool,
        attn_layer=_attn_factory(block, association, attn_m, attn_n, nl_pool),
        attn_units=block_units if block != "none" else ((), (), (), ()),
        dropout=dropout,
        arch=arch,
    )
    reports: dict[str, LoadReport] = {}
    if pretrained_2d is not None:
        reports["pretrained_2d"] = inflate_2d_to_3d(model, pretrained_2d, inflate=inflate)
    if pretrained_ptv is not None:
        reports["pretrained_ptv"] = load_pytorchvideo(model, pretrained_ptv)
    model.load_reports = reports
    return model


# I3D-R50 8×8 (PySlowFast / PyTorchVideo ``i3d_r50``).
_I3D_R50 = {
    "stem_temporal_kernel": 5,
    "temporal_kernels": (3, (3, 1), (3, 1), (1, 3)),
    "temporal_pool": True,
}
_R50 = (3, 4, 6, 3)
_A2_UNITS_R50 = ((), (1, 3), (1, 3, 5), ())
_ABLATION = {"stem_temporal_kernel": 3, "temporal_kernels": (3, 3, 3, 3), "temporal_pool": True}


@register_model
def i3d_r50(
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    pretrained_2d: WeightsSource = None,
    inflate: Inflate = "mean",
    pretrained_ptv: WeightsSource = None,
) -> VideoResNet:
    """I3D ResNet-50 8×8 without attention blocks (the paper's baseline backbone)."""
    return _video_resnet(
        "i3d_r50",
        _R50,
        **_I3D_R50,
        num_classes=num_classes,
        dropout=dropout,
        pretrained_2d=pretrained_2d,
        inflate=inflate,
        pretrained_ptv=pretrained_ptv,
    )


@register_model
def a2net_r50(
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    association: Association = "left",
    attn_m: Width = None,
    attn_n: Width = None,
    pretrained_2d: WeightsSource = None,
    inflate: Inflate = "mean",
    pretrained_ptv: WeightsSource = None,
) -> VideoResNet:
    """A²-Net ResNet-50: I3D-R50 with 5 A²-blocks (2 in res3, 3 in res4), the Kinetics model."""
    return _video_resnet(
        "a2net_r50",
        _R50,
        **_I3D_R50,
        block="a2",
        block_units=_A2_UNITS_R50,
        association=association,
        attn_m=attn_m,
        attn_n=attn_n,
        num_classes=num_classes,
        dropout=dropout,
        pretrained_2d=pretrained_2d,
        inflate=inflate,
        pretrained_ptv=pretrained_ptv,
    )


@register_model
def nl_r50(
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    attn_m: Width = None,
    nl_pool: tuple[int, int, int] | None = (1, 2, 2),
    pretrained_2d: WeightsSource = None,
    inflate: Inflate = "mean",
    pretrained_ptv: WeightsSource = None,
) -> VideoResNet:
    """I3D-R50 with 5 non-local blocks where ``a2net_r50`` has its A²-blocks (``attn_m``: d)."""
    return _video_resnet(
        "nl_r50",
        _R50,
        **_I3D_R50,
        block="nonlocal",
        block_units=_A2_UNITS_R50,
        attn_m=attn_m,
        nl_pool=nl_pool,
        num_classes=num_classes,
        dropout=dropout,
        pretrained_2d=pretrained_2d,
        inflate=inflate,
        pretrained_ptv=pretrained_ptv,
    )


@register_model
def slow_r50(
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    pretrained_2d: WeightsSource = None,
    inflate: Inflate = "mean",
    pretrained_ptv: WeightsSource = None,
) -> VideoResNet:
    """PyTorchVideo's Slow R50 8×8 (temporal kernels only in res4/res5, no temporal pooling)."""
    return _video_resnet(
        "slow_r50",
        _R50,
        stem_temporal_kernel=1,
        temporal_kernels=(1, 1, 3, 3),
        temporal_pool=False,
        num_classes=num_classes,
        dropout=dropout,
        pretrained_2d=pretrained_2d,
        inflate=inflate,
        pretrained_ptv=pretrained_ptv,
    )


@register_model
def r26(
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    pretrained_2d: WeightsSource = None,
    inflate: Inflate = "mean",
) -> VideoResNet:
    """ResNet-26 ablation backbone: bottleneck units (2, 2, 2, 2)."""
    return _video_resnet(
        "r26",
        (2, 2, 2, 2),
        **_ABLATION,
        num_classes=num_classes,
        dropout=dropout,
        pretrained_2d=pretrained_2d,
        inflate=inflate,
    )


@register_model
def r29(
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    pretrained_2d: WeightsSource = None,
    inflate: Inflate = "mean",
) -> VideoResNet:
    """ResNet-29 ablation backbone: bottleneck units (2, 3, 2, 2)."""
    return _video_resnet(
        "r29",
        (2, 3, 2, 2),
        **_ABLATION,
        num_classes=num_classes,
        dropout=dropout,
        pretrained_2d=pretrained_2d,
        inflate=inflate,
    )


@register_model
def a2net_r26(
    *,
    num_classes: int = 400,
    dropout: float = 0.5,
    association: Association = "left",
    attn_m: Width = None,
    attn_n: Width = None,
    pretrained_2d: WeightsSource = None,
    inflate: Inflate = "mean",
) -> VideoResNet:
    """ResNet-26 with A²-blocks after the second unit of res3 and res4."""
    return _video_resnet(
        "a2net_r26",
        (2, 2, 2, 2),
        **_ABLATION,
        block="a2",
        block_units=((), (1,), (1,), ()),
        association=association,
        attn_m=attn_m,
        attn_n=attn_n,
        num_classes=num_classes,
        dropout=dropout,
        pretrained_2d=pretrained_2d,
        inflate=inflate,
    )


_TINY = {"width": 16, "stem_temporal_kernel": 3, "temporal_kernels": (3, 3, 3, 3)}


@register_model
def a2net_tiny(
    *,
    num_classes: int = 400,
    dropout: float = 0.0,
    association: Association = "left",
    attn_m: Width = None,
    attn_n: Width = None,
) -> VideoResNet:
    """Tiny A²-Net for tests and CPU demos: units (1, 1, 1, 1), width 16, 2 A²-blocks."""
    return _video_resnet(
        "a2net_tiny",
        (1, 1, 1, 1),
        **_TINY,
        temporal_pool=True,
        block="a2",
        block_units=((), (0,), (0,), ()),
        association=association,
        attn_m=attn_m,
        attn_n=attn_n,
        num_classes=num_classes,
        dropout=dropout,
    )


@register_model
def i3d_tiny(*, num_classes: int = 400, dropout: float = 0.0) -> VideoResNet:
    """``a2net_tiny`` without its A²-blocks (the baseline for demos)."""
    return _video_resnet(
        "i3d_tiny",
        (1, 1, 1, 1),
        **_TINY,
        temporal_pool=True,
        num_classes=num_classes,
        dropout=dropout,
    )
