"""Clips with their scores: one clip with its top-k bars, a gallery of (mistaken) clips, and an
inline animation of a clip (re-exported by :mod:`a2video.explore.viz`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from a2video.explore.figures_common import (
    CORRECT_COLOR,
    OTHER_COLOR,
    WRONG_COLOR,
    as_numpy,
    draw_frames,
    top_k,
)

__all__ = [
    "clip_animation",
    "plot_clip_topk",
    "plot_mistake_gallery",
]


def plot_clip_topk(
    frames: torch.Tensor | np.ndarray,
    scores: torch.Tensor | np.ndarray,
    class_names: Sequence[str],
    *,
    k: int = 5,
    label: int | None = None,
    num_frames: int = 4,
    title: str | None = None,
) -> Figure:
    """A row of frames from a clip and the bars of its top-k scores.

    Args:
        frames: uint8 frames (T, H, W, 3).
        scores: Class probabilities (num_classes,).
        class_names: Names indexed by class.
        k: Number of bars.
        label: The true class, drawn green (a wrong top-1 is drawn red).
        num_frames: Frames shown, spread evenly over the clip.
        title: Figure title.

    Returns:
        The figure: ``num_frames`` image axes, then the bar axes.
    """
    return plot_mistake_gallery(
        [{"frames": frames, "scores": scores, "label": label, "title": title}],
        class_names,
        k=k,
        num_frames=num_frames,
    )


def _draw_named_bars(
    ax: Axes, scores: np.ndarray, class_names: Sequence[str], k: int, label: int | None
) -> None:
    """Top-k bars with each class name written inside its bar's row (long Kinetics names never
    run into the frames), the score at the right; the true class green, a wrong top-1 red."""
    order, values = top_k(scores, k)
    y = np.arange(len(order))[::-1]
    colors = [
        CORRECT_COLOR
        if label is not None and c == label
        else WRONG_COLOR
        if rank == 0 and label is not None
        else OTHER_COLOR
        for rank, c in enumerate(order)
    ]
    ax.barh(y, values, color=colors, alpha=0.45, height=0.8)
    for yy, c, v in zip(y, order, values, strict=True):
        name = class_names[c]
        name = name if len(name) <= 32 else name[:31] + "…"
        ax.text(0.01, yy, name, va="center", ha="left", fontsize=8, clip_on=True)
        ax.text(0.99, yy, f"{v:.2f}", va="center", ha="right", fontsize=8)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(-0.6, k - 0.4)
    ax.set_yticks([])
    ax.tick_params(axis="x", labelsize=7)


def plot_mistake_gallery(
    items: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    *,
    k: int = 5,
    num_frames: int = 4,
    frame_inches: float = 1.7,
    figure: Any = None,
) -> Figure:
    """One row per clip: a title line, frames, then the top-k bars.

    Each row is its own sub-figure, so the title sits above the row and never over the frames;
    frames are ``frame_inches`` wide (at least 112 px at 72 dpi); a row without frames
    (``frames`` None, e.g. the video is not on this machine) shows ``missing`` instead.

    Args:
        items: Each a mapping with ``frames`` (T, H, W, 3) uint8 or None, ``scores``
            (num_classes,), optional ``label`` (int), ``title`` (str) and ``missing`` (str).
        class_names: Names indexed by class.
        k: Bars per row.
        num_frames: Frames per row.
        frame_inches: Width of each frame.
        figure: A figure or sub-figure to draw in (default: a new figure).

    Returns:
        The figure; ``fig.axes`` are row-major, ``num_frames + 1`` per row, the bars last.
    """
    if not items:
        raise ValueError("nothing to draw: the gallery is empty")
    rows = len(items)
    row_h = frame_inches + 0.55
    fig = figure
    if fig is None:
        size = (frame_inches * num_frames + 3.6, row_h * rows)
        fig = plt.figure(figsize=size, layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(rows, 1))
    for sub, item in zip(subfigs, items, strict=True):
        frames = item.get("frames")
        scores = as_numpy(item["scores"]).astype(np.float64)
        label = item.get("label")
        axes = sub.subplots(1, num_frames + 1, width_ratios=[1.0] * num_frames + [2.1])
        if frames is not None:
            draw_frames(axes[:num_frames], as_numpy(frames))
        else:
            for ax in axes[:num_frames]:
                ax.axis("off")
            axes[0].text(
                0.0, 0.5, item.get("missing") or "no frames", fontsize=8, va="center",
                transform=axes[0].transAxes, wrap=True,
            )  # fmt: skip
        _draw_named_bars(axes[num_frames], scores, class_names, k, label)
        head = item.get("title")
        if head is None and label is not None:
            pred = int(np.argmax(scores))
            head = (
                f"true: {class_names[label]}  |  "
                f"predicted: {class_names[pred]} ({scores[pred]:.2f})"
            )
        if head:
            sub.suptitle(head, fontsize=9, x=0.01, ha="left")
    return fig


def clip_animation(frames: torch.Tensor | np.ndarray, *, fps: float = 4.0, size: int = 128):
    """An inline animated GIF of the frames (for notebooks): ``IPython.display.HTML``.

    Args:
        frames: uint8 (T, H, W, 3).
        fps: Playback speed.
        size: Displayed width in pixels.
    """
    import base64
    import io

    from IPython.display import HTML
    from PIL import Image

    images = [Image.fromarray(f) for f in as_numpy(frames)]
    buffer = io.BytesIO()
    images[0].save(
        buffer, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps),
        loop=0,
    )  # fmt: skip
    data = base64.b64encode(buffer.getvalue()).decode()
    return HTML(f'<img src="data:image/gif;base64,{data}" width="{size}">')
