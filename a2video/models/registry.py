"""Model registry: ``build_model(arch, num_classes, **options)`` and ``list_models()``.

Every public builder is a thin function that fixes its architecture and passes ``**kwargs`` (the
common options below) to :func:`_video_resnet`, which holds them once, typed and keyword-only
(torchvision's ``_video_resnet`` shape); builders are registered by name with
:func:`register_model`.

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
- ``nl_r26``: the same places with non-local blocks (the A²-vs-non-local comparison).
- ``a2net_tiny`` / ``i3d_tiny``: 14-layer, 16-wide nets for tests and CPU demos (one unit per stage,
  A²-blocks after ``layer2.0`` and ``layer3.0``).

Common options (every builder): ``num_classes``, ``dropout``, ``pretrained_2d`` (torchvision
ResNet state dict, path, or ``"imagenet"``) with ``inflate`` (``"mean"``/``"center"``),
``pretrained_ptv`` (PyTorchVideo state dict or ``.pyth`` path), and for the attention archs
``association``, ``attn_m``, ``attn_n`` (int: channels; float: fraction of the block's input
channels; ``None``: c/4 for A²-blocks), ``attn_fold_bn`` (A²-blocks: the output BN folded into
the output convolution, ``DoubleAttention(fold_bn=True)``; the same function and state dict).

Block kind and placement (the paper's ablations):

- ``attention`` (``r26``, ``r29``): ``"a2"``, ``"nonlocal"`` or ``None`` (no blocks, the
  default): the kind of block to insert.
- ``attn_units`` (``r26``, ``r29`` and every attention arch): where the blocks go, as a mapping
  from stage name to the indices of the residual units followed by a block, in torchvision's stage
  naming ``layer1..layer4`` (= the paper's res2..res5); the block after unit ``i`` of ``layerS``
  lives at ``layerS.i.attn``. E.g. the single-block ablation "one A²-block after the second
  residual unit of res4" is ``build_model("r26", attention="a2", attn_units={"layer3": [1]})``.
  Stages left out get no block. On the attention archs it replaces their default placement.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from torch import Tensor, nn

from a2video.models.attention import Association, DoubleAttention, NonLocal
from a2video.models.inflate import Inflate
from a2video.models.resnet3d import StageSpec, VideoResNet
from a2video.models.weights import load_weights

__all__ = [
    "UnknownArchError",
    "build_model",
    "check_clip_size",
    "list_models",
    "register_model",
]

_MODELS: dict[str, Callable[..., VideoResNet]] = {}

WeightsSource = Mapping[str, Tensor] | str | os.PathLike | None
Width = int | float | None
BlockKind = Literal["none", "a2", "nonlocal"]
Attention = Literal["a2", "nonlocal"] | None
AttnUnits = Mapping[str, Sequence[int]] | None
_STAGES = ("layer1", "layer2", "layer3", "layer4")


def register_model(fn: Callable[..., VideoResNet]) -> Callable[..., VideoResNet]:
    """Registers a builder under its function name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} already registered")
    _MODELS[fn.__name__] = fn
    return fn


class UnknownArchError(KeyError, ValueError):
    """An arch name that is not registered (a ``KeyError`` for lookups, a ``ValueError`` so the
    entry points print it in one line: a checkpoint or config naming an unknown arch)."""

    def __str__(self) -> str:  # KeyError's str() would quote the message
        return str(self.args[0]) if self.args else ""


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
        raise UnknownArchError(f"unknown arch {arch!r}; choose from {list_models()}")
    unknown = sorted(set(options) - set(arch_options(arch)))
    if unknown:  # a typo in arch_options: one line naming the valid ones, not a TypeError
        raise ValueError(
            f"{arch}: unknown arch_options {unknown}; its options are {arch_options(arch)}"
        )
    return _MODELS[arch](num_classes=num_classes, **options)


# Builder options that fetch weights: not needed to build an arch on the meta device.
_WEIGHT_OPTIONS = ("pretrained_2d", "pretrained_ptv")
# torch's messages for an input that a pooling or convolution reduces to nothing
_TOO_SMALL = ("too small", "greater than actual input size")


