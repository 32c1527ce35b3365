"""The A²-blocks' attention maps drawn over the frames (re-exported by :mod:`a2video.explore.viz`).

Chen et al., "A²-Nets: Double Attention Networks", NeurIPS 2018, Section 2: the gather maps
B = softmax_L(θ(X)) (Eq. 3-4) and the distribution weights V = softmax_n(ρ(X)) (Eq. 5), captured by
:mod:`a2video.explore.attention_maps`.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from a2video.explore.figures_common import as_numpy, frame_indices

__all__ = [
    "plot_attention_maps",
    "plot_descriptor_usage",
    "upsample_maps",
]


def upsample_maps(maps: torch.Tensor | np.ndarray, size: tuple[int, int, int]) -> np.ndarray:
    """Resamples attention maps from the feature grid to the clip's frames.

    Args:
        maps: (n, t, h, w) maps on the block's feature grid.
        size: (T, H, W) of the frames.

    Returns:
        (n, T, H, W) float maps, trilinear (a constant map stays constant).
    """
    m = torch.as_tensor(as_numpy(maps), dtype=torch.float32)
    if m.dim() != 4:
        raise ValueError(f"expected (n, t, h, w) maps, got shape {tuple(m.shape)}")
    # (n, t, h, w) -> (1, n, t, h, w) -> (1, n, T, H, W)
    up = F.interpolate(m[None], size=tuple(size), mode="trilinear", align_corners=False)
    return up[0].numpy()


def plot_attention_maps(
    frames: torch.Tensor | np.ndarray,
    maps: torch.Tensor | np.ndarray,
    *,
    descriptors: Sequence[int] | None = None,
    num_frames: int = 4,
    alpha: float = 0.55,
    cmap: str = "jet",
    title: str | None = None,
    row_label: str = "desc.",
) -> Figure:
    """Attention maps drawn over the frames: rows are descriptors, columns frames.

    Each map is scaled by its own maximum over the whole clip, so within a row the colours compare
    positions and times, and a map concentrated on one frame shows as such.

    Args:
        frames: uint8 frames (T, H, W, 3).
        maps: (n, t, h, w): gather maps B (each sums to 1 over t·h·w) or distribution weights V
            (sum to 1 over n at each position), on the block's feature grid.
        descriptors: Which of the n maps to draw; default the first four.
        num_frames: Frames shown, spread evenly over the clip.
        alpha: Opacity of the maps.
        cmap: Colour map of the maps.
        title: Figure title.
        row_label: Prefix of each row's label.

    Returns:
        The figure; axes row-major, each with the frame as its first image and the upsampled,
        max-scaled map (H, W) as its second.
    """
    frames_np = as_numpy(frames)
    maps_np = as_numpy(maps)
    n = maps_np.shape[0]
    chosen = list(descriptors) if descriptors is not None else list(range(min(4, n)))
    t_total, height, width = frames_np.shape[:3]
    up = upsample_maps(maps_np[chosen], (t_total, height, width))  # (d, T, H, W)
    peak = up.reshape(len(chosen), -1).max(axis=1).reshape(-1, 1, 1, 1)
    up = up / np.where(peak > 0, peak, 1.0)
    times = frame_indices(t_total, num_frames)
    fig, axes = plt.subplots(
        len(chosen),
        len(times),
        figsize=(1.9 * len(times), 1.9 * len(chosen) + 0.4),
        squeeze=False,
    )
    for r, d in enumerate(chosen):
        for c, t in enumerate(times):
            ax = axes[r, c]
            ax.imshow(frames_np[t])
            ax.imshow(up[r, t], cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t={t}", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{row_label} {d}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_descriptor_usage(
    usage: torch.Tensor | np.ndarray,
    class_names: Sequence[str],
    *,
    top: int = 3,
    ax: Axes | None = None,
    title: str = "descriptor usage per class",
    max_classes: int = 40,
) -> Axes:
    """Mean distribution weight of each descriptor per class, the ``top`` per class marked.

    Args:
        usage: (K, n), ``usage[k, j]`` the mean over positions and videos of class k of V's
            weight on descriptor j (rows sum to 1), e.g. from
            :func:`a2video.explore.attention_maps.descriptor_usage`.
        class_names: Names indexed by class.
        top: Descriptors marked (with a dot) in each row.
        ax: Axes to draw on; a new figure when None.
        title: Axes title.
        max_classes: Rows drawn: the first classes that have videos (rows of zeros are classes
            without one and are left out), so every row keeps its name.

    Returns:
        The axes; its image holds the rows of ``usage`` drawn.
    """
    u = as_numpy(usage).astype(np.float64)
    total = u.shape[0]
    rows = np.flatnonzero(u.sum(1) > 0)[:max_classes]  # classes with videos, at most max_classes
    u, class_names = u[rows], [class_names[c] for c in rows]
    if len(rows) < total:
        title = f"{title} ({len(rows)} of {total} classes)"
    k, n = u.shape
    if ax is None:
        _, ax = plt.subplots(figsize=(min(14.0, 2.0 + 0.25 * n), min(12.0, 1.0 + 0.3 * k)))
    image = ax.imshow(u, aspect="auto", cmap="viridis")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    best = np.argsort(-u, axis=1, kind="stable")[:, :top]
    rows = np.repeat(np.arange(k), best.shape[1])
    ax.scatter(best.ravel(), rows, s=10, c="white", marker="o")
    ax.set_yticks(np.arange(k), list(class_names) if k <= 40 else [], fontsize=8)
    ax.set_xlabel("descriptor")
    ax.set_ylabel("class")
    ax.set_title(title, fontsize=10)
    return ax
