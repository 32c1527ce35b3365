"""What a run leaves in its run directory, and the names of the videos.

:meth:`a2video.training.module.VideoClassifier._finish_videos` calls these on rank 0 after the
video results were gathered: ``predictions.csv`` (:func:`a2video.training.metrics.
write_predictions_csv`), ``scores.npz`` (:func:`a2video.explore.results.save_results`) and
``confusion_matrix.png`` when labels are known.

A command that fails as it starts (a wrong split, unreadable weights, a bad option found in
``setup``) leaves nothing behind: :func:`folder_snapshot` before it runs, and
:func:`remove_failed_start` after, remove only what it created there that holds start-up files
alone (no checkpoint, prediction or metric), so the next attempt gets the same ``version_N``.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from typing import Any

from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from a2video.training.metrics import VideoResults, write_predictions_csv

__all__ = [
    "folder_snapshot",
    "missing_videos",
    "remove_failed_start",
    "save_confusion",
    "unreadable_summary",
    "video_names",
    "write_outputs",
]


def video_names(datamodule: Any, stage: str) -> list[str] | None:
    """Names by video index: ``datamodule.video_names(stage)`` or its dataset's records' paths.

    A path is recorded absolute (a relative ``data_root`` gives paths relative to the folder the
    run started in, which the report and notebooks, run from elsewhere, could not find); a name
    of ``video_names`` that is no file from here is kept as it is.
    """
    try:
        getter = getattr(datamodule, "video_names", None)
        if callable(getter):
            names = [str(n) for n in getter(stage)]
            return [os.path.abspath(n) if os.path.isfile(n) else n for n in names]
        records = getattr(getattr(datamodule, "datasets", {}).get(stage), "records", None)
        if records is not None:
            return [os.path.abspath(str(getattr(r, "path", r))) for r in records]
    except Exception as err:  # a name list is a convenience, never a failure
        rank_zero_warn(f"a2video: could not read video names ({err})")
    return None


def missing_videos(datamodule: Any, split: str) -> tuple[int, int | None] | None:
    """``(missing, listed)``: how many videos the annotations of ``split`` list but are not on
    disk (the DataModule's ``missing[split]``, skipped from the dataset) and how many they list
    (None where the dataset is unknown); None where the DataModule does not say."""
    missing = getattr(datamodule, "missing", None)
    if not isinstance(missing, dict) or split not in missing:
        return None
    count = int(missing[split])
    dataset = getattr(datamodule, "datasets", {}).get(split)
    try:
        listed = len(dataset) + count if dataset is not None else None
    except TypeError:
        listed = None
    return count, listed


def unreadable_summary(
    stage: str,
    results: VideoResults,
    videos: int,
    names: list[str] | None,
    wrote: bool = True,
    missing: tuple[int, int | None] | None = None,
) -> str:
    """One line: how many videos the metrics cover (or that no labelled video leaves nothing to
    score), how many listed videos were missing (``missing``: :func:`missing_videos`), and
    which were unreadable (first 20); ``wrote``: predictions.csv and scores.npz were written."""
    bad = [names[i] if names else str(i) for i in results.index[~results.valid].tolist()]
    counts = f"{len(results)} distinct seen, {len(bad)} unreadable"
    if missing is not None:
        listed = f"{missing[1]} listed, " if missing[1] is not None else ""
        counts = f"{listed}{missing[0]} missing, {counts}"
    if not bool((results.label >= 0).any()):
        msg = f"a2video {stage}: no labelled videos, nothing to score ({counts})"
        if stage == "test":
            written = "; the predictions are in predictions.csv and scores.npz" if wrote else ""
            msg += f"{written} (`predict` is the command for unlabelled data)"
    else:
        msg = f"a2video {stage}: metrics over {videos} videos ({counts})"
    if bad:
        shown = ", ".join(bad[:20]) + (" …" if len(bad) > 20 else "")
        msg += f"; unreadable: {shown}"
    return msg


OUTPUT_FILES = ("predictions.csv", "scores.npz", "confusion_matrix.png")


def fresh_output_dir(base: str, stage: str) -> str:
    """Where a ``stage`` (test, predict) run writes its outputs: ``base`` (the logger's run
    folder, a new ``version_N`` for TensorBoard and CSV loggers), unless an earlier run wrote its
    outputs there (no logger, or one without versions such as W&B): then the first free
    ``base/<stage>-<N>``, so an earlier test's predictions are never replaced."""
    if not any(os.path.exists(os.path.join(base, name)) for name in OUTPUT_FILES):
        return base
    n = 1
    while os.path.exists(os.path.join(base, f"{stage}-{n}")):
        n += 1
    return os.path.join(base, f"{stage}-{n}")


def write_outputs(
    out: str,
    results: VideoResults,
    num_classes: int,
    class_names: list[str] | None,
    names: list[str] | None,
    stage: str | None = None,
    missing: int | None = None,
) -> None:
    """Write ``predictions.csv``, ``scores.npz`` (recording ``stage``: test or predict, and
    ``missing``: listed videos not on disk) and (with labels) ``confusion_matrix.png``."""
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "predictions.csv")
    write_predictions_csv(path, results, class_names, names)
    from a2video.explore.results import save_results

    save_results(
        os.path.join(out, "scores.npz"), results, class_names, names, stage=stage, missing=missing
    )
    if bool((results.label >= 0).any()):
        try:
            save_confusion(
                results, num_classes, class_names, os.path.join(out, "confusion_matrix.png")
            )
        except Exception as err:
            rank_zero_warn(f"a2video: confusion matrix not saved ({err})")
    rank_zero_info(f"a2video: wrote {path}")


