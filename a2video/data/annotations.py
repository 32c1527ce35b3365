"""Annotation readers: Kinetics-400/600/700 CSVs, ``path label`` lists, UCF-101 split files.

Kinetics (CVDF download, ``github.com/cvdfoundation/kinetics-dataset``)::

    ROOT/annotations/{train,val,test}.csv      label,youtube_id,time_start,time_end,split[,is_cc]
    ROOT/{train,val,test}/<id>_<start:06d>_<end:06d>.mp4               (flat, as extracted)
    ROOT/{train,val,test}/<label>/<id>_<start:06d>_<end:06d>.mp4       (per-class folders)

Kinetics-600/700's names are found too (CVDF's Kinetics-600 ``train.txt``/``val.txt``,
``kinetics_600_train.csv``, DeepMind's ``kinetics700_2020/validate.csv``…:
:data:`KINETICS_CSV_NAMES`, :func:`locate_kinetics_csv`). Both video layouts (and a mix) are
found by indexing each split folder once by file stem; CVDF's ``ROOT/replacement/`` copies of
corrupted videos take the place of those. Listed videos that are absent are skipped and counted
in one log line (real Kinetics lacks 5-10%).

UCF-101 (CRCV download)::

    ROOT/UCF-101/<Class>/v_<Class>_gXX_cYY.avi
    ROOT/ucfTrainTestlist/classInd.txt                     "1 ApplyEyeMakeup" (1-based)
    ROOT/ucfTrainTestlist/trainlist0{1,2,3}.txt           "<Class>/v_..avi 1"
    ROOT/ucfTrainTestlist/testlist0{1,2,3}.txt            "<Class>/v_..avi" (label = folder)

Every problem with an annotation file is one :class:`AnnotationError` naming the file, the
line and the fix, raised while the DataModule is built, before any training starts.
"""

from __future__ import annotations

import csv
import difflib
import io
import logging
import operator
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# every file with one of these is a video (prepare re-encodes it, Kinetics finds it by stem)
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".flv", ".mpg", ".mpeg")
VIDEO_EXTENSIONS += (".wmv", ".asf", ".3gp", ".ogv", ".ts", ".mts", ".m2ts", ".vob")
KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")
# The names a split's CSV has in the Kinetics-400/600/700 downloads, in the order looked for:
# CVDF's annotations/{train,val,test}.csv (Kinetics-600's complete train/val lists are CSVs named
# train.txt / val.txt), DeepMind's {train,validate,test}.csv, MMAction2's kinetics_{split}.csv,
# the ActivityNet crawler's kinetics-600_{split}.csv and the version-named kinetics_600_{split}.csv.
_KINETICS_SPLIT_WORDS = {"train": ("train",), "val": ("val", "validate"), "test": ("test",)}
_KINETICS_VERSIONS = ("400", "600", "700", "700_2020")
KINETICS_CSV_NAMES = {
    split: (
        *(f"{w}.csv" for w in words),
        f"{split}.txt",
        f"kinetics_{split}.csv",
        *(f"kinetics-{v}_{split}.csv" for v in _KINETICS_VERSIONS[:3]),
        *(f"kinetics_{v}_{split}.csv" for v in _KINETICS_VERSIONS),
    )
    for split, words in _KINETICS_SPLIT_WORDS.items()
}
# DeepMind's annotation tarballs (kinetics600.tar.gz …) extract to a folder of their name; looked
# for inside the annotation folder when it holds no CSV of the split itself.
KINETICS_TARBALL_DIRS = tuple(f"kinetics{v}" for v in _KINETICS_VERSIONS)
KINETICS_VIDEO_DIRS = {
    "train": ("train", "videos_train", "train_256", "kinetics_train"),
    "val": ("val", "videos_val", "val_256", "validate", "kinetics_val"),
    "test": ("test", "videos_test", "test_256", "kinetics_test"),
}
# CVDF's fixed copies of ~1400 corrupted Kinetics-400 videos, under the names of the videos they
# replace (its k400_extractor.sh: ROOT/replacement/replacement_for_corrupted_k400/*.mp4)
KINETICS_REPLACEMENT_DIRS = ("replacement", "replacement_for_corrupted_k400")


class AnnotationError(ValueError):
    """An annotation problem that stops the run before training, with where and how to fix."""

    def __init__(
        self, file: str | os.PathLike, message: str, line: int | None = None, fix: str | None = None
    ) -> None:
        self.file, self.line, self.fix, self.message = str(file), line, fix, message
        where = f"{file}:{line}" if line is not None else str(file)
        text = f"{where}: {message}"
        if fix:
            text += f"; fix: {fix}"
        super().__init__(text)

    def __reduce__(self):
        return (
            _rebuild_annotation_error,
            (self.file, str(self), self.line, self.fix, self.message),
        )


def _claim_once(
    seen: dict[str, int], key: str, path: str | os.PathLike, lineno: int, *, what: str
) -> None:
    """Record ``key`` at ``lineno``; a second occurrence is an AnnotationError naming both lines."""
    if key in seen:
        raise AnnotationError(
            path,
            f"duplicated {what} {key} (first at line {seen[key]})",
            line=lineno,
            fix=f"delete line {lineno}",
        )
    seen[key] = lineno


