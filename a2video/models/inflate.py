"""Weight conversion: ImageNet 2-D ResNet → 3-D (I3D inflation) and PyTorchVideo import.

Each conversion is a pure function from one state dict to another plus a :class:`LoadReport`
(timm's ``checkpoint_filter_fn`` shape); thin appliers load the result into a model and check
that the only keys left at their initialisation are the new attention blocks' and, when the class
counts differ, the head's.

Inflation (Carreira & Zisserman 2017, as in the A²-Nets paper's "ImageNet-pretrained ResNet-50"):
a 2-D kernel W (O, I, kh, kw) becomes a 3-D kernel (O, I, kt, kh, kw) by

- ``"mean"``: W repeated over the kt taps and divided by kt (I3D; MMAction2
  ``_inflate_conv_params``, PySlowFast ``inflate_weight``): a temporally constant clip then gives
  the 2-D activations wherever the temporal window lies inside the clip;
- ``"center"``: W on the centre tap, zeros elsewhere: a temporally constant clip gives exactly
  the 2-D network's activations at every frame, borders included.

BatchNorm and the linear head copy over unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = [
    "LoadReport",
    "convert_pytorchvideo_state_dict",
    "inflate_2d_to_3d",
    "inflate_state_dict",
    "inflate_weight",
    "load_pytorchvideo",
    "resolve_state_dict",
]

Inflate = Literal["mean", "center"]
HEAD_KEYS = ("fc.weight", "fc.bias")


@dataclass
class LoadReport:
    """What a conversion did.

    Attributes:
        loaded: Target keys filled from the source.
        skipped: Source keys with no place in the target (unused).
        reinitialized: Target keys the source had with another shape, left at their
            initialisation (the head when the class counts differ).
        missing: Target keys the source does not have (new attention blocks).
    """

    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    reinitialized: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line per category, counts first, with the non-loaded keys spelled out."""
        lines = [f"loaded {len(self.loaded)} tensors"]
        for name in ("skipped", "reinitialized", "missing"):
            keys = getattr(self, name)
            if keys:
                shown = ", ".join(keys[:8]) + (f", … (+{len(keys) - 8})" if len(keys) > 8 else "")
                lines.append(f"{name} {len(keys)}: {shown}")
            else:
                lines.append(f"{name} 0")
        return "; ".join(lines)


