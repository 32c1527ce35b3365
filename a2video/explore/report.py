"""Every figure of the explore notebook for one finished test run, as PNG files.

``python -m a2video.explore.report RUN --out DIR`` reads RUN's ``scores.npz`` (the file, or in a
run folder the newest a test wrote: :func:`a2video.explore.results.find_scores`; stderr names
it) and writes ``per_class.png``, ``confused_pairs.png``, ``views.png``, ``mistakes.png`` (where a
top-1 is wrong; otherwise stderr says why it is absent, and an earlier report's is removed)
and ``class_<worst class>.png``; only the videos the gallery and the class report show are
decoded. ``--synthetic-400`` first writes a made-up 400-class, 2,000-video run into the folder
RUN (:func:`a2video.explore.results.synthetic_run`), to see the figures at Kinetics scale; a folder
holding a real run's results is refused, so the made-up scores never hide them.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from a2video.explore.results import RunResults

__all__ = ["main", "write_report"]

PROG = "python -m a2video.explore.report"


def _out_folder(out: str | os.PathLike) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: a file, not a folder; --out takes a folder for the PNGs")
    return out


def write_report(
    run_path: str | os.PathLike | RunResults,
    out: str | os.PathLike,
    *,
    mistakes: int = 6,
    class_name: str | None = None,
    dpi: int = 72,
) -> list[Path]:
    """Writes the explore notebook's figures of a run as PNGs.

    Args:
        run_path: A run folder or its ``scores.npz`` (:func:`~a2video.explore.results.load_run`),
            or the run read already.
        out: Folder to write into (created; not a file).
        mistakes: Rows of the gallery (0 or more).
        class_name: Class of the class report, a name or an index in digits
            (:meth:`~a2video.explore.results.RunResults.class_index`; default: the worst class).
        dpi: Resolution (72: frames at 122 px, the notebooks' setting).

    Returns:
        The files written. Where no gallery is drawn (no wrong top-1, or ``mistakes`` 0), a
        ``mistakes.png`` an earlier report left in ``out`` is removed: it showed another run.

    Raises:
        ValueError: ``out`` is a file, ``mistakes`` is negative, ``class_name`` is not a class
            of the run, or the run has no labelled video to score (an unlabelled split): one
            line; nothing is written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    from a2video.explore import viz
    from a2video.explore.results import RunResults, gallery_items, load_run

    out = _out_folder(out)
    if mistakes < 0:
        raise ValueError(f"mistakes must be 0 or more (rows of the gallery), got {mistakes}")
    run = run_path if isinstance(run_path, RunResults) else load_run(run_path)
    if not bool(run.scored().any()):  # every figure is of accuracies: none would be true
        labelled = bool((run.labels >= 0).any())
        why = "no labelled video could be decoded" if labelled else "no labelled videos"
        raise ValueError(
            f"{run.source}: {why} ({len(run)} videos, {int((~run.valid).sum())} unreadable): "
            "nothing to score, no figure drawn; each video's top-5 is in predictions.csv beside it"
        )
    cm, names = run.confusion(), run.class_names
    accuracy = run.per_class_accuracy()
    worst = int(np.argmin(np.nan_to_num(accuracy.numpy(), nan=2.0)))
    try:
        chosen = run.class_index(class_name) if class_name else worst
    except KeyError as err:  # its message names close classes
        raise ValueError(f"{run.source}: {err.args[0]}") from None
    figures = {
        "per_class": viz.plot_per_class_accuracy(
            accuracy, names, overall=run.accuracy(), videos=cm.sum(1)
        ),
        "confused_pairs": viz.plot_confused_pairs(cm, names),
        "views": viz.plot_view_summary(
            run.accuracy_by_views(), run.clip_vs_video(), approximate=run.approximate_views()
        ),
    }
    rows = run.mistakes(mistakes)
    if rows:
        items = gallery_items(run, rows, num_frames=5)
        figures["mistakes"] = viz.plot_mistake_gallery(items, names, num_frames=5)
    slug = re.sub(r"[^\w.-]+", "_", names[chosen])
    figures[f"class_{slug}"] = viz.class_report(run, chosen, videos=2, num_frames=5)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figures.items():
        path = out / f"{name}.png"
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        written.append(path)
    gallery = out / "mistakes.png"
    if "mistakes" not in figures and gallery.is_file():  # an earlier report's, of another run
        gallery.unlink()
    return written


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number 0 or more, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Write the explore notebook's figures of a test run (its scores.npz) as PNGs.",
    )
    parser.add_argument(
        "run", help="run folder (the newest scores.npz a test wrote under it) or a scores.npz"
    )
    parser.add_argument("--out", required=True, help="folder for the PNGs")
    parser.add_argument(
        "--class",
        dest="class_name",
        default=None,
        help="class of the report: its name or index (default: the worst class)",
    )
    parser.add_argument("--mistakes", type=_count, default=6, help="rows of the gallery")
    parser.add_argument(
        "--synthetic-400",
        action="store_true",
        help="first write a made-up 400-class, 2,000-video run into the folder RUN (figures at "
        "scale); a folder holding a real run's results is refused",
    )
    parser.add_argument(
        "--videos", nargs="*", default=(), help="with --synthetic-400: files the videos cycle over"
    )
    args = parser.parse_args(argv)
    from a2video.errors import debug_enabled, is_user_error
    from a2video.explore.results import describe_scores, load_run, synthetic_run

    try:
        if args.videos and not args.synthetic_400:  # a real run's videos are its own
            raise ValueError(
                "--videos: only with --synthetic-400 (the files a made-up run's videos cycle "
                "over); a run's figures show the videos its test read: drop --videos"
            )
        _out_folder(args.out)  # before a made-up run is written
        if args.synthetic_400:
            synthetic_run(args.run, video_files=args.videos)
        run = load_run(args.run)
        print(f"{PROG}: {describe_scores(run, args.run)}", file=sys.stderr, flush=True)
        files = write_report(run, args.out, mistakes=args.mistakes, class_name=args.class_name)
    except Exception as err:
        if debug_enabled() or not is_user_error(err):
            raise
        print(f"{PROG}: error: {str(err).strip() or type(err).__name__}", file=sys.stderr)
        return 2
    for path in files:
        print(path)
    if args.mistakes and not run.mistakes(1):  # the gallery would be empty: say why it is absent
        print(f"{PROG}: no mistakes.png: every scored video's top-1 is right", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