def _rebuild_annotation_error(file, text, line, fix, message=None):
    err = AnnotationError.__new__(AnnotationError)
    ValueError.__init__(err, text)
    err.file, err.line, err.fix, err.message = file, line, fix, message
    return err


def annotation_text(path: str | os.PathLike) -> str:
    """The text of an annotation file: UTF-8 (a BOM skipped). Other bytes (a spreadsheet's
    Latin-1 or UTF-16 export) are an :class:`AnnotationError` naming the line, not a codec
    traceback."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise AnnotationError(
            path,
            f"not UTF-8 text (byte 0x{data[err.start]:02x})",
            line=data.count(b"\n", 0, err.start) + 1,
            fix="save the file as UTF-8 (a spreadsheet's 'CSV UTF-8')",
        ) from None


@dataclass(frozen=True)
class VideoRecord:
    """One listed video: its path, its label (-1 when the split has none) and where it came from."""

    path: str
    label: int
    line: int = 0  # line in the annotation file (1-based, header included)


class RecordArray(Sequence):
    """A split's :class:`VideoRecord` list stored in four flat buffers: every path's bytes in one
    ``bytes`` object (with their end offsets) and the labels and lines in int32 arrays.

    Indexing gives the same :class:`VideoRecord` (equal path, label and line) as the list it was
    made from, made on the spot; a slice gives a list of them. Why: a dataset's list of 240k-545k
    small Python objects, read by N forked DataLoader workers, becomes N private copies one page
    at a time, as reference counts (and the garbage collector) write into the pages that hold
    them (pytorch/pytorch#13246): ~55 MB per worker for 290k videos (benchmarks/RESULTS.md,
    "Split records at Kinetics scale"). These buffers are a handful of objects, only ever read,
    so the workers keep sharing them with the training process. Paths that are not valid UTF-8
    come back unchanged (``os.fsencode`` / ``os.fsdecode``). Read-only; picklable (spawned
    workers).
    """

    __slots__ = ("_blob", "_ends", "_labels", "_lines")

    def __init__(self, records: Iterable[VideoRecord] = ()) -> None:
        paths, labels, lines = [], [], []
        for r in records:
            paths.append(os.fsencode(r.path))
            labels.append(r.label)
            lines.append(r.line)
        self._set(
            b"".join(paths),
            np.cumsum(np.fromiter(map(len, paths), np.int64, len(paths)), dtype=np.int64),
            np.asarray(labels, dtype=np.int32),
            np.asarray(lines, dtype=np.int32),
        )

    def _set(self, blob: bytes, ends, labels, lines) -> None:
        arrays = []
        for a in (ends, labels, lines):
            a = np.array(a, copy=True)  # its own buffer, then frozen
            a.flags.writeable = False
            arrays.append(a)
        self._blob = bytes(blob)
        self._ends, self._labels, self._lines = arrays

    @classmethod
    def _rebuild(cls, blob: bytes, ends, labels, lines) -> RecordArray:
        out = cls.__new__(cls)
        out._set(blob, ends, labels, lines)
        return out

    def __reduce__(self):
        return (RecordArray._rebuild, (self._blob, self._ends, self._labels, self._lines))

    def __len__(self) -> int:
        return len(self._labels)

    def path(self, i: int) -> str:
        """The path of record ``i`` (no :class:`VideoRecord` made)."""
        end = int(self._ends[i])
        start = int(self._ends[i - 1]) if i > 0 else 0
        return os.fsdecode(self._blob[start:end])

    def __getitem__(self, key):
        if isinstance(key, slice):
            return [self[i] for i in range(*key.indices(len(self)))]
        i = operator.index(key)
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"record index {key} out of range for {n} records")
        return VideoRecord(self.path(i), int(self._labels[i]), int(self._lines[i]))

    def __iter__(self) -> Iterator[VideoRecord]:
        start = 0
        for end, label, line in zip(
            self._ends.tolist(), self._labels.tolist(), self._lines.tolist(), strict=True
        ):
            yield VideoRecord(os.fsdecode(self._blob[start:end]), label, line)
            start = end

    def __eq__(self, other) -> bool:
        if isinstance(other, RecordArray):
            return (
                self._blob == other._blob
                and np.array_equal(self._ends, other._ends)
                and np.array_equal(self._labels, other._labels)
                and np.array_equal(self._lines, other._lines)
            )
        if isinstance(other, (list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RecordArray({len(self)} records, {len(self._blob)} path bytes)"

    @property
    def labels(self) -> np.ndarray:
        """Every record's label (read-only int32)."""
        return self._labels

    @property
    def paths(self) -> RecordPaths:
        """Every record's path, as a read-only sequence of str (made on access)."""
        return RecordPaths(self)


class RecordPaths(Sequence):
    """The paths of a :class:`RecordArray` as a sequence of str (no list of them is kept)."""

    __slots__ = ("records",)

    def __init__(self, records: RecordArray) -> None:
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return [self[i] for i in range(*key.indices(len(self)))]
        return self.records[key].path

    def __iter__(self) -> Iterator[str]:
        blob, start = self.records._blob, 0
        for end in self.records._ends.tolist():
            yield os.fsdecode(blob[start:end])
            start = end


def record_array(records: Iterable[VideoRecord]) -> RecordArray:
    """``records`` as a :class:`RecordArray` (the same object when it is one)."""
    return records if isinstance(records, RecordArray) else RecordArray(records)


