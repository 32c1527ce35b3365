"""Spatial transforms on uint8 clip tensors (our own; see docs/data.md for why not PyTorchVideo).

Clips enter as decoded ``(T, H, W, 3)`` uint8 and leave as normalised float ``(3, T, H, W)``.
Resizing runs on uint8 (torchvision's antialiased uint8 bilinear kernel) before the float
conversion, and crops are taken before normalising, so the float work is on the crop only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_tchw(frames: torch.Tensor) -> torch.Tensor:
    """(T, H, W, C) -> (T, C, H, W); a single-channel clip is repeated to 3 channels."""
    x = frames.permute(0, 3, 1, 2)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.contiguous()


def short_side_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (T, C, H, W) so that its short side is ``size``, keeping the aspect ratio."""
    h, w = x.shape[-2:]
    if min(h, w) == size:
        return x
    if h <= w:
        new_h, new_w = size, max(size, round(w * size / h))
    else:
        new_h, new_w = max(size, round(h * size / w)), size
    return F.resize(x, [new_h, new_w], antialias=True)


def crop(x: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    return x[..., top : top + size, left : left + size]


def random_crop(x: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    h, w = x.shape[-2:]
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    return crop(x, top, left, size)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    return crop(x, (h - size) // 2, (w - size) // 2, size)


def three_crops(x: torch.Tensor, size: int, num_crops: int = 3) -> list[torch.Tensor]:
    """``num_crops`` square crops along the long side (PySlowFast ``uniform_crop``).

    Three crops are left/centre/right for a landscape clip, top/centre/bottom for a portrait
    one; one crop is the centre crop.
    """
    if num_crops == 1:
        return [center_crop(x, size)]
    h, w = x.shape[-2:]
    out = []
    for k in range(num_crops):
        if w >= h:
            left = round(k * (w - size) / (num_crops - 1))
            out.append(crop(x, (h - size) // 2, left, size))
        else:
            top = round(k * (h - size) / (num_crops - 1))
            out.append(crop(x, top, (w - size) // 2, size))
    return out


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (T, C, H, W) -> float (C, T, H, W), scaled to [0, 1] then normalised."""
    x = x.permute(1, 0, 2, 3).float().div_(255.0)  # (C, T, H, W)
    m = torch.tensor(mean, dtype=x.dtype).view(-1, 1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(-1, 1, 1, 1)
    return x.sub_(m).div_(s)


def train_transform(
    frames: torch.Tensor,
    rng: np.random.Generator,
    scale: Sequence[int],
    crop_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    flip: bool = True,
) -> torch.Tensor:
    """Random short side in ``scale`` (inclusive), random crop, random horizontal flip."""
    x = to_tchw(frames)
    x = short_side_resize(x, int(rng.integers(scale[0], scale[1] + 1)))
    x = random_crop(x, crop_size, rng)
    if flip and rng.random() < 0.5:
        x = x.flip(-1)
    return normalize(x, mean, std)


def eval_transform(
    frames: torch.Tensor,
    scale: int,
    crop_size: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """Short side ``scale``, centre crop."""
    x = short_side_resize(to_tchw(frames), scale)
    return normalize(center_crop(x, crop_size), mean, std)


def multi_view_transform(
    frames: torch.Tensor,
    clips: Sequence[Sequence[int]],
    scale: int,
    crop_size: int,
    num_crops: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """All views of one video from its frames decoded once.

    Args:
        frames: the distinct decoded frames (N, H, W, 3), resized once for every view.
        clips: for each temporal clip, the positions of its frames in ``frames``.

    Returns:
        (len(clips) * num_crops, 3, T, S, S), clip-major: view ``c * num_crops + s``.
    """
    x = short_side_resize(to_tchw(frames), scale)  # (N, 3, h, w), resized once
    views = []
    for positions in clips:
        clip = x[list(positions)]  # (T, 3, h, w)
        views.extend(normalize(c, mean, std) for c in three_crops(clip, crop_size, num_crops))
    return torch.stack(views)
