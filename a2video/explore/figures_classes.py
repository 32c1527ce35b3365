"""Per-class figures: the confusion matrix (scaled to many classes), per-class accuracy, the most
confused pairs, one class's report and the notebook's class browser (re-exported by
:mod:`a2video.explore.viz`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from a2video.explore.figures_common import OTHER_COLOR, WRONG_COLOR, as_numpy, short_name
from a2video.explore.figures_gallery import plot_mistake_gallery

__all__ = [
    "class_browser",
    "class_report",
    "confused_classes",
    "plot_confused_pairs",
    "plot_confusion_matrix",
    "plot_per_class_accuracy",
]


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
    counts = as_numpy(cm).astype(np.float64)
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
    counts = as_numpy(cm).astype(np.float64).copy()
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
    acc = as_numpy(accuracy).astype(np.float64)
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
        ax.set_yticks(y, [short_name(class_names[c]) for c in classes], fontsize=8)
        for yy, c in zip(y, classes, strict=True):
            note = f"{acc[c]:.2f}"
            if videos is not None:
                total = int(as_numpy(videos)[c])
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


def plot_confused_pairs(
    cm: torch.Tensor | np.ndarray, class_names: Sequence[str], *, pairs: int = 12
) -> Figure:
    """The most confused pairs as bars (``true → predicted``, fraction of the true class), beside
    the row-normalised confusion matrix of only the classes involved.

    Returns:
        The figure: the bar axes, the matrix axes (and its colour bar).
    """
    counts = as_numpy(cm).astype(np.float64)
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
        f"{short_name(class_names[t], 22)} → {short_name(class_names[p], 22)}" for t, p in cells
    ]
    bars.set_yticks(y, labels, fontsize=8)
    for yy, (t, p), f in zip(y, cells, frac, strict=True):
        bars.text(f, yy, f" {int(off[t, p])}/{int(totals[t])}", va="center", fontsize=7)
    bars.set_xlim(0.0, min(1.0, max(frac, default=0.5) * 1.3))
    bars.set_xlabel("fraction of the true class's videos")
    plural = "pairs" if len(cells) != 1 else "pair"
    bars.set_title(f"{len(cells)} most confused {plural} (true → predicted)", fontsize=10)
    names = [short_name(c, 22) for c in class_names]
    plot_confusion_matrix(counts, names, ax=matrix, max_classes=len(shown))
    matrix.set_title(f"confusion among the {len(shown)} classes involved", fontsize=10)
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
    cm = as_numpy(run.confusion()).astype(np.float64)
    acc = as_numpy(run.per_class_accuracy())
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
        ax.set_yticks(y, [short_name(names[o]) for o in order], fontsize=8)
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
    acc = as_numpy(run.per_class_accuracy())
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