@dataclass
class SplitAnnotations:
    """The usable videos of one split plus the listed-but-missing ones."""

    records: list[VideoRecord]
    class_names: list[str]
    source: str
    missing: list[tuple[int, str]] = field(default_factory=list)  # (line, expected name)
    header: list[str] | None = None
    raw_lines: dict[int, str] = field(default_factory=dict)  # line -> original text
    class_source: str | None = None  # the file the class list comes from, where it is one


# --------------------------------------------------------------------------- Kinetics
def kinetics_video_stem(youtube_id: str, time_start: float | str, time_end: float | str) -> str:
    return f"{youtube_id}_{int(float(time_start)):06d}_{int(float(time_end)):06d}"


def find_kinetics_csv(annotation_dir: str | os.PathLike, split: str) -> Path:
    """The CSV of ``split`` (a split name or a path to a .csv/.txt file)."""
    if os.path.isfile(split):
        return Path(split)
    if Path(split).suffix.lower() in (".csv", ".txt"):  # a file, not a split name
        raise AnnotationError(
            split,
            f"no such file (a split given as a file is read from its path; a relative one from "
            f"the current folder, {os.getcwd()})",
            fix="pass the file's full path, or a split name (train, val, test)",
        )
    found = locate_kinetics_csv(annotation_dir, split)
    if found is not None:
        return found
    names = KINETICS_CSV_NAMES.get(split, (f"{split}.csv",))
    inside = [f"{d}/{w}.csv" for d in KINETICS_TARBALL_DIRS for w in _split_words(split)]
    what = (
        f"no annotation file for split {split!r} (looked for {', '.join(names)}, then "
        f"{', '.join(inside)})"
    )
    stages = ("train", "val", "test")
    # a split name of no stage (a typo: 'trian') where the folder holds the stages' CSVs: name them
    there = [] if split in stages else [s for s in stages if _has_kinetics_csv(annotation_dir, s)]
    if there:
        near = difflib.get_close_matches(split, there, n=1)
        raise AnnotationError(
            Path(annotation_dir) / names[0],
            what,
            fix=f"name a split whose annotation file is in {annotation_dir}: "
            f"{', '.join(there)}{f' (did you mean {near[0]!r}?)' if near else ''}, or give the "
            "split as a path to a CSV / 'path label' list",
        )
    option = f" (--data.{split}_split FILE)" if split in stages else ""
    raise AnnotationError(
        Path(annotation_dir) / names[0],
        what,
        fix="pass --data.annotation_dir DIR (check-data: --annotation-dir DIR; Python: "
        "annotation_dir=), the folder holding the Kinetics CSVs (CVDF: <root>/annotations), "
        f"or give the split as a path to a CSV / 'path label' list{option}",
    )


def _has_kinetics_csv(annotation_dir: str | os.PathLike, split: str) -> bool:
    try:
        return locate_kinetics_csv(annotation_dir, split) is not None
    except AnnotationError:  # in two tarball folders: there, but which is the user's to say
        return True


def _split_words(split: str) -> tuple[str, ...]:
    return _KINETICS_SPLIT_WORDS.get(split, (split,))


def _kinetics_csv_here(folder: Path, split: str) -> Path | None:
    """The first of the split's :data:`KINETICS_CSV_NAMES` in ``folder`` that is a Kinetics CSV
    (a ``.txt`` only with a ``youtube_id`` header). CVDF's Kinetics-600 ``train.csv`` beside its
    ``train.txt`` is an :class:`AnnotationError`: there the ``.csv`` is an incomplete list."""
    names = KINETICS_CSV_NAMES.get(split, (f"{split}.csv",))
    found = [
        folder / name
        for name in names
        if (folder / name).is_file()
        and (not name.endswith(".txt") or not is_path_label_list(folder / name))
    ]
    if not found:
        return None
    twins = [p for p in found if p.suffix == ".txt" and p.with_suffix(".csv") in found]
    if twins:
        txt = twins[0]
        raise AnnotationError(
            txt.with_suffix(".csv"),
            f"{txt.name} beside it lists the same split (CVDF's Kinetics-600 annotations: its "
            f"{txt.name} is the complete list, {txt.with_suffix('.csv').name} an incomplete one)",
            fix=f"pass --data.{split}_split {txt} (or the .csv), or move the other one away",
        )
    return found[0]


def locate_kinetics_csv(annotation_dir: str | os.PathLike, split: str) -> Path | None:
    """The CSV of split name ``split`` in ``annotation_dir`` (any of :data:`KINETICS_CSV_NAMES`),
    else in the one DeepMind tarball folder there that has it (``kinetics600/validate.csv``);
    None where there is none. Two tarball folders that both have it are an
    :class:`AnnotationError` naming them (which dataset is meant is the user's to say)."""
    folder = Path(annotation_dir)
    found = _kinetics_csv_here(folder, split)
    if found is not None:
        return found
    inside = {d: _kinetics_csv_here(folder / d, split) for d in KINETICS_TARBALL_DIRS}
    inside = {d: path for d, path in inside.items() if path is not None}
    if len(inside) > 1:
        paths = [str(p) for p in inside.values()]
        raise AnnotationError(
            folder,
            f"the {split} split is in several Kinetics annotation folders ({', '.join(paths)})",
            fix="pass --data.annotation_dir with the one of the dataset to use, e.g. "
            f"--data.annotation_dir {folder / next(iter(inside))}",
        )
    return next(iter(inside.values()), None)


