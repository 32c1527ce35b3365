"""Accuracy against the number of test views, and clip against video accuracy (re-exported by
:mod:`a2video.explore.viz`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from a2video.explore.figures_common import CORRECT_COLOR, OTHER_COLOR

__all__ = [
    "plot_accuracy_vs_views",
    "plot_view_summary",
]


def plot_accuracy_vs_views(
    table: Mapping[tuple[int, int], float],
    *,
    ax: Axes | None = None,
    approximate: Collection[tuple[int, int]] = (),
) -> Axes:
    """Accuracy against the number of clips, one line per number of crops.

    Args:
        table: ``{(clips, crops): accuracy}``, e.g. from
            :func:`a2video.explore.predict.accuracy_by_views`.
        ax: Axes to draw on; a new figure when None.
        approximate: Keys of ``table`` that only estimate a smaller test (the decoded clips
            nearest to its, e.g. ``RunResults.approximate_views()``): hollow markers, values
            marked ``≈``.

    Returns:
        The axes; one line per crop count, labelled ``"<crops> crop(s)"``, x the clip counts.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.5))
    estimates = [key for key in table if key in set(approximate)]
    for crops in sorted({c for _, c in table}):
        clips = sorted(n for n, c in table if c == crops)
        values = [table[(n, crops)] for n in clips]
        ax.plot(clips, values, marker="o", label=f"{crops} crop{'s' if crops > 1 else ''}")
        for n, v in zip(clips, values, strict=True):
            mark = "≈" if (n, crops) in estimates else ""
            ax.annotate(
                f"{mark}{v:.3f}", (n, v), textcoords="offset points", xytext=(0, 5), fontsize=7
            )
    if estimates:
        ax.scatter(
            [n for n, _ in estimates],
            [table[key] for key in estimates],
            s=36,
            facecolors="white",
            edgecolors="0.3",
            zorder=3,
            label="≈ nearest decoded clips (estimate)",
        )
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
    by_views: Mapping[tuple[int, int], float],
    clip_vs_video: Mapping[str, float],
    *,
    approximate: Collection[tuple[int, int]] = (),
) -> Figure:
    """Accuracy against the number of views (:func:`plot_accuracy_vs_views`) beside the single
    centre clip against all views averaged (top-1 and top-5).

    Args:
        by_views: ``{(clips, crops): top-1}``, e.g. ``RunResults.accuracy_by_views()``.
        clip_vs_video: ``{"clip top-1", "clip top-5", "video top-1", "video top-5"}``.
        approximate: Keys of ``by_views`` that only estimate a smaller test
            (``RunResults.approximate_views()``); with ``(1, 1)`` among them the centre view is
            a middle clip of an even number, and the bars say so.

    Returns:
        The figure: the line axes, then the bar axes.
    """
    fig, (lines, bars) = plt.subplots(
        1, 2, figsize=(11.0, 4.0), layout="constrained", width_ratios=[1.4, 1.0]
    )
    if by_views:
        plot_accuracy_vs_views(by_views, ax=lines, approximate=approximate)
    else:
        # no views recorded: an older predict's scores.npz, or a test whose videos had
        # differing views (a single-view test has its (1, 1))
        note = "views not recorded: no view subsets"
        lines.text(0.5, 0.5, note, ha="center", transform=lines.transAxes)
        lines.axis("off")
    x = np.arange(2)
    for i, (what, color) in enumerate((("clip", OTHER_COLOR), ("video", CORRECT_COLOR))):
        values = [clip_vs_video[f"{what} top-1"], clip_vs_video[f"{what} top-5"]]
        rects = bars.bar(x + (i - 0.5) * 0.38, values, 0.38, color=color, label=what)
        bars.bar_label(rects, fmt="%.3f", fontsize=8)
    bars.set_xticks(x, ["top-1", "top-5"])
    bars.set_ylim(0.0, 1.08)
    centre = "middle clip (≈ 1 clip)" if (1, 1) in set(approximate) else "centre clip"
    bars.set_title(f"{centre} vs. all views averaged", fontsize=10)
    bars.legend(fontsize=8, loc="upper left")
    return fig
