"""Every figure of the explore notebook for one finished test run, as PNG files.

``python -m a2video.explore.report RUN --out DIR`` reads RUN's ``scores.npz`` (a run folder or
the file) and writes ``per_class.png``, ``confused_pairs.png``, ``views.png``, ``mistakes.png``
and ``class_<worst class>.png``; only the videos the gallery and the class report show are
decoded. ``--synthetic-400`` first writes a made-up 400-class, 2,000-video run into RUN
(:func:`a2video.explore.results.synthetic_run`), to see the figures at Kinetics scale.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "write_report"]


def write_report(
    run_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    mistakes: int = 6,
    class_name: str | None = None,
    dpi: int = 72,
) -> list[Path]:
    """Writes the explore notebook's figures of a run as PNGs.

    Args:
        run_path: A run folder or its ``scores.npz``.
        out: Folder to write into.
        mistakes: Rows of the gallery.
        class_name: Class of the class report (default: the worst class).
        dpi: Resolution (72: frames at 122 px, the notebooks' setting).

    Returns:
        The files written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    from a2video.explore import viz
    from a2video.explore.results import gallery_items, load_run

    run = load_run(run_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cm, names = run.confusion(), run.class_names
    accuracy = run.per_class_accuracy()
    worst = int(np.argmin(np.nan_to_num(accuracy.numpy(), nan=2.0)))
    chosen = run.class_index(class_name) if class_name else worst
    figures = {
        "per_class": viz.plot_per_class_accuracy(
            accuracy, names, overall=run.accuracy(), videos=cm.sum(1)
        ),
        "confused_pairs": viz.plot_confused_pairs(cm, names),
        "views": viz.plot_view_summary(run.accuracy_by_views(), run.clip_vs_video()),
    }
    rows = run.mistakes(mistakes)
    if rows:
        items = gallery_items(run, rows, num_frames=5)
        figures["mistakes"] = viz.plot_mistake_gallery(items, names, num_frames=5)
    slug = re.sub(r"[^\w.-]+", "_", names[chosen])
    figures[f"class_{slug}"] = viz.class_report(run, chosen, videos=2, num_frames=5)
    written = []
    for name, fig in figures.items():
        path = out / f"{name}.png"
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m a2video.explore.report",
        description="Write the explore notebook's figures of a test run (its scores.npz) as PNGs.",
    )
    parser.add_argument("run", help="run folder (its newest scores.npz) or a scores.npz")
    parser.add_argument("--out", required=True, help="folder for the PNGs")
    parser.add_argument("--class", dest="class_name", default=None, help="class of the report")
    parser.add_argument("--mistakes", type=int, default=6, help="rows of the gallery")
    parser.add_argument(
        "--synthetic-400",
        action="store_true",
        help="first write a made-up 400-class, 2,000-video run into RUN (figures at scale)",
    )
    parser.add_argument(
        "--videos", nargs="*", default=(), help="with --synthetic-400: files the videos cycle over"
    )
    args = parser.parse_args(argv)
    if args.synthetic_400:
        from a2video.explore.results import synthetic_run

        synthetic_run(args.run, video_files=args.videos)
    try:
        files = write_report(args.run, args.out, mistakes=args.mistakes, class_name=args.class_name)
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"a2video.explore.report: {str(err).strip(chr(39))}", file=sys.stderr)
        return 2
    for path in files:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