def find_kinetics_video_dir(data_root: str | os.PathLike, split: str) -> Path:
    root = Path(data_root)
    for name in KINETICS_VIDEO_DIRS.get(split, (split,)):
        if (root / name).is_dir():
            return root / name
    return root


_SPLIT_ALIASES = {"validate": "val", "validation": "val"}


def _csv_split_column(csv_path: str | os.PathLike) -> str | None:
    """The one split (train/val/test) every row of a Kinetics CSV's ``split`` column names."""
    reader = csv.reader(io.StringIO(annotation_text(csv_path), newline=""))
    header = [h.strip().lower() for h in next(reader, [])]
    if "split" not in header:
        return None
    col = header.index("split")
    values = {row[col].strip().lower() for row in reader if len(row) > col and row[col].strip()}
    if len(values) != 1:
        return None
    value = values.pop()
    value = _SPLIT_ALIASES.get(value, value)
    return value if value in KINETICS_VIDEO_DIRS else None


def find_kinetics_split_videos(
    data_root: str | os.PathLike, split: str, csv_path: str | os.PathLike
) -> tuple[Path, bool]:
    """Where the videos of a Kinetics split are: ``(folder, search it recursively)``.

    The split's folder (``train/``, ``videos_val/``, ...) is named by ``split`` when it is a split
    name, else by the CSV's file name (``val.csv``), else by the CSV's ``split`` column when all
    rows agree (``train_subset.csv`` listing train videos). Without such a folder the whole
    ``data_root`` is searched, at any depth, so that no listed video is missed.
    """
    name = None
    for candidate in (split, Path(csv_path).stem):
        candidate = _SPLIT_ALIASES.get(candidate, candidate)
        if candidate in KINETICS_VIDEO_DIRS:
            name = candidate
            break
    if name is None:
        name = _csv_split_column(csv_path)
    if name is not None:
        folder = find_kinetics_video_dir(data_root, name)
        if folder != Path(data_root):
            return folder, False
    if first_process():  # every rank finds the same: one line, not one per process
        log.info(
            "%s: no split folder found, searching all of %s for its videos", csv_path, data_root
        )
    return Path(data_root), True


# What a scan read, for a cache of its result (:mod:`a2video.data.listing`): the state of every
# folder it listed or looked for, path -> its ``os.stat`` (None where absent), taken before it
# was read, so a change made meanwhile is a different state.
ReadFolders = dict[str, os.stat_result | None]


def _note(read: ReadFolders | None, path: str | os.PathLike) -> None:
    """Record ``path``'s state in ``read`` (its first state, before any listing of it)."""
    if read is None or os.fspath(path) in read:
        return
    try:
        read[os.fspath(path)] = os.stat(path)
    except OSError:
        read[os.fspath(path)] = None


def _scandir(folder: str | os.PathLike, read: ReadFolders | None) -> os.ScandirIterator:
    _note(read, folder)
    return os.scandir(folder)


def _walk_dirs(top: str | os.PathLike, read: ReadFolders | None = None) -> list[str]:
    """``top`` and every folder below it, following symlinks, each real folder once (a link to
    a folder above ``top`` is a cycle and is not followed)."""
    top_real = os.path.realpath(top)
    seen, out, stack = set(), [], [os.fspath(top)]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen or top_real.startswith(real.rstrip(os.sep) + os.sep):
            continue  # a symlink cycle, or a second link to one folder
        seen.add(real)
        out.append(folder)
        try:
            subdirs = sorted(e.path for e in _scandir(folder, read) if e.is_dir())
        except OSError:
            continue
        stack.extend(reversed(subdirs))
    return out


def walk_files(top: str | os.PathLike, read: ReadFolders | None = None) -> Iterator[str]:
    """Every file below ``top`` (sorted, depth first), following symlinked folders once each;
    ``read``: where to record the folders read (see :data:`ReadFolders`)."""
    for folder in _walk_dirs(top, read):
        try:
            names = sorted(e.name for e in _scandir(folder, read) if not e.is_dir())
        except OSError:
            continue
        for name in names:
            yield os.path.join(folder, name)


def index_videos(
    video_dir: str | os.PathLike, recursive: bool = False, read: ReadFolders | None = None
) -> dict[str, str]:
    """Map file stem -> path for every video in ``video_dir`` and its direct subfolders (at any
    depth with ``recursive``); ``read``: where to record the folders read."""
    index: dict[str, str] = {}
    if recursive:
        for path in walk_files(video_dir, read):
            stem, ext = os.path.splitext(os.path.basename(path))
            if ext.lower() in VIDEO_EXTENSIONS:
                index.setdefault(stem, path)
        return index
    try:
        entries = list(_scandir(video_dir, read))
    except FileNotFoundError:
        return index
    for entry in entries:
        if entry.is_dir():
            for sub in _scandir(entry.path, read):
                stem, ext = os.path.splitext(sub.name)
                if ext.lower() in VIDEO_EXTENSIONS:
                    index.setdefault(stem, sub.path)
        else:
            stem, ext = os.path.splitext(entry.name)
            if ext.lower() in VIDEO_EXTENSIONS:
                index.setdefault(stem, entry.path)
    return index


