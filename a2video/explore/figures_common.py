"""Shared pieces of the figures (:mod:`a2video.explore.viz` re-exports the public ones): the
colours, denormalised frames, evenly spread frame indices, top-k and short class names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes

__all__ = [
    "CORRECT_COLOR",
    "OTHER_COLOR",
    "WRONG_COLOR",
    "as_numpy",
    "denormalize",
    "draw_frames",
    "frame_indices",
    "short_name",
    "top_k",
]

CORRECT_COLOR = "tab:green"
WRONG_COLOR = "tab:red"
OTHER_COLOR = "tab:gray"


def as_numpy(x: Any) -> np.ndarray:
    """``x`` (a tensor or array-like) as a NumPy array on the host."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def denormalize(
    video: torch.Tensor | np.ndarray, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """Turns a normalised clip back into displayable frames.

    Args:
        video: Float clip (3, T, H, W), normalised with ``mean`` / ``std`` in [0, 1] units.
        mean: Per-channel mean (3 values).
        std: Per-channel standard deviation (3 values).

    Returns:
        uint8 frames (T, H, W, 3).
    """
    v = as_numpy(video).astype(np.float32)
    if v.ndim != 4 or v.shape[0] != 3:
        raise ValueError(f"expected a (3, T, H, W) clip, got shape {v.shape}")
    m = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(3, 1, 1, 1)
    v = (v * s + m).transpose(1, 2, 3, 0)  # (3, T, H, W) -> (T, H, W, 3)
    return np.clip(np.rint(v * 255.0), 0, 255).astype(np.uint8)


def frame_indices(total: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly over ``total`` frames (centres of equal segments)."""
    count = max(1, min(count, total))
    return [int((i + 0.5) * total / count) for i in range(count)]


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best classes of ``scores`` (ties keep index order) and their scores."""
    k = min(k, scores.shape[-1])
    order = np.argsort(-scores, kind="stable")[:k]
    return order, scores[order]


def draw_frames(axes: Sequence[Axes], frames: np.ndarray) -> None:
    """One frame per axes, spread evenly over ``frames`` (T, H, W, 3), titled by time."""
    for ax, i in zip(axes, frame_indices(len(frames), len(axes)), strict=True):
        ax.imshow(frames[i])
        ax.set_title(f"t={i}", fontsize=8)
        ax.axis("off")


def short_name(name: str, width: int = 28) -> str:
    """``name`` cut to ``width`` characters with an ellipsis."""
    return name if len(name) <= width else name[: width - 1] + "…"
