"""Weight conversion primitives: 2-D kernels → 3-D (I3D inflation) and PyTorchVideo key names.

The filters and the one loader that use them are in :mod:`a2video.models.weights`
(``load_weights(model, source)``).

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

from collections.abc import Mapping
from typing import Literal

from torch import Tensor

__all__ = ["convert_pytorchvideo_state_dict", "inflate_weight"]

Inflate = Literal["mean", "center"]


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