def inflate_weight(weight_2d: Tensor, time: int, inflate: Inflate = "mean") -> Tensor:
    """Inflates a (O, I, kh, kw) kernel to (O, I, time, kh, kw).

    Args:
        weight_2d: The 2-D kernel.
        time: Temporal size kt of the 3-D kernel.
        inflate: ``"mean"`` (repeat over time ÷ kt) or ``"center"`` (centre tap only).

    Returns:
        The 3-D kernel, same dtype and device.
    """
    if inflate == "mean":
        return weight_2d.unsqueeze(2).repeat(1, 1, time, 1, 1) / time  # (O,I,kh,kw)->(O,I,t,kh,kw)
    if inflate == "center":
        out = weight_2d.new_zeros(*weight_2d.shape[:2], time, *weight_2d.shape[2:])
        out[:, :, time // 2] = weight_2d
        return out
    raise ValueError(f"inflate must be 'mean' or 'center', got {inflate!r}")


def _match(
    source: Mapping[str, Tensor],
    target_shapes: Mapping[str, torch.Size | tuple[int, ...]],
    inflate: Inflate | None,
    head_keys: tuple[str, ...] = HEAD_KEYS,
) -> tuple[dict[str, Tensor], LoadReport]:
    """Copies (or inflates) every source tensor whose key the target has, checking shapes."""
    out: dict[str, Tensor] = {}
    report = LoadReport()
    for key, shape in target_shapes.items():
        shape = tuple(shape)
        if key not in source:
            report.missing.append(key)
            continue
        src = source[key]
        if tuple(src.shape) == shape:
            out[key] = src.detach().clone()
        elif (
            inflate is not None
            and src.dim() == 4
            and len(shape) == 5
            and tuple(src.shape[:2]) == shape[:2]
            and tuple(src.shape[2:]) == shape[3:]
        ):
            out[key] = inflate_weight(src.detach(), shape[2], inflate)
        elif key in head_keys:
            report.reinitialized.append(key)
            continue
        else:
            raise ValueError(
                f"{key}: source shape {tuple(src.shape)} does not fit target shape {shape}"
            )
        report.loaded.append(key)
    report.skipped = [k for k in source if k not in target_shapes]
    return out, report


def inflate_state_dict(
    state_dict_2d: Mapping[str, Tensor],
    target_shapes: Mapping[str, torch.Size | tuple[int, ...]],
    inflate: Inflate = "mean",
) -> tuple[dict[str, Tensor], LoadReport]:
    """Converts a torchvision ResNet state dict to a 3-D one, key for key.

    Args:
        state_dict_2d: torchvision ResNet state dict (``conv1.weight``, ``layer1.0.conv1.weight``…).
        target_shapes: Key → shape of the 3-D model (``{k: v.shape for k, v in sd3d.items()}``).
        inflate: How 2-D kernels gain their temporal taps (see module docstring).

    Returns:
        ``(state_dict_3d, report)``; the state dict holds only the loaded keys.
    """
    if inflate not in ("mean", "center"):
        raise ValueError(f"inflate must be 'mean' or 'center', got {inflate!r}")
    return _match(state_dict_2d, target_shapes, inflate)


def resolve_state_dict(source: Mapping[str, Tensor] | str | os.PathLike) -> dict[str, Tensor]:
    """A state dict from a dict, a file (``torch.load(weights_only=True)``) or ``"imagenet"``.

    ``"imagenet"`` downloads torchvision's ``ResNet50_Weights.IMAGENET1K_V1`` (needs internet the
    first time; torchvision caches it). Checkpoints wrapping the weights under ``state_dict``,
    ``model_state`` or ``model`` are unwrapped.
    """
    if isinstance(source, Mapping):
        sd = dict(source)
    elif str(source) == "imagenet":
        from torchvision.models import ResNet50_Weights

        sd = ResNet50_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
    else:
        sd = torch.load(os.fspath(source), map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model_state", "model"):
        if wrapper in sd and isinstance(sd[wrapper], Mapping):
            sd = dict(sd[wrapper])
            break
    return sd


def _apply(model: nn.Module, sd: dict[str, Tensor], report: LoadReport) -> LoadReport:
    result = model.load_state_dict(sd, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    allowed = {k for k in report.missing if ".attn." in k} | set(report.reinitialized)
    unexplained = sorted(set(result.missing_keys) - allowed)
    if unexplained:
        raise ValueError(f"weights leave these keys uninitialised: {unexplained[:10]}")
    return report


def inflate_2d_to_3d(
    model3d: nn.Module,
    state_dict_2d: Mapping[str, Tensor] | str | os.PathLike,
    inflate: Inflate = "mean",
) -> LoadReport:
    """Loads an inflated 2-D ResNet into ``model3d`` in place.

    Args:
        model3d: A :class:`~a2video.models.resnet3d.VideoResNet` of matching widths.
        state_dict_2d: torchvision ResNet state dict, a path to one, or ``"imagenet"``.
        inflate: ``"mean"`` or ``"center"``.

    Returns:
        The :class:`LoadReport`; raises if a key other than an attention block's or the
        re-initialised head's would stay uninitialised.
    """
    target = {k: v.shape for k, v in model3d.state_dict().items()}
    sd, report = inflate_state_dict(resolve_state_dict(state_dict_2d), target, inflate)
    return _apply(model3d, sd, report)


_PTV_BRANCH = {
    "branch1_conv": "downsample.0",
    "branch1_norm": "downsample.1",
    "branch2.conv_a": "conv1",
    "branch2.norm_a": "bn1",
    "branch2.conv_b": "conv2",
    "branch2.norm_b": "bn2",
    "branch2.conv_c": "conv3",
    "branch2.norm_c": "bn3",
}


def convert_pytorchvideo_state_dict(ptv_state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Renames a PyTorchVideo ``create_resnet`` state dict (slow_r50, i3d_r50…) to ours.

    ``blocks.0.{conv,norm}`` → ``conv1``/``bn1``; the k-th ``blocks.<j>`` holding ``res_blocks``
    → ``layer<k>`` (a pooling block between stages has no weights and shifts j);
    ``res_blocks.<i>.branch1_{conv,norm}`` → ``<i>.downsample.{0,1}``;
    ``branch2.{conv,norm}_{a,b,c}`` → ``conv{1,2,3}``/``bn{1,2,3}``; the head's ``proj`` → ``fc``.
    Keys it does not recognise are kept under their own names (they end up ``skipped``).
    """
    stage_ids = sorted({int(k.split(".")[1]) for k in ptv_state_dict if ".res_blocks." in k})
    stage_of = {j: s + 1 for s, j in enumerate(stage_ids)}
    out: dict[str, Tensor] = {}
    for key, value in ptv_state_dict.items():
        parts = key.split(".")
        new = key
        if key.startswith("blocks.0.conv."):
            new = "conv1." + parts[-1]
        elif key.startswith("blocks.0.norm."):
            new = "bn1." + parts[-1]
        elif parts[0] == "blocks" and ".res_blocks." in key:
            unit = parts[3]
            inner = ".".join(parts[4:-1])
            if inner in _PTV_BRANCH:
                new = f"layer{stage_of[int(parts[1])]}.{unit}.{_PTV_BRANCH[inner]}.{parts[-1]}"
        elif parts[0] == "blocks" and parts[2] == "proj":
            new = "fc." + parts[-1]
        out[new] = value
    return out


def load_pytorchvideo(
    model3d: nn.Module, ptv_state_dict: Mapping[str, Tensor] | str | os.PathLike
) -> LoadReport:
    """Loads PyTorchVideo weights (state dict, its ``.pyth`` checkpoint, or a path) in place.

    Shapes must agree exactly (PyTorchVideo's slow_r50 → ``slow_r50``, i3d_r50 → ``i3d_r50``,
    and → ``a2net_r50``/``nl_r50``, whose inserted blocks then stay at their identity init).
    The head is re-initialised when the class counts differ.
    """
    source = convert_pytorchvideo_state_dict(resolve_state_dict(ptv_state_dict))
    target = {k: v.shape for k, v in model3d.state_dict().items()}
    sd, report = _match(source, target, inflate=None)
    return _apply(model3d, sd, report)
