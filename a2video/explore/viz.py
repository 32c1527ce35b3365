"""Plots for the notebooks: clips with their top-k scores, confusion matrices, accuracy against
the number of views, and the A²-blocks' attention maps drawn over the frames.

The attention maps are those of Chen et al., "A²-Nets: Double Attention Networks", NeurIPS 2018,
Section 2: the gather maps B = softmax_L(θ(X)) (Eq. 3-4, each a distribution over the T·H·W
positions) and the distribution weights V = softmax_n(ρ(X)) (Eq. 5, at each position a
distribution over the n global descriptors). :mod:`a2video.explore.attention_maps` captures them.

Every function draws on axes it is given or on a new figure, and returns the figure (or the axes
for single-panel plots) so that tests can read back what was drawn. Nothing here chooses a
backend: notebooks show the figures inline, tests use Agg.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = [
    "denormalize",
    "frame_indices",
    "plot_accuracy_vs_views",
    "plot_attention_maps",
    "plot_clip_topk",
    "plot_confusion_matrix",
    "plot_descriptor_usage",
    "plot_mistake_gallery",
    "plot_per_class_accuracy",
    "upsample_maps",
]

CORRECT_COLOR = "tab:green"
WRONG_COLOR = "tab:red"
OTHER_COLOR = "tab:gray"


def _numpy(x: Any) -> np.ndarray:
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
    v = _numpy(video).astype(np.float32)
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


def _topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    k = min(k, scores.shape[-1])
    order = np.argsort(-scores, kind="stable")[:k]
    return order, scores[order]


def _draw_topk_bars(
    ax: Axes,
    scores: np.ndarray,
    class_names: Sequence[str],
    k: int,
    label: int | None,
) -> None:
    """Horizontal bars of the k highest scores, best on top; the true class green, a wrong
    top-1 red."""
    order, values = _topk(scores, k)
    colors = []
    for rank, c in enumerate(order):
        if label is not None and c == label:
            colors.append(CORRECT_COLOR)
        elif rank == 0 and label is not None:
            colors.append(WRONG_COLOR)
        else:
            colors.append(OTHER_COLOR)
    y = np.arange(len(order))[::-1]  # rank 0 drawn at the top
    ax.barh(y, values, color=colors)
    ax.set_yticks(y, [class_names[c] for c in order])
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("score")
    ax.tick_params(axis="y", labelsize=8)


def _draw_frames(axes: Sequence[Axes], frames: np.ndarray) -> None:
    for ax, i in zip(axes, frame_indices(len(frames), len(axes)), strict=True):
        ax.imshow(frames[i])
        ax.set_title(f"t={i}", fontsize=8)
        ax.axis("off")


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


def plot_mistake_gallery(
    items: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    *,
    k: int = 5,
    num_frames: int = 4,
) -> Figure:
    """One row per clip: frames, then the top-k bars.

    Args:
        items: Each a mapping with ``frames`` (T, H, W, 3) uint8, ``scores`` (num_classes,),
            optional ``label`` (int) and ``title`` (str, shown above the row's first frame).
        class_names: Names indexed by class.
        k: Bars per row.
        num_frames: Frames per row.

    Returns:
        The figure; its axes are row-major, ``num_frames + 1`` per row, the bars last.
    """
    if not items:
        raise ValueError("nothing to draw: the gallery is empty")
    rows = len(items)
    fig, axes = plt.subplots(
        rows,
        num_frames + 1,
        figsize=(2.0 * num_frames + 3.5, 2.1 * rows),
        gridspec_kw={"width_ratios": [1.0] * num_frames + [1.8]},
        squeeze=False,
    )
    for row, item in zip(axes, items, strict=True):
        frames = _numpy(item["frames"])
        scores = _numpy(item["scores"]).astype(np.float64)
        label = item.get("label")
        _draw_frames(row[:num_frames], frames)
        _draw_topk_bars(row[num_frames], scores, class_names, k, label)
        head = item.get("title")
        if head is None and label is not None:
            pred = int(np.argmax(scores))
            head = f"true: {class_names[label]} | predicted: {class_names[pred]}"
        if head:
            row[0].text(0.0, 1.25, head, transform=row[0].transAxes, fontsize=9, ha="left")
    fig.tight_layout()
    return fig


def plot_confusion_matrix(
    cm: torch.Tensor | np.ndarray,
    class_names: Sequence[str],
    *,
    normalize: bool = True,
    ax: Axes | None = None,
    annotate: bool | None = None,
) -> Axes:
    """The confusion matrix, rows the true class, columns the predicted one.

    Args:
        cm: Counts (K, K), ``cm[t, p]`` videos of class t predicted p.
        class_names: Names indexed by class.
        normalize: Divide each row by its count (rows of absent classes stay zero).
        ax: Axes to draw on; a new figure when None.
        annotate: Write the value in each cell; default when K <= 12.

    Returns:
        The axes; its image holds the (normalised) matrix.
    """
    counts = _numpy(cm).astype(np.float64)
    k = counts.shape[0]
    data = counts
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        data = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    if ax is None:
        size = min(12.0, 2.5 + 0.35 * k)
        _, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(data, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(k)
    show_names = k <= 40
    ax.set_xticks(ticks, list(class_names) if show_names else [], rotation=90, fontsize=8)
    ax.set_yticks(ticks, list(class_names) if show_names else [], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (row-normalised)" if normalize else ""))
    if annotate if annotate is not None else k <= 12:
        for t in range(k):
            for p in range(k):
                if counts[t, p]:
                    text = f"{data[t, p]:.2f}" if normalize else f"{int(counts[t, p])}"
                    color = "white" if data[t, p] > 0.5 * (data.max() or 1) else "black"
                    ax.text(p, t, text, ha="center", va="center", fontsize=7, color=color)
    return ax


def plot_per_class_accuracy(
    accuracy: torch.Tensor | np.ndarray,
    class_names: Sequence[str],
    *,
    overall: float | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Per-class accuracy as horizontal bars, worst class on top.

    Args:
        accuracy: (K,) accuracy per class; NaN for a class with no test video (not drawn).
        class_names: Names indexed by class.
        overall: Overall accuracy, drawn as a dashed line.
        ax: Axes to draw on; a new figure when None.

    Returns:
        The axes; bars in ascending order of accuracy.
    """
    acc = _numpy(accuracy).astype(np.float64)
    present = np.flatnonzero(~np.isnan(acc))
    order = present[np.argsort(acc[present], kind="stable")]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 1.0 + 0.25 * len(order)))
    y = np.arange(len(order))[::-1]  # worst at the top
    ax.barh(y, acc[order], color=OTHER_COLOR)
    ax.set_yticks(y, [class_names[c] for c in order], fontsize=8)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("accuracy")
    if overall is not None:
        ax.axvline(overall, color="black", linestyle="--", linewidth=1, label=f"all: {overall:.3f}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title("per-class accuracy")
    return ax


def plot_accuracy_vs_views(
    table: Mapping[tuple[int, int], float], *, ax: Axes | None = None
) -> Axes:
    """Accuracy against the number of clips, one line per number of crops.

    Args:
        table: ``{(clips, crops): accuracy}``, e.g. from
            :func:`a2video.explore.predict.accuracy_by_views`.
        ax: Axes to draw on; a new figure when None.

    Returns:
        The axes; one line per crop count, labelled ``"<crops> crop(s)"``, x the clip counts.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.5))
    for crops in sorted({c for _, c in table}):
        clips = sorted(n for n, c in table if c == crops)
        values = [table[(n, crops)] for n in clips]
        ax.plot(clips, values, marker="o", label=f"{crops} crop{'s' if crops > 1 else ''}")
        for n, v in zip(clips, values, strict=True):
            ax.annotate(f"{v:.3f}", (n, v), textcoords="offset points", xytext=(0, 5), fontsize=7)
    ax.set_xscale("log")
    all_clips = sorted({n for n, _ in table})
    ax.set_xticks(all_clips, [str(n) for n in all_clips])
    ax.minorticks_off()
    ax.set_xlabel("clips per video")
    ax.set_ylabel("top-1 accuracy")
    ax.set_title("accuracy vs. number of views")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def upsample_maps(maps: torch.Tensor | np.ndarray, size: tuple[int, int, int]) -> np.ndarray:
    """Resamples attention maps from the feature grid to the clip's frames.

    Args:
        maps: (n, t, h, w) maps on the block's feature grid.
        size: (T, H, W) of the frames.

    Returns:
        (n, T, H, W) float maps, trilinear (a constant map stays constant).
    """
    m = torch.as_tensor(_numpy(maps), dtype=torch.float32)
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
    frames_np = _numpy(frames)
    maps_np = _numpy(maps)
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

    Returns:
        The axes; its image holds ``usage``.
    """
    u = _numpy(usage).astype(np.float64)
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