def save_confusion(
    results: VideoResults, num_classes: int, class_names: list[str] | None, path: str
) -> None:
    """Save the video-level confusion matrix of ``results`` as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from a2video.explore.predict import confusion_matrix
    from a2video.explore.viz import plot_confusion_matrix

    use = results.scored()
    cm = confusion_matrix(results.label[use], results.probs[use].argmax(dim=1), num_classes)
    names = class_names or [str(i) for i in range(num_classes)]
    ax = plot_confusion_matrix(cm, names)
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=100)
    plt.close(ax.figure)


# What a command writes into its run folders as it starts, before any batch: its config
# (SaveRunConfig), the logger's hparams.yaml and first event file, class_names.txt and the
# fine-tune's transfer_report.json. Anything else (a checkpoint, predictions, metrics.csv) is kept.
STARTUP_FILES = (
    "config.yaml",
    "*-config.yaml",
    "*-config-*.yaml",
    "hparams.yaml",
    "class_names.txt",
    "transfer_report.json",
    "events.out.tfevents.*",
)

# folder -> the names it held before the command (None: it did not exist)
FolderSnapshot = dict[str, frozenset[str] | None]


def folder_snapshot(folders: Iterable[str]) -> FolderSnapshot:
    """What ``folders`` (a run's ``default_root_dir``, its loggers' folders) and their missing
    parents up to the first that exists held before a command ran."""
    snapshot: FolderSnapshot = {}
    for folder in folders:
        path = os.path.abspath(folder)
        while path not in snapshot:
            snapshot[path] = frozenset(os.listdir(path)) if os.path.isdir(path) else None
            parent = os.path.dirname(path)
            if snapshot[path] is not None or parent == path:
                break
            path = parent
    return snapshot


def _startup_only(path: str) -> bool:
    """Whether ``path`` is a start-up file, or a folder holding nothing else (no links)."""
    if os.path.islink(path):
        return False
    if not os.path.isdir(path):
        return any(fnmatch.fnmatch(os.path.basename(path), p) for p in STARTUP_FILES)
    for folder, dirs, files in os.walk(path):
        names = [os.path.join(folder, n) for n in files + dirs]
        if any(os.path.islink(n) for n in names):
            return False
        if not all(any(fnmatch.fnmatch(n, p) for p in STARTUP_FILES) for n in files):
            return False
    return True


def _remove(path: str) -> None:
    """Remove a start-up file, or a folder of them (file by file, then the empty folders)."""
    if not os.path.isdir(path):
        os.remove(path)
        return
    for folder, _, files in os.walk(path, topdown=False):
        for name in files:
            os.remove(os.path.join(folder, name))
        os.rmdir(folder)


def remove_failed_start(snapshot: FolderSnapshot, own: Iterable[str]) -> list[str]:
    """After a command failed before its first batch: remove what it created in the folders of
    ``snapshot`` (:func:`folder_snapshot`) that holds only :data:`STARTUP_FILES`, then the
    folders it created that are empty now. Nothing that was there before is touched, nor what
    another command started meanwhile in the same folders (a sweep's runs sharing one
    ``lightning_logs``): only ``own``, the folders this command wrote its start-up files into
    (its loggers' ``version_N``, its run folder), the folders above them and new files in them.

    Returns:
        The paths removed.
    """
    own = {os.path.abspath(p) for p in own}

    def ours(folder: str, path: str) -> bool:
        return folder in own or any(p == path or p.startswith(path + os.sep) for p in own)

    removed = []
    for folder in sorted(snapshot, key=len, reverse=True):  # deeper folders first
        before = snapshot[folder]
        if not os.path.isdir(folder) or os.path.islink(folder):
            continue
        for name in sorted(set(os.listdir(folder)) - (before or frozenset())):
            path = os.path.join(folder, name)
            if path not in snapshot and ours(folder, path) and _startup_only(path):
                _remove(path)
                removed.append(path)
        if before is None and not os.listdir(folder):
            os.rmdir(folder)
            removed.append(folder)
    return removed