def kinetics_replacements(
    root: str | os.PathLike, read: ReadFolders | None = None
) -> dict[str, str]:
    """Stem -> path of the CVDF replacement videos under ``root`` (the folder holding the split
    folders): each takes the place of the listed video of the same name, corrupted in the
    download (or missing from it); ``read``: where to record the folders read."""
    found: dict[str, str] = {}
    for name in KINETICS_REPLACEMENT_DIRS:
        _note(read, Path(root) / name)
        if (Path(root) / name).is_dir():
            found.update(index_videos(Path(root) / name, recursive=True, read=read))
    return found


@dataclass
class KineticsVideos:
    """What a Kinetics split's rows are matched to: stem -> path of every video in its folder
    (:func:`index_videos`) and of CVDF's replacements (:func:`kinetics_replacements`)."""

    index: dict[str, str]
    replacements: dict[str, str]


def find_kinetics_videos(
    video_dir: str | os.PathLike, recursive: bool = False, read: ReadFolders | None = None
) -> KineticsVideos:
    """The videos of a Kinetics split folder (``recursive``: see
    :func:`find_kinetics_split_videos`): the one scan of its folders (~300k files, 400 class
    folders for Kinetics-400's train split); ``read``: where to record the folders read."""
    log.debug("%s: listing the video folders", video_dir)
    return KineticsVideos(
        index_videos(video_dir, recursive, read),
        kinetics_replacements(video_dir if recursive else Path(video_dir).parent, read),
    )


def read_kinetics_classes(
    csv_path: str | os.PathLike, rows: KineticsRows | None = None
) -> list[str]:
    """The sorted class list of a Kinetics CSV (the train CSV defines the classes); ``rows``: its
    :func:`read_kinetics_rows`, where the caller has them already."""
    rows, header = rows if rows is not None else _read_kinetics_rows(csv_path)
    if "label" not in header:
        raise AnnotationError(
            csv_path,
            "no 'label' column, but the class list comes from the train split's CSV",
            line=1,
            fix="give as train split a CSV with labels ('label,youtube_id,time_start,time_end,"
            "split'); a CSV without labels can only be a test/predict split",
        )
    labels = sorted({label for _, label, _ in rows if label})
    if not labels:
        raise AnnotationError(
            csv_path, "no labelled rows", fix="the class list comes from the train CSV"
        )
    return labels


# (line, label, video stem) of every row of a Kinetics CSV, and its header
KineticsRows = tuple[list[tuple[int, str, str]], list[str]]


def read_kinetics_rows(csv_path: str | os.PathLike) -> KineticsRows:
    """``(line, label, stem)`` of every row of a Kinetics CSV and its header, the columns and
    duplicates checked: what :func:`read_kinetics_classes` and :func:`read_kinetics_csv` read,
    for a caller that gives both the same file (it is parsed once)."""
    return _read_kinetics_rows(csv_path)


