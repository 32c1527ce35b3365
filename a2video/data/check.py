"""``a2video check-data``: decode every listed video once and list the unusable ones.

Each existing file is opened with PyAV and every frame decoded (in parallel processes);
a file is *missing* (listed, absent), *undecodable* (open or decode fails, or frames beyond
the decodable part are listed in the container index: a truncated file) or *too short*
(fewer than ``min_frames`` decodable frames). ``min_frames`` is 1 by default, all that the
loaders need: they sample a video shorter than a clip with repetition (indices clamped to the last
frame, a single frame gives T copies), so a short video is usable and listed only when a higher
``min_frames`` is asked for. A cleaned copy of the annotation file, with only the usable videos,
can be written next to the originals' names in another folder.

Before any video is decoded the command checks that ROOT is a dataset of the ``--layout`` given
and reads every split's annotations; a problem there is one :class:`CheckDataError` line in
check-data's own option names (the command's exit status 2).
"""

from __future__ import annotations

import csv
import filecmp
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import annotations as ann
from .processes import map_surviving_crashes

MIN_FRAMES = 1  # the loaders use any video with a decodable frame (short ones repeat frames)
_ROOT_HOLDS = {
    "kinetics": "annotations/ and the train/, val/, test/ video folders",
    "ucf101": "UCF-101/ and ucfTrainTestlist/",
}
_ANNOTATIONS_HOLD = {
    "kinetics": "the Kinetics CSVs",
    "ucf101": "the extracted ucfTrainTestlist files",
}
# The annotation readers' fixes name the training CLI's options; check-data names its own
_OWN_OPTIONS = (
    (" (check-data: --annotation-dir DIR; Python: annotation_dir=)", ""),
    ("--data.annotation_dir", "--annotation-dir"),
    ("--data.data_root", "ROOT"),
    *((f"--data.{split}_split", "--split") for split in ("train", "val", "test")),
)


class CheckDataError(ValueError):
    """A dataset root, annotation folder or annotation file check-data cannot read: one line
    naming it, what is wrong and the fix in check-data's own options."""


def _uses_annotation_dir(layout: str, splits: list[str]) -> bool:
    """Whether reading ``splits`` needs the annotation folder (only Kinetics ``path label``
    lists, given as files, bring their own classes)."""
    if layout != "kinetics":
        return True
    return not all(ann.is_path_label_list(s) for s in splits)


def check_root(
    layout: str, root: str | os.PathLike, splits: list[str], annotation_dir: str | None = None
) -> None:
    """Refuse, in one :class:`CheckDataError` line, a ROOT that is not there, or that is not a
    ``layout`` dataset (no ``annotations/`` for Kinetics, no ``ucfTrainTestlist/`` for UCF-101,
    as ``a2video prepare`` checks), when its annotation folder is the one to read. A root of the
    other layout names ``--layout`` of that one."""
    from .prepare import LAYOUT_MARKERS, not_this_layout, other_layout

    path = Path(root)
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "not found"
        raise CheckDataError(
            f"{root}: dataset root {what}; fix: pass as ROOT the {layout} dataset's folder "
            f"(it holds {_ROOT_HOLDS[layout]})"
        )
    if annotation_dir is not None:
        if not Path(annotation_dir).is_dir():
            raise CheckDataError(
                f"{annotation_dir}: --annotation-dir: no such folder; fix: pass the folder "
                f"holding {_ANNOTATIONS_HOLD[layout]}"
            )
        return
    marker = LAYOUT_MARKERS[layout]
    if (path / marker).is_dir() or not _uses_annotation_dir(layout, splits):
        return
    other = other_layout(path, layout)
    if other is not None:
        raise CheckDataError(
            f"{root}: {not_this_layout(layout, other)}; fix: pass --layout {other}"
        )
    raise CheckDataError(
        f"{root}: {not_this_layout(layout)}; fix: point ROOT at the "
        f"dataset's root (it holds {_ROOT_HOLDS[layout]}), pass --annotation-dir DIR (the folder "
        f"holding {_ANNOTATIONS_HOLD[layout]}), or pick the right --layout"
    )


def default_splits(layout: str, root: str | os.PathLike, annotation_dir: str | None) -> list[str]:
    """The splits checked when none is named: UCF-101's train and test; Kinetics' train, val
    and test, test only where its CSV is (MMAction2's annotations have none, and the
    DataModules test on val by default)."""
    if layout != "kinetics":
        return ["train", "test"]
    adir = Path(annotation_dir or Path(root) / "annotations")
    has_test = ann.locate_kinetics_csv(adir, "test") is not None
    return ["train", "val", "test"] if has_test else ["train", "val"]


def _in_own_options(text: str) -> str:
    for old, new in _OWN_OPTIONS:
        text = text.replace(old, new)
    return text


