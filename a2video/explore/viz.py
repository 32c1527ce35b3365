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
    "class_report",
    "clip_animation",
    "confused_classes",
    "denormalize",
    "frame_indices",
    "plot_accuracy_vs_views",
    "plot_attention_maps",
    "plot_clip_topk",
    "plot_confused_pairs",
    "plot_confusion_matrix",
    "plot_descriptor_usage",
    "plot_mistake_gallery",
    "plot_per_class_accuracy",
    "plot_view_summary",
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


def _draw_named_bars(
    ax: Axes, scores: np.ndarray, class_names: Sequence[str], k: int, label: int | None
) -> None:
    """Top-k bars with each class name written inside its bar's row (long Kinetics names never
    run into the frames), the score at the right; the true class green, a wrong top-1 red."""
    order, values = _topk(scores, k)
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
        scores = _numpy(item["scores"]).astype(np.float64)
        label = item.get("label")
        axes = sub.subplots(1, num_frames + 1, width_ratios=[1.0] * num_frames + [2.1])
        if frames is not None:
            _draw_frames(axes[:num_frames], _numpy(frames))
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

    images = [Image.fromarray(f) for f in _numpy(frames)]
    buffer = io.BytesIO()
    images[0].save(
        buffer, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps),
        loop=0,
    )  # fmt: skip
    data = base64.b64encode(buffer.getvalue()).decode()
    return HTML(f'<img src="data:image/gif;base64,{data}" width="{size}">')