def _read_kinetics_rows(csv_path: str | os.PathLike) -> KineticsRows:
    """(line, label, stem) for every row, checking columns and duplicates."""
    path = Path(csv_path)
    if not path.is_file():
        raise AnnotationError(
            path, "annotation file not found", fix="check --data.data_root / --data.annotation_dir"
        )
    with io.StringIO(annotation_text(path), newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise AnnotationError(path, "empty file", line=1, fix="re-download the annotations")
        header = [h.strip().lower() for h in header]
        needed = [c for c in KINETICS_COLUMNS[1:] if c not in header]
        if needed:
            raise AnnotationError(
                path,
                f"header {','.join(header)!r} lacks column(s) {', '.join(needed)}",
                line=1,
                fix="a Kinetics CSV starts with 'label,youtube_id,time_start,time_end,split'; "
                "for a 'path label' list use a .txt file",
            )
        col = {name: header.index(name) for name in header}
        rows, seen = [], {}
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < len(header) - ("is_cc" in col):
                raise AnnotationError(
                    path,
                    f"expected {len(header)} fields, got {len(row)}",
                    line=lineno,
                    fix="repair or delete this line",
                )
            try:
                stem = kinetics_video_stem(
                    row[col["youtube_id"]].strip(), row[col["time_start"]], row[col["time_end"]]
                )
            except ValueError:
                raise AnnotationError(
                    path,
                    f"time_start/time_end not numbers: {row}",
                    line=lineno,
                    fix="repair or delete this line",
                ) from None
            _claim_once(seen, stem, path, lineno, what="row for video")
            label = row[col["label"]].strip() if "label" in col else ""
            rows.append((lineno, label, stem))
    return rows, header


def read_kinetics_csv(
    csv_path: str | os.PathLike,
    video_dir: str | os.PathLike,
    class_names: list[str],
    require_labels: bool = True,
    recursive: bool = False,
    rows: KineticsRows | None = None,
    videos: KineticsVideos | None = None,
) -> SplitAnnotations:
    """Usable videos of a Kinetics CSV, found flat or in per-class folders under ``video_dir``.

    Args:
        require_labels: every row must have a label (train/val); else a row without one (or a
            CSV without a ``label`` column: test/predict) gets label -1.
        recursive: search ``video_dir`` at any depth (see :func:`find_kinetics_split_videos`).
        rows: the CSV's :func:`read_kinetics_rows`, where the caller read them already.
        videos: :func:`find_kinetics_videos` of ``video_dir``, where the caller has them (a
            listing cached for the node: :mod:`a2video.data.listing`); else the folders are read.
    """
    rows, header = rows if rows is not None else _read_kinetics_rows(csv_path)
    label_of = {name: i for i, name in enumerate(class_names)}
    if videos is None:
        videos = find_kinetics_videos(video_dir, recursive)
    index, replacements = videos.index, videos.replacements
    if replacements:
        index = {**index, **replacements}  # a copy: ``videos`` may be a cached listing
    records, missing = [], []
    for lineno, label, stem in rows:
        if label == "" and require_labels:
            raise AnnotationError(
                csv_path,
                "this row has no label"
                if "label" in header
                else "no 'label' column, but a train/val split needs labels",
                line=lineno if "label" in header else 1,
                fix="fill in the label or delete the line (only a test/predict split may be "
                "unlabelled)",
            )
        if label == "":
            target = -1
        elif label not in label_of:
            raise AnnotationError(
                csv_path,
                f"label {label!r} is not one of the {len(class_names)} classes of the train CSV",
                line=lineno,
                fix="use annotation files of the same Kinetics version (400/600/700) for all "
                "splits, or delete this line",
            )
        else:
            target = label_of[label]
        path = index.get(stem)
        if path is None:
            missing.append((lineno, stem))
            continue
        records.append(VideoRecord(path, target, lineno))
    replaced = replacements and sum(index.get(s) == replacements.get(s, "") for _, _, s in rows)
    if replaced and first_process():
        log.info("%s: %d listed videos read from CVDF's replacements", csv_path, replaced)
    _log_missing(csv_path, video_dir, len(rows), missing)
    _log_classes_without_videos(csv_path, video_dir, rows, records, class_names)
    return SplitAnnotations(records, list(class_names), str(csv_path), missing, header)


def first_process() -> bool:
    """Whether this is rank 0 of a multi-process run, or the only process. Before the process
    group exists (a DataModule reads its lists first) the rank is the launcher's environment,
    read as Lightning's ``rank_zero_only`` reads it (the first of these set), without importing
    Lightning here."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if key in os.environ:
            return os.environ[key] == "0"
    return True


def _log_missing(source, video_dir, listed: int, missing: list) -> None:
    # every rank reads the same list: one warning, not one per process
    if missing and first_process():
        log.warning(
            "%s: %d of %d listed videos are missing under %s and are skipped (%.1f%%), e.g. %s; "
            "fix: none for the few %% a Kinetics download lacks (gone from YouTube); more: "
            "check --data.data_root; `a2video check-data` lists each one",
            source,
            len(missing),
            listed,
            video_dir,
            100.0 * len(missing) / max(listed, 1),
            missing[0][1],
        )


def _log_classes_without_videos(
    source,
    video_dir,
    rows: list[tuple[int, str, str]],
    records: list[VideoRecord],
    class_names: list[str],
) -> None:
    """One warning naming the classes a split lists videos of and has none of on disk (a class
    folder named otherwise, another download's labels): the model still has their outputs and
    never trains on, or is scored on, them; the missing-videos line alone gave only a count."""
    listed = Counter(label for _, label, _ in rows if label)
    found = {class_names[r.label] for r in records if r.label >= 0}
    empty = sorted(name for name in listed if name not in found)
    if empty and first_process():
        shown = ", ".join(f"{name!r} ({listed[name]} listed)" for name in empty[:5])
        more = f" and {len(empty) - 5} more" if len(empty) > 5 else ""
        log.warning(
            "%s: no video of %d of its %d classes is under %s: %s%s; fix: put their videos "
            "there (a class folder named otherwise?); `a2video check-data` lists each one",
            source,
            len(empty),
            len(listed),
            video_dir,
            shown,
            more,
        )


# --------------------------------------------------------------------------- path label lists
def is_path_label_list(split: str | os.PathLike) -> bool:
    """Whether ``split`` is a file holding a ``path label`` list, told by its first line, not its
    extension: a ``.txt`` or ``.csv`` file whose header does not name ``youtube_id`` (PySlowFast's
    ``{train,val,test}.csv`` are ``path label`` lists; a Kinetics CSV saved as ``.txt`` is a CSV).
    """
    path = Path(split)
    if path.suffix.lower() not in (".txt", ".csv") or not path.is_file():
        return False
    with open(path, "rb") as fh:
        for raw in fh:
            line = raw.decode("utf-8-sig", errors="replace").strip()
            if line:
                return "youtube_id" not in [h.strip().lower() for h in line.split(",")]
    return path.suffix.lower() == ".txt"  # empty: the reader for its extension says so


_PATH_THEN_LABEL = re.compile(
    r"^\s*(?P<path>.*?(?:"
    + "|".join(re.escape(e) for e in VIDEO_EXTENSIONS)
    + r"))\s+(?P<label>\S.*)$",
    re.IGNORECASE,
)


def split_path_label(line: str) -> list[str]:
    """``[path, label]`` of one list line (other lengths: not a ``path label`` line).

    A path ending in a video extension ends there and the label is all that follows, spaces
    included (``train/x.mp4 playing guitar``); otherwise ``path,label`` or the last word.
    """
    m = _PATH_THEN_LABEL.match(line)
    if m is not None:
        return [m.group("path"), m.group("label")]
    return line.rsplit(maxsplit=1) if "," not in line else line.rsplit(",", 1)


def list_classes(labels: list[str]) -> list[str]:
    """The classes a ``path label`` list's labels define: ``class_000``... up to the largest
    integer label, or the sorted names."""
    if all(lbl.lstrip("-").isdigit() for lbl in labels):
        return [f"class_{i:03d}" for i in range(max(map(int, labels), default=-1) + 1)]
    return sorted(set(labels))


def classes_of_lines(lines: list[str], csv_header: bool) -> list[str]:
    """The class list an annotation file of these lines defines (a Kinetics CSV with its
    header line, else a ``path label`` list), by the rules of the readers above."""
    if csv_header:
        rows = list(csv.reader(lines))
        header = [h.strip().lower() for h in rows[0]] if rows else []
        col = header.index("label") if "label" in header else None
        found = {r[col].strip() for r in rows[1:] if col is not None and len(r) > col}
        return sorted(found - {""})
    labels = []
    for line in lines:
        if line.strip() and not line.lstrip().startswith("#"):
            parts = split_path_label(line.rstrip("\r\n"))
            if len(parts) == 2:
                labels.append(parts[1].strip())
    return list_classes(labels)


def read_class_names_file(path: str | os.PathLike) -> list[str]:
    """Class names of a ``class_names.txt`` (one per line, label order; blank lines ignored)."""
    path = Path(path)
    names, seen = [], {}
    for lineno, line in enumerate(annotation_text(path).splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        _claim_once(seen, name, path, lineno, what="class name")
        names.append(name)
    if not names:
        raise AnnotationError(path, "no class names", fix="one class name per line, label order")
    return names


def path_label_list_classes(
    list_path: str | os.PathLike, video_root: str | os.PathLike
) -> list[str]:
    """The classes of a ``path label`` list: its ``class_names.txt`` neighbour when there is one,
    else those of the list itself (integer labels: ``class_000``...; names: sorted)."""
    names_file = Path(list_path).with_name("class_names.txt")
    if names_file.is_file():
        return read_class_names_file(names_file)
    return read_path_label_list(list_path, video_root).class_names  # checks every line


class _ListedFolders:
    """``os.path.exists`` for the many videos of a list, by listing each of their folders once.

    A path whose name its folder's listing (``os.scandir``, one per folder) holds as a plain
    entry exists; a name not there, or a symbolic link (its target may be gone), is looked up
    with ``os.path.exists``, so the answer is that of ``os.path.exists`` on any file system (a
    case-insensitive one too). 240k videos in 400 class folders, 3% absent: ~1k getdents and 9k
    stats (the absent ones), not 241k stats; on a local disk 0.36 -> 0.25 s CPU. A tree of
    symbolic links is still a stat each, plus the listings (0.35 -> 0.50 s there).
    """

    def __init__(self) -> None:
        self._names: dict[str, frozenset[str]] = {}

    def __call__(self, path: str) -> bool:
        head, sep, name = path.rpartition(os.sep)  # os.path.split's parts, faster
        folder = head or sep  # "/x": "/"; "x": "" (the working folder)
        names = self._names.get(folder)
        if names is None:
            names = self._names[folder] = self._list(folder)
        return name in names or os.path.exists(path)

    @staticmethod
    def _list(folder: str) -> frozenset[str]:
        try:
            with os.scandir(folder or ".") as entries:
                return frozenset(e.name for e in entries if not e.is_symlink())
        except OSError:  # absent, not a folder, unreadable: each path is looked up
            return frozenset()


def read_path_label_list(
    list_path: str | os.PathLike,
    video_root: str | os.PathLike,
    class_names: list[str] | None = None,
) -> SplitAnnotations:
    """A ``path label`` list (MMAction2 / PySlowFast); label an int or a class name."""
    path = Path(list_path)
    if not path.is_file():
        raise AnnotationError(path, "list file not found", fix="check the split path")
    entries = []
    for lineno, line in enumerate(annotation_text(path).splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = split_path_label(line)
        if len(parts) != 2:
            raise AnnotationError(
                path,
                f"expected 'path label', got {line!r}",
                line=lineno,
                fix="one video per line: <relative/path.mp4> <label>",
            )
        entries.append((lineno, parts[0].strip(), parts[1].strip()))
    if class_names is None:
        class_names = list_classes([lbl for _, _, lbl in entries])
    label_of = {name: i for i, name in enumerate(class_names)}
    records, missing, seen, present = [], [], {}, _ListedFolders()
    for lineno, rel, lbl in entries:
        if lbl.lstrip("-").isdigit() and lbl not in label_of:
            target = int(lbl)
            if not 0 <= target < len(class_names):
                raise AnnotationError(
                    path,
                    f"label {target} outside [0, {len(class_names)})",
                    line=lineno,
                    fix="fix the label or delete the line",
                )
        elif lbl in label_of:
            target = label_of[lbl]
        else:
            raise AnnotationError(
                path,
                f"unknown label {lbl!r}",
                line=lineno,
                fix="use the class names of the train list",
            )
        _claim_once(seen, rel, path, lineno, what="video")
        full = rel if os.path.isabs(rel) else os.path.join(video_root, rel)
        if present(full):
            records.append(VideoRecord(full, target, lineno))
        else:
            missing.append((lineno, rel))
    _log_missing(path, video_root, len(entries), missing)
    return SplitAnnotations(records, list(class_names), str(path), missing)


# --------------------------------------------------------------------------- UCF-101
_UCF_NAME = re.compile(r"v_(?P<cls>[A-Za-z]+)_g(?P<group>\d+)_c(?P<clip>\d+)")


def ucf_group(path: str) -> int:
    """The group number ``XX`` of ``v_<Class>_gXX_cYY.avi`` (the unit folds split by)."""
    m = _UCF_NAME.search(os.path.basename(path))
    if m is None:
        raise ValueError(f"not a UCF-101 file name: {path}")
    return int(m.group("group"))


def read_ucf_classes(split_dir: str | os.PathLike) -> list[str]:
    """Class names from ``classInd.txt`` ("1 ApplyEyeMakeup"), in label order."""
    path = Path(split_dir) / "classInd.txt"
    if not path.is_file():
        raise AnnotationError(
            path,
            "classInd.txt not found",
            fix="pass --data.annotation_dir DIR (check-data: --annotation-dir DIR; Python: "
            "annotation_dir=), the extracted ucfTrainTestlist folder",
        )
    names: dict[int, str] = {}
    for lineno, line in enumerate(annotation_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise AnnotationError(
                path,
                f"expected '<index> <ClassName>', got {line!r}",
                line=lineno,
                fix="restore the original classInd.txt",
            )
        idx = int(parts[0])
        if idx in names:
            raise AnnotationError(
                path, f"class index {idx} repeated", line=lineno, fix=f"delete line {lineno}"
            )
        names[idx] = parts[1]
    if sorted(names) != list(range(1, len(names) + 1)):
        raise AnnotationError(path, "class indices are not 1..N", fix="indices are 1-based")
    return [names[i] for i in range(1, len(names) + 1)]


def find_ucf_video_dir(data_root: str | os.PathLike) -> Path:
    root = Path(data_root)
    for name in ("UCF-101", "UCF101", "videos"):
        if (root / name).is_dir():
            return root / name
    return root


def ucf_split_file(split_dir: str | os.PathLike, split: str, fold: int) -> Path:
    if os.path.isfile(split):
        return Path(split)
    if fold not in (1, 2, 3):
        raise ValueError(f"UCF-101 fold must be 1, 2 or 3, got {fold}")
    kind = {"train": "trainlist", "val": "testlist", "test": "testlist"}.get(split)
    if kind is None:
        raise ValueError(f"UCF-101 split must be train, val or test (or a file), got {split!r}")
    return Path(split_dir) / f"{kind}{fold:02d}.txt"


def read_ucf_split(
    split_file: str | os.PathLike,
    video_dir: str | os.PathLike,
    class_names: list[str],
    allow_missing: bool = False,
) -> SplitAnnotations:
    """Videos of a UCF-101 train/test list (train lines carry a 1-based label, test lines none)."""
    path = Path(split_file)
    if not path.is_file():
        raise AnnotationError(
            path,
            "split file not found",
            fix="folds are 1-3: trainlist0{1,2,3}.txt / testlist0{1,2,3}.txt",
        )
    label_of = {name.lower(): i for i, name in enumerate(class_names)}
    records, missing, seen, raw, present = [], [], {}, {}, _ListedFolders()
    for lineno, line in enumerate(annotation_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        rel = parts[0].replace("\\", "/")
        name = None if "/" in rel else _UCF_NAME.search(rel)
        if "/" not in rel and name is None:
            raise AnnotationError(
                path,
                f"{rel!r} has neither a class folder nor a v_<Class>_gNN_cNN name",
                line=lineno,
                fix="write the line as <Class>/v_<Class>_gNN_cNN.avi, or delete it",
            )
        folder = rel.split("/")[0] if name is None else name.group("cls")
        if folder.lower() not in label_of:
            raise AnnotationError(
                path,
                f"class folder {folder!r} is not in classInd.txt",
                line=lineno,
                fix="use split files and classInd.txt of one download",
            )
        target = label_of[folder.lower()]
        if len(parts) >= 2 and (not parts[1].isdigit() or int(parts[1]) - 1 != target):
            raise AnnotationError(
                path,
                f"label {parts[1]} disagrees with folder {folder} (classInd gives {target + 1})",
                line=lineno,
                fix="labels in trainlists are 1-based indices of classInd.txt",
            )
        _claim_once(seen, rel, path, lineno, what="video")
        raw[lineno] = line
        full = os.path.join(video_dir, rel)
        if present(full):
            records.append(VideoRecord(full, target, lineno))
        else:
            missing.append((lineno, rel))
    if missing and not allow_missing:
        raise AnnotationError(
            path,
            f"{len(missing)} of {len(seen)} listed videos are absent under {video_dir} "
            f"(first: {missing[0][1]})",
            line=missing[0][0],
            fix="point --data.data_root at the folder holding UCF-101/, or write a cleaned split "
            "file with `a2video check-data --layout ucf101 ROOT --write-clean DIR` and pass "
            "--data.annotation_dir DIR",
        )
    _log_missing(path, video_dir, len(seen), missing)
    return SplitAnnotations(records, list(class_names), str(path), missing, None, raw)


def require_nonempty(split: SplitAnnotations, what: str) -> None:
    if not split.records:
        raise AnnotationError(
            split.source,
            f"{what}: no usable videos ({len(split.missing)} listed, all missing)"
            if split.missing
            else f"{what}: the split lists no videos",
            fix="check --data.data_root (videos) and --data.annotation_dir (annotation files)",
        )