def load_split(
    layout: str,
    root: str,
    split: str,
    fold: int = 1,
    annotation_dir: str | None = None,
) -> ann.SplitAnnotations:
    """The split's annotations as the DataModule reads them (see :func:`check_split`); an
    annotation problem is one :class:`CheckDataError` line naming the file and the fix in
    check-data's options (the readers' :class:`~a2video.data.annotations.AnnotationError` names
    the training CLI's ``--data.*``)."""
    try:
        return _split_annotations(layout, root, split, fold, annotation_dir)
    except ann.AnnotationError as err:
        where = f"{err.file}:{err.line}" if err.line is not None else err.file
        what = err.message or str(err).split("\n", 1)[0]
        fix = f"; fix: {_in_own_options(err.fix)}" if err.fix else ""
        raise CheckDataError(f"{_in_own_options(f'{where}: {what}')}{fix}") from None


@dataclass
class VideoCheck:
    line: int
    path: str
    status: str  # ok | missing | undecodable | too-short
    frames: int = 0
    reason: str = ""


def decode_all(path: str) -> tuple[int, str]:
    """(decoded frames, error) after decoding every frame of ``path`` with PyAV."""
    import av

    from .video import PyAVReader, VideoDecodeError

    try:
        reader = PyAVReader(path)
    except VideoDecodeError as err:
        return 0, err.reason
    container, stream = reader._container, reader._stream
    n = 0
    try:
        container.seek(0, stream=stream, backward=True)
        for _ in reader.decoded():
            n += 1
    except (av.FFmpegError, OSError, ValueError) as err:
        return n, f"decoding stopped after {n} of {reader.num_frames} frames: {err}"
    finally:
        reader.close()
    if n < reader.num_frames:
        return n, f"truncated: {n} of {reader.num_frames} indexed frames decodable"
    return n, ""


CRASHED = "the decoder crashed on it (its process died)"


def _decode_in_processes(
    paths: list[str], workers: int, done: Callable[[], object]
) -> list[tuple[int, str]]:
    """:func:`decode_all` of every path, in order, in ``workers`` processes. A video whose
    decoding kills its process even alone (a crash in the decoding library) is undecodable
    (:func:`~a2video.data.processes.map_surviving_crashes`: it was a BrokenProcessPool
    traceback that lost every result)."""
    outcomes: dict[int, tuple[int, str]] = {}
    for i, outcome in map_surviving_crashes(
        decode_all, paths, workers, on_crash=lambda _: (0, CRASHED)
    ):
        outcomes[i] = outcome
        done()
    return [outcomes[i] for i in range(len(paths))]


def _split_annotations(layout: str, root: str, split: str, fold: int, annotation_dir):
    """The split's annotations, read as the DataModule reads them, with ``class_source`` set
    to the file the class list comes from (when dropping lines of it can drop a class)."""
    if layout == "kinetics":
        adir = annotation_dir or os.path.join(root, "annotations")
        if ann.is_path_label_list(split):
            classes = ann.path_label_list_classes(split, root)
            split_ann = ann.read_path_label_list(split, root, classes)
            if not Path(split).with_name("class_names.txt").is_file():
                split_ann.class_source = split  # the list's own labels are the classes
            return split_ann
        train_csv = ann.find_kinetics_csv(adir, "train")
        classes = ann.read_kinetics_classes(train_csv)
        csv_path = ann.find_kinetics_csv(adir, split)
        video_dir, recursive = ann.find_kinetics_split_videos(root, split, csv_path)
        split_ann = ann.read_kinetics_csv(
            csv_path,
            video_dir,
            classes,
            require_labels=split in ("train", "val"),  # as the DataModule's train/val splits
            recursive=recursive,
        )
        split_ann.class_source = str(train_csv)
        return split_ann
    adir = annotation_dir or os.path.join(root, "ucfTrainTestlist")
    classes = ann.read_ucf_classes(adir)
    split_file = ann.ucf_split_file(adir, split, fold)
    return ann.read_ucf_split(split_file, ann.find_ucf_video_dir(root), classes, allow_missing=True)


def check_split(
    layout: str,
    root: str,
    split: str = "train",
    fold: int = 1,
    annotation_dir: str | None = None,
    min_frames: int = MIN_FRAMES,
    workers: int = 2,
    progress: bool = True,
    split_ann: ann.SplitAnnotations | None = None,
) -> tuple[list[VideoCheck], ann.SplitAnnotations]:
    """Check every listed video of one split; returns one :class:`VideoCheck` per line.

    ``split_ann``: the split's annotations when already read (:func:`load_split`).
    """
    if split_ann is None:
        split_ann = _split_annotations(layout, root, split, fold, annotation_dir)
    results = [
        VideoCheck(line, name, "missing", reason="listed, not found")
        for line, name in split_ann.missing
    ]
    paths = [r.path for r in split_ann.records]
    from tqdm import tqdm

    bar = tqdm(total=len(paths), desc=f"check {layout} {split}", unit="video", disable=not progress)
    if workers > 1 and len(paths) > 1:
        outcomes = _decode_in_processes(paths, workers, bar.update)
    else:
        outcomes = []
        for p in paths:
            outcomes.append(decode_all(p))
            bar.update()
    bar.close()
    for record, (n, err) in zip(split_ann.records, outcomes, strict=True):
        if err:
            status = "undecodable"
        elif n < min_frames:
            status, err = "too-short", f"{n} frames < min_frames={min_frames}"
        else:
            status = "ok"
        results.append(VideoCheck(record.line, record.path, status, n, err))
    results.sort(key=lambda c: c.line)
    return results, split_ann