def plot_confusion_matrix(
    cm: torch.Tensor | np.ndarray,
    class_names: Sequence[str],
    *,
    normalize: bool = True,
    ax: Axes | None = None,
    annotate: bool | None = None,
    max_classes: int = 30,
) -> Axes:
    """The confusion matrix, rows the true class, columns the predicted one.

    Args:
        cm: Counts (K, K), ``cm[t, p]`` videos of class t predicted p.
        class_names: Names indexed by class.
        normalize: Divide each row by its count (rows of absent classes stay zero).
        ax: Axes to draw on; a new figure when None.
        annotate: Write the value in each cell; default when K <= 16.
        max_classes: Past this many classes only those of the most confused pairs are drawn
            (:func:`confused_classes`), so every row keeps its name.

    Returns:
        The axes; its image holds the (normalised) matrix.
    """
    counts = _numpy(cm).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)  # of the whole row, also when a part is drawn
    if counts.shape[0] > max_classes:
        shown = confused_classes(counts, max_classes)
        counts, totals = counts[np.ix_(shown, shown)], totals[shown]
        class_names = [class_names[c] for c in shown]
        subset = f"the {len(shown)} most confused of {cm.shape[0]} classes, "
    else:
        subset = ""
    k = counts.shape[0]
    data = counts
    if normalize:
        data = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    if ax is None:
        size = min(12.0, 3.0 + 0.35 * k)
        _, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(data, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(k)
    show_names = k <= 40
    ax.set_xticks(ticks, list(class_names) if show_names else [], rotation=90, fontsize=8)
    ax.set_yticks(ticks, list(class_names) if show_names else [], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    title = "confusion matrix" + (f" ({subset}row-normalised)" if normalize else f" ({subset})")
    ax.set_title(title.replace(" ()", "").replace(", )", ")"), fontsize=10)
    if annotate if annotate is not None else k <= 16:
        for t in range(k):
            for p in range(k):
                if counts[t, p]:
                    text = f"{data[t, p]:.2f}" if normalize else f"{int(counts[t, p])}"
                    color = "white" if data[t, p] > 0.5 * (data.max() or 1) else "black"
                    ax.text(p, t, text, ha="center", va="center", fontsize=7, color=color)
    return ax


def confused_classes(cm: torch.Tensor | np.ndarray, limit: int = 20) -> list[int]:
    """The classes of the most confused pairs (largest off-diagonal counts), at most ``limit``,
    in order of first appearance, for a confusion matrix small enough to read."""
    counts = _numpy(cm).astype(np.float64).copy()
    np.fill_diagonal(counts, 0)
    chosen: list[int] = []
    for flat in np.argsort(-counts, axis=None, kind="stable"):
        t, p = divmod(int(flat), counts.shape[0])
        if counts[t, p] <= 0:
            break
        new = [c for c in (t, p) if c not in chosen]
        if len(chosen) + len(new) > limit:
            break
        chosen += new
    return chosen or list(range(min(limit, counts.shape[0])))


def plot_per_class_accuracy(
    accuracy: torch.Tensor | np.ndarray,
    class_names: Sequence[str],
    *,
    overall: float | None = None,
    n: int = 15,
    videos: torch.Tensor | np.ndarray | None = None,
) -> Figure:
    """Per-class accuracy that reads at any number of classes: the ``n`` worst and the ``n`` best
    classes as bars, and a histogram of every class.

    With at most ``2 n`` classes, one bar panel holds them all (worst on top).

    Args:
        accuracy: (K,) accuracy per class; NaN for a class with no test video (not drawn).
        class_names: Names indexed by class.
        overall: Overall accuracy, drawn as a dashed line.
        n: Classes per bar panel.
        videos: (K,) test videos per class; each bar is then labelled ``accuracy (right/all)``
            (else ``accuracy``), so a class at 0 still reads.

    Returns:
        The figure; its axes are the bar panels (worst first), then the histogram.
    """
    acc = _numpy(accuracy).astype(np.float64)
    present = np.flatnonzero(~np.isnan(acc))
    order = present[np.argsort(acc[present], kind="stable")]
    if len(order) <= 2 * n:
        panels = [(order, f"per-class accuracy ({len(order)} classes)")]
    else:
        panels = [
            (order[:n], f"{n} worst classes"),
            (order[::-1][:n][::-1], f"{n} best classes"),
        ]
    bars = max(len(p) for p, _ in panels)
    fig, axes = plt.subplots(
        1,
        len(panels) + 1,
        figsize=(5.2 * len(panels) + 4.2, min(12.0, 1.4 + 0.26 * bars)),
        layout="constrained",
        width_ratios=[1.0] * len(panels) + [0.8],
    )
    for ax, (classes, title) in zip(axes, panels, strict=False):
        y = np.arange(len(classes))[::-1]  # the first (worst) at the top
        ax.barh(y, acc[classes], color=OTHER_COLOR)
        ax.set_yticks(y, [_short_name(class_names[c]) for c in classes], fontsize=8)
        for yy, c in zip(y, classes, strict=True):
            note = f"{acc[c]:.2f}"
            if videos is not None:
                total = int(_numpy(videos)[c])
                note += f" ({round(acc[c] * total)}/{total})"
            inside = acc[c] > 0.75  # written inside a long bar, after a short one
            ax.text(
                acc[c] - 0.01 if inside else acc[c] + 0.01, yy, note, va="center", fontsize=7,
                ha="right" if inside else "left", color="white" if inside else "black",
            )  # fmt: skip
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel("accuracy")
        ax.set_title(title, fontsize=10)
        if overall is not None:
            ax.axvline(overall, color="black", linestyle="--", linewidth=1)
    hist = axes[-1]
    hist.hist(acc[present], bins=np.linspace(0.0, 1.0, 21), color=OTHER_COLOR, edgecolor="white")
    hist.set_xlabel("accuracy")
    hist.set_ylabel("classes")
    hist.set_title(f"all {len(present)} classes", fontsize=10)
    if overall is not None:
        label = f"all videos: {overall:.3f}"
        hist.axvline(overall, color="black", linestyle="--", linewidth=1, label=label)
        hist.legend(loc="upper left", fontsize=8)
    return fig


def _short_name(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def plot_confused_pairs(
    cm: torch.Tensor | np.ndarray, class_names: Sequence[str], *, pairs: int = 12
) -> Figure:
    """The most confused pairs as bars (``true → predicted``, fraction of the true class), beside
    the row-normalised confusion matrix of only the classes involved.

    Returns:
        The figure: the bar axes, the matrix axes (and its colour bar).
    """
    counts = _numpy(cm).astype(np.float64)
    off = counts.copy()
    np.fill_diagonal(off, 0)
    totals = counts.sum(1)
    cells = [divmod(int(f), len(off)) for f in np.argsort(-off, axis=None, kind="stable")[:pairs]]
    cells = [(t, p) for t, p in cells if off[t, p] > 0]
    shown = confused_classes(counts, 16)
    rows = max(len(cells), len(shown), 1)
    height = min(8.0, max(3.2, 2.2 + 0.33 * rows))  # grows with what is drawn, up to 8 inches
    fig, (bars, matrix) = plt.subplots(
        1, 2, figsize=(8.0 + height, height), layout="constrained", width_ratios=[7.0, height]
    )
    y = np.arange(len(cells))[::-1]
    frac = [off[t, p] / max(totals[t], 1) for t, p in cells]
    bars.barh(y, frac, color=WRONG_COLOR, alpha=0.6, height=0.7)
    bars.set_ylim(-0.6, max(len(cells), 4) - 0.4)
    labels = [
        f"{_short_name(class_names[t], 22)} → {_short_name(class_names[p], 22)}" for t, p in cells
    ]
    bars.set_yticks(y, labels, fontsize=8)
    for yy, (t, p), f in zip(y, cells, frac, strict=True):
        bars.text(f, yy, f" {int(off[t, p])}/{int(totals[t])}", va="center", fontsize=7)
    bars.set_xlim(0.0, min(1.0, max(frac, default=0.5) * 1.3))
    bars.set_xlabel("fraction of the true class's videos")
    plural = "pairs" if len(cells) != 1 else "pair"
    bars.set_title(f"{len(cells)} most confused {plural} (true → predicted)", fontsize=10)
    names = [_short_name(c, 22) for c in class_names]
    plot_confusion_matrix(counts, names, ax=matrix, max_classes=len(shown))
    matrix.set_title(f"confusion among the {len(shown)} classes involved", fontsize=10)
    return fig


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


def plot_view_summary(
    by_views: Mapping[tuple[int, int], float], clip_vs_video: Mapping[str, float]
) -> Figure:
    """Accuracy against the number of views (:func:`plot_accuracy_vs_views`) beside the single
    centre clip against all views averaged (top-1 and top-5).

    Args:
        by_views: ``{(clips, crops): top-1}``, e.g. ``RunResults.accuracy_by_views()``.
        clip_vs_video: ``{"clip top-1", "clip top-5", "video top-1", "video top-5"}``.

    Returns:
        The figure: the line axes, then the bar axes.
    """
    fig, (lines, bars) = plt.subplots(
        1, 2, figsize=(11.0, 4.0), layout="constrained", width_ratios=[1.4, 1.0]
    )
    if by_views:
        plot_accuracy_vs_views(by_views, ax=lines)
    else:
        note = "single-view test: no view subsets"
        lines.text(0.5, 0.5, note, ha="center", transform=lines.transAxes)
        lines.axis("off")
    x = np.arange(2)
    for i, (what, color) in enumerate((("clip", OTHER_COLOR), ("video", CORRECT_COLOR))):
        values = [clip_vs_video[f"{what} top-1"], clip_vs_video[f"{what} top-5"]]
        rects = bars.bar(x + (i - 0.5) * 0.38, values, 0.38, color=color, label=what)
        bars.bar_label(rects, fmt="%.3f", fontsize=8)
    bars.set_xticks(x, ["top-1", "top-5"])
    bars.set_ylim(0.0, 1.08)
    bars.set_title("centre clip vs. all views averaged", fontsize=10)
    bars.legend(fontsize=8, loc="upper left")
    return fig


def class_report(
    run: Any,
    cls: str | int,
    *,
    videos: int = 3,
    num_frames: int = 5,
    confusions: int = 8,
    frames_of: Any = None,
) -> Figure:
    """One class of a finished run: its accuracy, where its videos go, what is mistaken for it,
    and a few of its videos (mistakes first) with frames and top-5 scores.

    Args:
        run: An :class:`a2video.explore.results.RunResults`.
        cls: Class name or number.
        videos: Videos shown.
        num_frames: Frames per video.
        confusions: Bars per confusion panel.
        frames_of: ``path -> (T, H, W, 3) uint8`` (default
            :func:`a2video.explore.results.load_frames`); only the shown videos are decoded.

    Returns:
        The figure: a top sub-figure with the two confusion panels, then one row per video.
    """
    from a2video.explore.results import gallery_items

    c = run.class_index(cls)
    names = run.class_names
    cm = _numpy(run.confusion()).astype(np.float64)
    acc = _numpy(run.per_class_accuracy())
    total = int(cm[c].sum())
    rank = int(np.sum(acc[~np.isnan(acc)] < acc[c])) + 1 if total else 0
    rows = run.mistakes(videos, true_class=c)
    rows += [r for r in run.rows_of_class(c) if r not in rows][: videos - len(rows)]
    items = gallery_items(run, rows, num_frames=num_frames, frames_of=frames_of)
    top_h, row_h = 0.9 + 0.25 * confusions, 2.3
    fig = plt.figure(figsize=(15.0, top_h + row_h * max(1, len(items))), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[top_h, row_h * max(1, len(items))])
    head = (
        f"{names[c]}: accuracy {acc[c]:.2f} over {total} videos "
        f"(rank {rank} of {int(np.sum(~np.isnan(acc)))} from the worst)"
        if total
        else f"{names[c]}: no test video"
    )
    top.suptitle(head, fontsize=11, x=0.01, ha="left")
    out_ax, in_ax = top.subplots(1, 2)
    for ax, counts, title in (
        (out_ax, cm[c].copy(), f"its videos predicted as (of {total})"),
        (in_ax, cm[:, c].copy(), "mistaken for it (videos of other classes)"),
    ):
        counts[c] = 0
        order = [int(o) for o in np.argsort(-counts, kind="stable")[:confusions] if counts[o] > 0]
        y = np.arange(len(order))[::-1]
        ax.barh(y, counts[order], color=WRONG_COLOR, alpha=0.6)
        ax.set_yticks(y, [_short_name(names[o]) for o in order], fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("videos")
        ax.set_ylim(-0.6, confusions - 0.4)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if not order:
            ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
    if items:
        plot_mistake_gallery(items, names, num_frames=num_frames, figure=bottom)
    return fig


def class_browser(run: Any, **report_options: Any) -> Any:
    """Pick a class, see its :func:`class_report`: a dropdown (ipywidgets) in a notebook.

    Without ipywidgets, prints how to call :func:`class_report` and returns the report of the
    worst class.

    Returns:
        The widget, or the figure of the worst class.
    """
    acc = _numpy(run.per_class_accuracy())
    by_accuracy = [int(c) for c in np.argsort(np.nan_to_num(acc, nan=2.0), kind="stable")]
    try:
        import ipywidgets as widgets
    except ImportError:
        worst = run.class_names[by_accuracy[0]]
        print(
            "ipywidgets is not installed (pip install ipywidgets for a dropdown); call "
            f"viz.class_report(run, 'CLASS'); here the worst class, {worst!r}:"
        )
        return class_report(run, by_accuracy[0], **report_options)
    from IPython.display import display

    options = [(f"{run.class_names[c]} ({acc[c]:.2f})", c) for c in by_accuracy]
    choose = widgets.Dropdown(options=options, description="class (worst first)")
    out = widgets.Output()

    def show(change: Any = None) -> None:
        with out:
            out.clear_output(wait=True)
            class_report(run, choose.value, **report_options)
            plt.show()

    choose.observe(show, names="value")
    box = widgets.VBox([choose, out])
    display(box)
    show()
    return box


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
    u = _numpy(usage).astype(np.float64)
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