def check_clip_size(
    arch: str,
    frames: int,
    size: int,
    *,
    flags: tuple[str, str] = ("--frames", "--size"),
    **options: Any,
) -> None:
    """Refuse, in one line naming ``flags`` (the entry point's options for the clip length and
    crop size) and the smallest clip ``arch`` takes, a ``frames``×``size``² clip that its strides
    and pooling reduce to nothing (a traceback deep inside torch otherwise). The arch is built and
    run on the meta device: no memory, no compute.

    Raises:
        ValueError: the clip is too small for ``arch``.
    """
    import torch

    options = {k: v for k, v in options.items() if k not in _WEIGHT_OPTIONS}
    with torch.device("meta"):
        model = build_model(arch, **options).eval()

    def runs(t: int, s: int) -> bool:
        try:
            with torch.no_grad():
                model(torch.zeros(1, 3, t, s, s, device="meta"))
        except RuntimeError as err:
            if not any(words in str(err) for words in _TOO_SMALL):
                raise
            return False
        return True

    if runs(frames, size):
        return
    big = max(size, 256)
    min_frames = next((t for t in range(1, 65) if runs(t, big)), None)
    if min_frames is None:  # no clip length helps: leave torch's error as it is
        return
    t = max(frames, min_frames)
    lo, hi = 1, max(size, 1024)  # bisection: the smallest size that runs, at t frames
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if runs(t, mid) else (mid + 1, hi)
    frames_flag, size_flag = flags
    raise ValueError(
        f"{frames_flag} {frames}, {size_flag} {size}: a clip of {frames} frames at {size}x{size} "
        f"is too small for {arch} (its strides and pooling leave no output); it takes at least "
        f"{min_frames} frames and {lo} px: pass {frames_flag} {t} {size_flag} {max(size, lo)} or "
        "more"
    )


def arch_options(arch: str) -> list[str]:
    """The options (``arch_options`` keys) ``arch``'s builder accepts, sorted."""
    builder = inspect.signature(_MODELS[arch]).parameters.values()
    shared = inspect.signature(_video_resnet).parameters.values()
    names = {p.name for p in builder if p.kind is not p.VAR_KEYWORD}
    names |= {p.name for p in shared if p.kind is p.KEYWORD_ONLY}
    return sorted(names - {"num_classes"})


def _width(spec: Width, channels: int) -> int | None:
    if spec is None:
        return None
    if isinstance(spec, float):
        return max(1, round(spec * channels))
    return int(spec)


def _block_units(
    attn_units: Mapping[str, Sequence[int]], layers: Sequence[int]
) -> tuple[tuple[int, ...], ...]:
    """``{"layer3": [1]}`` → per-stage unit tuples ``((), (), (1,), ())``, checked."""
    if not isinstance(attn_units, Mapping):  # a user's value: a ValueError (one-line CLI error)
        raise ValueError(
            f"attn_units must map stage names to unit indices, e.g. {{'layer3': [1]}}; "
            f"got {attn_units!r}"
        )
    unknown = sorted(set(attn_units) - set(_STAGES))
    if unknown:
        raise ValueError(
            f"attn_units: unknown stage(s) {unknown}; use {list(_STAGES)} (= res2..res5)"
        )
    units = []
    for stage, depth in zip(_STAGES, layers, strict=True):
        idx = attn_units.get(stage) or ()
        if isinstance(idx, int):
            idx = (idx,)
        idx = tuple(sorted({int(i) for i in idx}))
        if any(not 0 <= i < depth for i in idx):
            raise ValueError(
                f"attn_units[{stage!r}] = {list(idx)}: {stage} has units 0..{depth - 1}"
            )
        units.append(idx)
    return tuple(units)


def _placement(
    arch: str,
    layers: Sequence[int],
    attention: Attention,
    attn_units: AttnUnits,
    default_units: Sequence[Sequence[int]] = ((), (), (), ()),
) -> dict[str, Any]:
    """Public ``attention``/``attn_units`` → the private builder's ``block``/``block_units``."""
    if attention not in (None, "a2", "nonlocal"):
        raise ValueError(f"{arch}: attention must be 'a2', 'nonlocal' or None, got {attention!r}")
    if attention is None:
        if attn_units and any(attn_units.values()):
            raise ValueError(f"{arch}: attn_units={dict(attn_units)} given without attention=")
        return {"block": "none", "block_units": ((), (), (), ())}
    units = default_units if attn_units is None else _block_units(attn_units, layers)
    if not any(units):
        raise ValueError(
            f"{arch}: attention={attention!r} needs attn_units, e.g. {{'layer3': [1]}}"
        )
    return {"block": attention, "block_units": tuple(tuple(u) for u in units)}


def _attn_factory(
    block: BlockKind,
    association: Association,
    attn_m: Width,
    attn_n: Width,
    nl_pool: tuple[int, int, int] | None,
    fold_bn: bool = False,
) -> Callable[[int], nn.Module] | None:
    if block == "none":
        return None
    if block == "a2":

        def a2(channels: int) -> nn.Module:
            m, n = _width(attn_m, channels), _width(attn_n, channels)
            return DoubleAttention(channels, m=m, n=n, association=association, fold_bn=fold_bn)

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
    num_classes: int = 400,
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
    attn_fold_bn: bool = False,
    nl_pool: tuple[int, int, int] | None = (1, 2, 2),
    # Head
    dropout: float = 0.5,
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
        attn_layer=_attn_factory(block, association, attn_m, attn_n, nl_pool, attn_fold_bn),
        attn_units=block_units if block != "none" else ((), (), (), ()),
        dropout=dropout,
        arch=arch,
    )
    sources = {
        "pretrained_2d": (pretrained_2d, "imagenet"),
        "pretrained_ptv": (pretrained_ptv, "pytorchvideo"),
    }
    model.load_reports = {
        name: load_weights(model, source, kind=kind, inflate=inflate)
        for name, (source, kind) in sources.items()
        if source is not None
    }
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
_R26 = (2, 2, 2, 2)
_R29 = (2, 3, 2, 2)
_SLOW_R50 = {"stem_temporal_kernel": 1, "temporal_kernels": (1, 1, 3, 3), "temporal_pool": False}
_UNITS_R26 = ((), (1,), (1,), ())