def clean_target(split_ann: ann.SplitAnnotations, out_dir: str | os.PathLike) -> Path:
    """Where :func:`write_clean` writes the split's cleaned file; a ``ValueError`` where that
    is the split's own file."""
    source = Path(split_ann.source)
    target = Path(out_dir) / source.name
    if target.resolve() == source.resolve():
        raise ValueError(f"--write-clean would overwrite {source}; choose another folder")
    return target


def check_outputs(
    splits: list[ann.SplitAnnotations], clean_dir: str | None, report: str | None
) -> None:
    """Make ``--write-clean DIR`` and ``--report CSV``'s folder, and refuse a DIR holding a
    split's own file, before any video is decoded: found after decoding (hours on Kinetics),
    such a mistake threw the run's results away."""
    if clean_dir is not None:
        for split_ann in splits:
            clean_target(split_ann, clean_dir)
        Path(clean_dir).mkdir(parents=True, exist_ok=True)
    if report is not None:
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        with open(report, "a"):  # a folder, or a file that cannot be written: said now
            pass


def write_clean(
    layout: str, split_ann: ann.SplitAnnotations, checks: list[VideoCheck], out_dir: str
) -> Path:
    """Copy the split's annotation file into ``out_dir`` keeping only usable videos.

    Raises:
        ValueError: the file defines the class list (Kinetics train CSV, ``path label`` list
            without ``class_names.txt``) and a class would lose all its videos: the cleaned copy
            would have fewer classes, every later class index shifted. Nothing is written.
            Or ``out_dir`` holds another ``class_names.txt`` than the one a ``path label``
            list's classes come from (it is copied beside the cleaned list).
    """
    keep = {c.line for c in checks if c.status == "ok"}
    source = Path(split_ann.source)
    lines = ann.annotation_text(source).splitlines(keepends=True)
    is_csv = split_ann.header is not None  # a Kinetics CSV (its header kept)
    if is_csv:
        kept = [lines[0]] + [lines[i - 1] for i in range(2, len(lines) + 1) if i in keep]
    else:
        kept = [lines[i - 1] for i in range(1, len(lines) + 1) if i in keep]
    if split_ann.class_source and Path(split_ann.class_source).resolve() == source.resolve():
        left = set(ann.classes_of_lines(kept, csv_header=is_csv))
        lost = [name for name in ann.classes_of_lines(lines, csv_header=is_csv) if name not in left]
        if lost:
            raise ValueError(
                f"{source}: --write-clean refused: no usable video left for class(es) "
                f"{', '.join(map(repr, lost[:5]))}{' ...' if len(lost) > 5 else ''}, so the "
                f"cleaned file would drop {len(lost)} of {len(split_ann.class_names)} classes "
                "and shift the class indices; fix: replace those videos (see the report above) "
                "or delete the class from every split's annotations, then rerun"
            )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = clean_target(split_ann, out_dir)
    # a path label list's class_names.txt goes beside the cleaned list: without it the list's
    # own labels would define the classes (other ones, in another order)
    names = source.with_name("class_names.txt")
    has_names = layout == "kinetics" and not is_csv and names.is_file()
    if has_names and not (out / names.name).exists():
        shutil.copy(names, out / names.name)
    elif has_names and not filecmp.cmp(names, out / names.name, shallow=False):
        raise ValueError(
            f"--write-clean: {out / names.name} is not {names}, whose class names the cleaned "
            f"{source.name} needs beside it; choose another folder"
        )
    target.write_text("".join(kept), encoding="utf-8")
    if layout == "ucf101":  # the cleaned folder must be a complete annotation_dir
        src_dir = source.parent
        for name in os.listdir(src_dir):
            if name.endswith(".txt") and not (out / name).exists():
                shutil.copy(src_dir / name, out / name)
    elif layout == "kinetics":  # the class list comes from train.csv: keep it available
        for name in os.listdir(source.parent):
            if name.endswith(".csv") and not (out / name).exists():
                shutil.copy(source.parent / name, out / name)
    return target


def format_report(checks: list[VideoCheck]) -> str:
    bad = [c for c in checks if c.status != "ok"]
    counts = {
        s: sum(c.status == s for c in checks) for s in ("ok", "missing", "undecodable", "too-short")
    }
    lines = [f"{c.status:12s} line {c.line:6d}  {c.path}  {c.reason}" for c in bad]
    lines.append(
        f"{len(checks)} listed: {counts['ok']} ok, {counts['missing']} missing, "
        f"{counts['undecodable']} undecodable, {counts['too-short']} too short"
    )
    return "\n".join(lines)


def write_csv_report(checks: list[VideoCheck], path: str) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["line", "path", "status", "frames", "reason"])
        for c in checks:
            w.writerow([c.line, c.path, c.status, c.frames, c.reason])