@register_model
def i3d_r50(**kwargs: Any) -> VideoResNet:
    """I3D ResNet-50 8×8 without attention blocks (the paper's baseline backbone)."""
    return _video_resnet("i3d_r50", _R50, **_I3D_R50, **kwargs)


@register_model
def a2net_r50(*, attn_units: AttnUnits = None, **kwargs: Any) -> VideoResNet:
    """A²-Net ResNet-50: I3D-R50 with 5 A²-blocks (2 in res3, 3 in res4), the Kinetics model."""
    placement = _placement("a2net_r50", _R50, "a2", attn_units, _A2_UNITS_R50)
    return _video_resnet("a2net_r50", _R50, **_I3D_R50, **placement, **kwargs)


@register_model
def nl_r50(*, attn_units: AttnUnits = None, **kwargs: Any) -> VideoResNet:
    """I3D-R50 with 5 non-local blocks where ``a2net_r50`` has its A²-blocks (``attn_m``: d)."""
    placement = _placement("nl_r50", _R50, "nonlocal", attn_units, _A2_UNITS_R50)
    return _video_resnet("nl_r50", _R50, **_I3D_R50, **placement, **kwargs)


@register_model
def slow_r50(**kwargs: Any) -> VideoResNet:
    """PyTorchVideo's Slow R50 8×8 (temporal kernels only in res4/res5, no temporal pooling)."""
    return _video_resnet("slow_r50", _R50, **_SLOW_R50, **kwargs)


@register_model
def r26(*, attention: Attention = None, attn_units: AttnUnits = None, **kwargs: Any) -> VideoResNet:
    """ResNet-26 ablation backbone: bottleneck units (2, 2, 2, 2).

    ``attention`` ("a2"/"nonlocal") with ``attn_units`` inserts blocks for the ablations, e.g.
    ``attention="a2", attn_units={"layer3": [1]}``: one A²-block after the second unit of res4.
    """
    placement = _placement("r26", _R26, attention, attn_units)
    return _video_resnet("r26", _R26, **_ABLATION, **placement, **kwargs)


@register_model
def r29(*, attention: Attention = None, attn_units: AttnUnits = None, **kwargs: Any) -> VideoResNet:
    """ResNet-29 ablation backbone: bottleneck units (2, 3, 2, 2).

    ``attention`` ("a2"/"nonlocal") with ``attn_units`` inserts blocks for the ablations, e.g.
    ``attention="a2", attn_units={"layer3": [1]}``: one A²-block after the second unit of res4.
    """
    placement = _placement("r29", _R29, attention, attn_units)
    return _video_resnet("r29", _R29, **_ABLATION, **placement, **kwargs)


@register_model
def a2net_r26(*, attn_units: AttnUnits = None, **kwargs: Any) -> VideoResNet:
    """ResNet-26 with A²-blocks after the second unit of res3 and res4."""
    placement = _placement("a2net_r26", _R26, "a2", attn_units, _UNITS_R26)
    return _video_resnet("a2net_r26", _R26, **_ABLATION, **placement, **kwargs)


@register_model
def nl_r26(*, attn_units: AttnUnits = None, **kwargs: Any) -> VideoResNet:
    """ResNet-26 with non-local blocks where ``a2net_r26`` has its A²-blocks (``attn_m``: d)."""
    placement = _placement("nl_r26", _R26, "nonlocal", attn_units, _UNITS_R26)
    return _video_resnet("nl_r26", _R26, **_ABLATION, **placement, **kwargs)


_TINY = {"width": 16, "stem_temporal_kernel": 3, "temporal_kernels": (3, 3, 3, 3)}
_UNITS_TINY = ((), (0,), (0,), ())


@register_model
def a2net_tiny(*, attn_units: AttnUnits = None, **kwargs: Any) -> VideoResNet:
    """Tiny A²-Net for tests and CPU demos: units (1, 1, 1, 1), width 16, 2 A²-blocks."""
    placement = _placement("a2net_tiny", (1, 1, 1, 1), "a2", attn_units, _UNITS_TINY)
    kwargs = {"dropout": 0.0, **kwargs}
    return _video_resnet(
        "a2net_tiny", (1, 1, 1, 1), **_TINY, temporal_pool=True, **placement, **kwargs
    )


@register_model
def i3d_tiny(**kwargs: Any) -> VideoResNet:
    """``a2net_tiny`` without its A²-blocks (the baseline for demos)."""
    kwargs = {"dropout": 0.0, **kwargs}
    return _video_resnet("i3d_tiny", (1, 1, 1, 1), **_TINY, temporal_pool=True, **kwargs)
