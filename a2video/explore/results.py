"""A finished test run, read back in seconds: ``scores.npz`` beside ``predictions.csv``.

The test stage (:class:`a2video.training.module.VideoClassifier`) writes one ``scores.npz`` per
run, so the notebooks and the figures of :mod:`a2video.explore.viz` need neither the checkpoint
nor the videos; frames are decoded only for the few videos a figure shows
(:func:`load_frames`).

What is kept, and why (Kinetics-400 test: N = 20k videos, V = 10×3 views, C = 400):

- ``probs`` (N, C) float16: the video-level softmax, averaged over the views (the paper's
  protocol, Chen et al. 2018, Section 4.1): every accuracy, confusion and top-k. 16 MB.
- ``view_topk_*`` (N, V, 5): each view's five best classes and scores: the single (centre) clip
  accuracy, how views disagree, per-view bars in the class browser. 12 MB.
- ``subset_pred`` (N, S): the top-1 of the standard view subsets (1, 2, 3, 5, 10 clips × 1 or
  all crops), computed from the full per-view softmax at test time: accuracy against the number
  of views, that of a real smaller test where its views are among those decoded (2 and 10 of 10
  clips; every subset of 3 or 5), an estimate from the nearest decoded clips elsewhere
  (:meth:`RunResults.approximate_views`). 0.4 MB.

Every view's full softmax (N, V, C) would be 480 MB in float16 for what these three give
exactly; it is not kept. The file is compressed (``np.savez_compressed``) and holds plain arrays
(no pickle): ``np.load`` reads it safely.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from a2video.atomic_write import replaced_atomically
from a2video.explore import predict

__all__ = [
    "FORMAT_VERSION",
    "RunResults",
    "describe_scores",
    "find_scores",
    "gallery_items",
    "load_frames",
    "load_run",
    "no_scores_message",
    "refuse_results_folder",
    "save_results",
    "scores_stage",
    "synthetic_run",
]

FORMAT_VERSION = 1
# The rule that placed the test's clips and crops (a2video.data.sampling.spread), kept as the
# array ``view_rule``: a file without it came from a test before that rule, whose view subsets
# (and centre view) were not a smaller test's views.
VIEW_RULE = "spread"
SCORES_FILE = "scores.npz"
STAGES = ("test", "predict", "synthetic")  # what may write a scores.npz (its ``stage``)


def _class_dtype(num_classes: int) -> type:
    return np.int16 if num_classes < 2**15 else np.int32


def save_results(
    path: str | os.PathLike,
    results: Any,
    class_names: Sequence[str] | None = None,
    video_names: Sequence[str] | None = None,
    *,
    stage: str | None = None,
    missing: int | None = None,
) -> Path:
    """Writes a test run's :class:`a2video.training.metrics.VideoResults` as ``scores.npz``.

    Args:
        path: The file to write.
        results: The deduplicated rows (``VideoAccumulator.compute()``).
        class_names: Names by class (numbers when None).
        video_names: Names (paths) by video ``index`` (the index when None).
        stage: What wrote it, one of :data:`STAGES`, kept as the array ``stage`` (read back by
            :func:`scores_stage`); None keeps none (then the per-view scores tell).
        missing: How many videos the split's annotations list that were not on disk (skipped
            before the run, so in no row), kept as the array ``missing``; None keeps none.

    Returns:
        The path written.
    """
    if stage is not None and stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    num_classes = results.probs.shape[1]
    cls = _class_dtype(num_classes)
    index = results.index.numpy().astype(np.int64)
    names = [
        str(video_names[i]) if video_names is not None and 0 <= i < len(video_names) else str(i)
        for i in index.tolist()
    ]
    k = min(5, num_classes)
    clip_scores, clip_classes = results.clip_probs.float().topk(k, dim=1)
    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION),
        "index": index,
        "label": results.label.numpy().astype(np.int32),
        "valid": results.valid.numpy().astype(bool),
        "probs": results.probs.float().numpy().astype(np.float16),
        "clip_topk_scores": clip_scores.numpy().astype(np.float16),
        "clip_topk_classes": clip_classes.numpy().astype(cls),
        "class_names": np.array(
            list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
        ),
        "video_names": np.array(names),
    }
    if stage is not None:
        arrays["stage"] = np.array(stage)
    if missing is not None:
        arrays["missing"] = np.array(int(missing), dtype=np.int64)
    if results.views is not None:  # a predict's too (it keeps no per-view scores)
        arrays["views"] = np.array(results.views, dtype=np.int32)
        arrays["view_rule"] = np.array(VIEW_RULE)
    if results.view_topk_scores is not None and results.views is not None:
        from a2video.training.metrics import view_subsets

        arrays["view_topk_scores"] = results.view_topk_scores.numpy().astype(np.float16)
        arrays["view_topk_classes"] = results.view_topk_classes.numpy().astype(cls)
        arrays["subset_pred"] = results.subset_pred.numpy().astype(np.int32)
        arrays["subsets"] = np.array(view_subsets(*results.views), dtype=np.int32)
    path = Path(path)
    # a test killed while writing leaves no partial file that, being the newest, would hide
    # the run's earlier scores; a file object: numpy adds no ".npz" of its own
    with replaced_atomically(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


@dataclass
class RunResults:
    """The per-video scores of a test run (see the module docstring for what is kept).

    Attributes:
        index: (N,) the videos' indices in the split's list.
        labels: (N,) true classes (-1 when unknown).
        valid: (N,) False where the video could not be decoded.
        probs: (N, C) softmax averaged over all views.
        clip_topk_scores: (N, k) the centre view's k best scores; ``clip_topk_classes`` theirs.
        class_names: Names by class.
        video_names: (N,) the videos' names (their paths, as the dataset lists them).
        view_topk_scores: (N, V, k) each view's best scores (None for single-view runs);
            ``view_topk_classes`` their classes.
        subset_pred: (N, S) top-1 of each view subset ``subsets[s] = (clips, crops)`` (-1: n/a).
        views: (clips, crops) decoded per video (a predict records them without per-view
            scores; None where the file does not say).
        source: The file read.
        stage: What wrote it (:func:`scores_stage`): ``"test"``, ``"predict"``, ``"synthetic"``.
        missing: Videos the split's annotations listed that were not on disk (in no row; None
            where the file does not say).
        view_rule: The rule that placed the views (:data:`VIEW_RULE`); None for a file written
            before a2video recorded it, whose subsets are all estimates
            (:meth:`approximate_views`).
    """

    index: Tensor
    labels: Tensor
    valid: Tensor
    probs: Tensor
    clip_topk_scores: Tensor
    clip_topk_classes: Tensor
    class_names: list[str]
    video_names: list[str]
    view_topk_scores: Tensor | None = None
    view_topk_classes: Tensor | None = None
    subset_pred: Tensor | None = None
    subsets: list[tuple[int, int]] = field(default_factory=list)
    views: tuple[int, int] | None = None
    source: Path | None = None
    stage: str | None = None
    missing: int | None = None
    view_rule: str | None = VIEW_RULE
    # where an older run's relative video paths were found (see video_file)
    _video_base: Path | None = field(default=None, init=False, repr=False, compare=False)
    _said_not_found: bool = field(default=False, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.index.numel())

    def video_file(self, row: int) -> str:
        """The file of video ``row`` to decode: its recorded path (absolute since the test
        stage records them so). An older run recorded paths relative to the folder the test ran
        in; one not found from here is looked for relative to the folders above the run's
        ``scores.npz`` (the first that holds it is used for the others too)."""
        name = self.video_names[row]
        if os.path.isabs(name) or os.path.exists(name) or self.source is None:
            return name
        if self._video_base is not None and (self._video_base / name).exists():
            return os.fspath(self._video_base / name)
        folder = Path(self.source).absolute().parent
        for base in (folder, *folder.parents):
            if (base / name).exists():
                self._video_base = base
                return os.fspath(base / name)
        return name

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def scored(self) -> Tensor:
        """(N,) bool: valid videos with a known label (what the accuracies count)."""
        return self.valid & (self.labels >= 0)

    def preds(self) -> Tensor:
        """(N,) top-1 of the view-averaged softmax."""
        return self.probs.argmax(1)

    def topk_correct(self, k: int = 1, *, clip: bool = False) -> Tensor:
        """(N,) bool: the label is in the top-k of the video (or the centre ``clip``) scores."""
        if clip:
            classes = self.clip_topk_classes[:, : min(k, self.clip_topk_classes.shape[1])]
        else:
            classes = self.probs.topk(min(k, self.num_classes), dim=1).indices
        return (classes == self.labels[:, None]).any(1)

    def accuracy(self, k: int = 1, *, clip: bool = False) -> float:
        """Top-k accuracy over the scored videos (``clip``: the centre view alone, a 1×1 test's
        view unless :meth:`approximate_views` lists ``(1, 1)``)."""
        use = self.scored()
        return float(self.topk_correct(k, clip=clip)[use].float().mean()) if use.any() else 0.0

    def confusion(self) -> Tensor:
        """(C, C) counts over the scored videos, ``cm[true, predicted]``."""
        use = self.scored()
        return predict.confusion_matrix(self.labels[use], self.preds()[use], self.num_classes)

    def per_class_accuracy(self) -> Tensor:
        """(C,) top-1 accuracy per true class, NaN for a class with no scored video."""
        return predict.per_class_accuracy(self.confusion())

    def clip_vs_video(self) -> dict[str, float]:
        """Top-1 and top-5 of the centre clip alone and of all views averaged."""
        return {
            "clip top-1": self.accuracy(1, clip=True),
            "clip top-5": self.accuracy(5, clip=True),
            "video top-1": self.accuracy(1),
            "video top-5": self.accuracy(5),
        }

    def accuracy_by_views(self, *, exact_only: bool = False) -> dict[tuple[int, int], float]:
        """``{(clips, crops): top-1}`` of the view subsets kept at test time, and of all views.

        Each subset's top-1 was taken at test time from the mean of its views' full softmax (see
        :func:`a2video.training.views.view_subset` for which views). It is what a real
        ``clips × crops`` test scores (up to floating-point noise of the forward) where
        :func:`~a2video.training.views.subset_is_exact` holds: the subset's views are that
        test's, frame for frame and pixel for pixel (of 10×3: 2 and 10 clips; of 3×3 or 5×3:
        every subset). The others, :meth:`approximate_views` (1, 3, 5 clips of 10), average the
        decoded clips nearest where that test samples: estimates of its score.

        Args:
            exact_only: leave the estimates out.
        """
        use = self.scored()
        out: dict[tuple[int, int], float] = {}
        if self.subset_pred is not None and use.any():
            for column, (clips, crops) in enumerate(self.subsets):
                if clips and not (exact_only and (clips, crops) in self.approximate_views()):
                    hit = self.subset_pred[use, column] == self.labels[use]
                    out[(clips, crops)] = float(hit.float().mean())
        if self.views is not None and use.any():
            out[tuple(self.views)] = self.accuracy(1)
        return dict(sorted(out.items()))

    def approximate_views(self) -> list[tuple[int, int]]:
        """The kept view subsets whose views are not those of a real ``clips × crops`` test (the
        decoded clips nearest to them instead), so their accuracies only estimate its; ``(1, 1)``
        among them means the centre view (``accuracy(clip=True)``) is not a 1×1 test's either.
        Empty for a single-view run and whenever every count divides evenly (3×3, 5×3). A file
        from before the views' rule was recorded (``view_rule`` None): every subset but all the
        views, since that test placed its middle crop and middle clip by another rounding."""
        from a2video.training.views import subset_is_exact

        if self.views is None:
            return []
        return sorted(
            (clips, crops)
            for clips, crops in self.subsets
            if clips
            and (clips, crops) != tuple(self.views)
            and (self.view_rule is None or not subset_is_exact(*self.views, clips, crops))
        )

    def mistakes(self, n: int = 8, *, true_class: int | None = None) -> list[int]:
        """Rows of wrong top-1 predictions, the most confident first (highest predicted score).

        Args:
            n: How many rows.
            true_class: Only videos of this class.
        """
        use = self.scored() & (self.preds() != self.labels)
        if true_class is not None:
            use &= self.labels == true_class
        confidence = torch.where(use, self.probs.max(1).values, -1.0)
        order = confidence.argsort(descending=True, stable=True)
        return [r for r in order[: int(use.sum())].tolist()][:n]

    def rows_of_class(self, c: int, n: int | None = None) -> list[int]:
        """Rows of the scored videos of class ``c``, highest true-class score first."""
        rows = torch.nonzero(self.scored() & (self.labels == c)).flatten()
        order = self.probs[rows, c].argsort(descending=True, stable=True)
        return rows[order].tolist()[:n]

    def class_index(self, name_or_index: str | int) -> int:
        """A class by name or index; a string is a class name first, else, all digits, an
        index (``--class 3`` of the report; a class named ``"3"`` is that class).

        Raises:
            KeyError: no such class (one line naming the close names, else the first ones).
        """
        last = self.num_classes - 1
        if isinstance(name_or_index, int | np.integer):
            if not 0 <= int(name_or_index) <= last:
                raise KeyError(f"class {name_or_index} is not in 0..{last}")
            return int(name_or_index)
        name = str(name_or_index)
        if name in self.class_names:
            return self.class_names.index(name)
        if name.isascii() and name.isdigit() and int(name) <= last:
            return int(name)
        import difflib

        near = difflib.get_close_matches(name, self.class_names, n=3)
        hint = (
            f"did you mean {', '.join(map(repr, near))}?"
            if near  # else the names' form: none is alike
            else f"its classes begin {', '.join(map(repr, self.class_names[:3]))}"
        )
        raise KeyError(f"no class {name!r}: not a class name, nor an index in 0..{last}; {hint}")


def _not_scores(path: Path, err: BaseException) -> str:
    """Why ``path`` is not a test's ``scores.npz``, and the fix, for the files users pass."""
    run = "pass the run folder that holds its scores.npz, or that scores.npz"
    if path.suffix.lower() == ".csv":
        return f"a CSV (a predictions.csv?), not a test's scores.npz; {run}"
    members: list[str] = []
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
    is_torch = any(m.endswith("data.pkl") for m in members)  # torch.save's zip holds one
    if is_torch or path.suffix.lower() in (".ckpt", ".pt", ".pth"):
        return (
            "a checkpoint, not a test's scores: test it first (python train.py test --config "
            f"CONFIG --ckpt_path {path}), then {run}"
        )
    return f"not a scores.npz written by a2video's test stage ({err}); re-run the test"


def _stage_of(arrays: Any) -> str:
    """The stage of a loaded npz (:func:`scores_stage`); ``arrays`` has ``.files`` or is a dict."""
    keys = set(arrays.files if hasattr(arrays, "files") else arrays)
    if "stage" in keys:
        recorded = str(arrays["stage"])
        if recorded in STAGES:
            return recorded
    # Only the test stage keeps every view's top-k (predict keeps the averaged softmax alone).
    return "test" if "view_topk_scores" in keys else "predict"


def scores_stage(path: str | os.PathLike) -> str | None:
    """What wrote a ``scores.npz``: ``"test"``, ``"predict"`` or ``"synthetic"``.

    The ``stage`` array where the file records one (:func:`save_results`); otherwise ``"test"``
    where it holds per-view scores (only the test stage keeps them; a test whose videos had
    differing view counts keeps none and reads as ``"predict"``), else ``"predict"``. None when
    the file cannot be read.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            return _stage_of(z)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def find_scores(run: str | os.PathLike) -> Path | None:
    """``run`` itself if a file, else the ``scores.npz`` under the folder ``run`` to read: the
    newest a test wrote (or :func:`synthetic_run`), else the newest of any (a predict's).

    After ``train.py test`` then ``train.py predict`` the run folder holds both; the predict's
    (newer, without per-view scores) is not the test run the figures describe. See
    :func:`scores_stage` for how the stage is told.
    """
    run = Path(run)
    if run.is_file():
        return run
    found = sorted(run.rglob(SCORES_FILE), key=lambda p: p.stat().st_mtime) if run.is_dir() else []
    tested = [p for p in found if scores_stage(p) in ("test", "synthetic")]
    return (tested or found)[-1] if found else None


def describe_scores(run: RunResults, asked: str | os.PathLike | None = None) -> str:
    """One line saying which file ``run`` was read from and what wrote it, e.g. ``reading
    runs/x/version_3/scores.npz (test, 30 videos, 10x3 views)``; for a folder ``asked`` holding
    several ``scores.npz``, how many and why this one."""
    what = f"{run.stage}, {len(run)} videos" + (
        f", {run.views[0]}x{run.views[1]} views" if run.views else ""
    )
    line = f"reading {run.source} ({what})"
    if asked is not None and Path(asked).is_dir():
        others = len(list(Path(asked).rglob(SCORES_FILE))) - 1
        if others > 0:
            kind = "test output" if run.stage in ("test", "synthetic") else "output (no test's)"
            line += f": the newest {kind} of {others + 1} {SCORES_FILE} under {os.fspath(asked)}"
    if run.stage == "predict":
        line += "; a predict's scores (no per-view accuracies): `train.py test` writes a test's"
    return line


def no_scores_message(run: str | os.PathLike, option: str = "") -> str:
    """One line for a ``run`` where :func:`find_scores` finds nothing: a path that does not
    exist (``no such file or folder``), else a folder without a ``scores.npz`` and the command
    that writes one (for a run's ``checkpoints/`` folder, the run folder above it that holds
    one). ``option`` is how the caller's user passes the run (e.g. ``--run``), if not as an
    argument."""
    run = Path(run)
    given = f" with {option}" if option else ""
    if not run.exists():
        return (
            f"{os.fspath(run)}: no such file or folder; pass a run folder (a test's "
            f"default_root_dir, e.g. runs/demo/finetune) or its {SCORES_FILE}{given}"
        )
    if run.name == "checkpoints" and find_scores(run.parent) is not None:
        return (
            f"{os.fspath(run)}: no {SCORES_FILE}; the run folder above it holds one: pass "
            f"{os.fspath(run.parent)}{given}"
        )
    return (
        f"{os.fspath(run)}: no {SCORES_FILE}; `python train.py test --config CONFIG --ckpt_path "
        f"CKPT` writes one in its run folder, next to predictions.csv: pass that folder{given}"
    )


def load_run(run: str | os.PathLike) -> RunResults:
    """Reads the ``scores.npz`` a test run wrote (the file, or the newest under a folder).

    Raises:
        FileNotFoundError: no such file or folder, or a folder without one (the message says
            how to make one).
        ValueError: the file is not one (corrupt, another format), in one line.
    """
    path = find_scores(run)
    if path is None:
        raise FileNotFoundError(no_scores_message(run))
    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        version = int(a["format_version"])
        missing = {"index", "label", "valid", "probs", "class_names", "video_names"} - set(a)
        stage = _stage_of(a)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: {_not_scores(Path(path), err)}") from None
    if version > FORMAT_VERSION or missing:
        raise ValueError(
            f"{path}: scores.npz format {version} (this a2video reads {FORMAT_VERSION}"
            + (f", and lacks {sorted(missing)}" if missing else "")
            + "): update a2video or re-run the test"
        )
    t = {k: torch.from_numpy(v) for k, v in a.items() if v.dtype.kind in "biuf" and v.ndim}
    has_views = "view_topk_scores" in a
    return RunResults(
        index=t["index"].long(),
        labels=t["label"].long(),
        valid=t["valid"].bool(),
        probs=t["probs"].float(),
        clip_topk_scores=t["clip_topk_scores"].float(),
        clip_topk_classes=t["clip_topk_classes"].long(),
        class_names=a["class_names"].tolist(),
        video_names=a["video_names"].tolist(),
        view_topk_scores=t["view_topk_scores"].float() if has_views else None,
        view_topk_classes=t["view_topk_classes"].long() if has_views else None,
        subset_pred=t["subset_pred"].long() if has_views else None,
        subsets=[tuple(map(int, s)) for s in a["subsets"]] if has_views else [],
        views=tuple(int(x) for x in a["views"]) if "views" in a else None,
        source=path,
        stage=stage,
        missing=int(a["missing"]) if "missing" in a else None,
        view_rule=str(a["view_rule"]) if "view_rule" in a else None,
    )


def load_frames(
    path: str | os.PathLike, count: int = 8, *, size: int = 128, decoder: str = "auto"
) -> np.ndarray:
    """``count`` frames spread over a video, short side resized to ``size`` (for display).

    Returns:
        uint8 (count, H, W, 3).

    Raises:
        a2video.data.video.VideoDecodeError: the file cannot be decoded.
    """
    import torch.nn.functional as F

    from a2video.data.video import get_decoder
    from a2video.explore.viz import frame_indices

    reader = get_decoder(decoder).open(os.fspath(path))
    try:
        frames = reader.get_frames(frame_indices(reader.num_frames, count))  # (T, H, W, 3)
    finally:
        reader.close()
    x = torch.as_tensor(frames).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    scale = size / min(x.shape[2:])
    out = (round(x.shape[2] * scale), round(x.shape[3] * scale))
    x = F.interpolate(x, size=out, mode="bilinear", align_corners=False, antialias=scale < 1)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def gallery_items(
    run: RunResults,
    rows: Sequence[int],
    *,
    num_frames: int = 5,
    frames_of: Any = None,
) -> list[dict[str, Any]]:
    """The rows of :func:`a2video.explore.viz.plot_mistake_gallery` for some videos of a run:
    frames decoded for those videos only (a file that cannot be read shows why instead).

    Args:
        run: The run.
        rows: Its rows to show.
        num_frames: Frames per video.
        frames_of: ``path -> (T, H, W, 3) uint8`` (default :func:`load_frames`).
    """
    from a2video.data.video import VideoDecodeError

    frames_of = frames_of or (lambda path: load_frames(path, num_frames))
    items = []
    for row in rows:
        name = run.video_names[row]
        label = int(run.labels[row])
        scores = run.probs[row].numpy()
        pred = int(scores.argmax())
        item: dict[str, Any] = {"scores": scores, "label": label if label >= 0 else None}
        path = run.video_file(row)
        try:
            item["frames"] = frames_of(path)
        except (OSError, VideoDecodeError) as err:
            item["frames"], item["missing"] = None, f"no frames: {err}"[:90]
            if not os.path.exists(path):
                _say_not_found(run, path)
        truth = run.class_names[label] if label >= 0 else "?"
        short = name if len(name) <= 40 else "…" + name[-39:]
        item["title"] = (
            f"{short}   true: {truth}  |  predicted: {run.class_names[pred]} ({scores[pred]:.2f})"
        )
        items.append(item)
    return items


def _say_not_found(run: RunResults, path: str) -> None:
    """Once per run: a video it names is not on this machine, and why that may be."""
    if run._said_not_found:
        return
    run._said_not_found = True
    import warnings

    why = (
        f"{run.source} records it relative to the folder its test ran in (an older a2video), "
        "and neither the current folder nor any folder above the run holds it: run from that "
        "folder"
        if not os.path.isabs(path)
        else "it was moved or deleted, or the run was made on another machine"
    )
    warnings.warn(f"a2video: no frames for videos such as {path}: {why}", stacklevel=3)


# ---------------------------------------------------------------- a synthetic run at scale

_VERBS = ("playing", "riding", "making", "cleaning", "throwing", "catching", "washing", "juggling")
_OBJECTS = (
    "bagpipes", "a mechanical bull", "snowflakes", "the windows", "a discus", "a frisbee",
    "dishes", "soccer ball", "tea", "a camel", "paper airplanes", "ice",
    "hand-held bells", "the dog's ears", "a unicycle", "cake",
)  # fmt: skip


def synthetic_class_names(num_classes: int) -> list[str]:
    """Kinetics-like names (two words to about 30 characters), unique."""
    names = []
    for c in range(num_classes):
        verb = _VERBS[c % len(_VERBS)]
        obj = _OBJECTS[(c // len(_VERBS)) % len(_OBJECTS)]
        round_ = c // (len(_VERBS) * len(_OBJECTS))
        names.append(f"{verb} {obj}" + (f" {round_ + 1}" if round_ else ""))
    return names


def synthetic_run(
    out: str | os.PathLike,
    *,
    num_classes: int = 400,
    videos: int = 2000,
    clips: int = 10,
    crops: int = 3,
    video_files: Sequence[str] = (),
    seed: int = 0,
) -> Path:
    """Writes the ``scores.npz`` of a made-up test run with structured scores, through the same
    accumulator and writer as a real test.

    Classes differ in difficulty (accuracy spread from about 0.1 to 0.95), each is confused
    mostly with two "sibling" classes, and every view adds noise, so more views score higher.

    Args:
        out: The run folder (``out/scores.npz``): a new or empty folder, or one holding only an
            earlier made-up run (:func:`refuse_results_folder`: never a real run's folder).
        num_classes: C.
        videos: N (labels round-robin over the classes).
        clips, crops: Views per video.
        video_files: Files the videos' names cycle through, so figures have frames to show.
        seed: Random seed.

    Returns:
        The file written.

    Raises:
        ValueError: ``out`` is a file or holds a run's results (in one line).
    """
    refuse_results_folder(out)
    from a2video.data.sampling import centre_view
    from a2video.training.metrics import VideoAccumulator

    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(videos) % num_classes
    margin = torch.linspace(-0.5, 3.0, num_classes)[torch.randperm(num_classes, generator=g)]
    siblings = torch.randint(num_classes, (num_classes, 2), generator=g)
    acc = VideoAccumulator(num_classes)
    views = clips * crops
    for start in range(0, videos, 250):
        y = labels[start : start + 250]
        b = y.numel()
        base = torch.randn(b, 1, num_classes, generator=g) * 0.5
        base[torch.arange(b), 0, y] += margin[y] + 1.5 + torch.randn(b, generator=g)
        base[torch.arange(b)[:, None], 0, siblings[y]] += 1.0 + torch.rand(b, 2, generator=g) * 2
        logits = 2.0 * (base + torch.randn(b, views, num_classes, generator=g) * 0.9)
        view_probs = logits.softmax(2)  # (B, V, C)
        index = torch.arange(start, start + b)
        centre = centre_view(clips, crops)
        valid = (index % 997) != 5  # one unreadable video in about a thousand
        acc.update(index, y, view_probs.mean(1), view_probs[:, centre], valid)
        acc.update_views(index, view_probs, crops)
    files = list(video_files) or [f"video_{i:05d}.mp4" for i in range(videos)]
    names = [files[i % len(files)] for i in range(videos)]
    path = Path(out) / SCORES_FILE
    return save_results(
        path, acc.compute(), synthetic_class_names(num_classes), names, stage="synthetic"
    )


_RUN_FILES = ("predictions.csv", "*.ckpt", "confusion_matrix.png", "hparams.yaml", "config.yaml")


def refuse_results_folder(out: str | os.PathLike) -> None:
    """Refuses a folder for a made-up run (:func:`synthetic_run`) that a real run's results are
    in, or would be read with it: its ``scores.npz`` would hide theirs from :func:`load_run`,
    the report and the notebooks. A ``scores.npz`` of an earlier made-up run may be replaced.

    Raises:
        ValueError: ``out`` is a file, or a folder under which a ``scores.npz`` not written by
            :func:`synthetic_run`, a ``predictions.csv``, a checkpoint or a run's config lies.
    """
    out = Path(out)
    fix = "give a new folder for the made-up run"
    if out.exists() and not out.is_dir():
        raise ValueError(
            f"{out}: a file, not a folder; a made-up run is written as a folder: {fix}"
        )
    if not out.is_dir():
        return
    import fnmatch

    for folder, _, files in os.walk(out):
        for name in sorted(files):
            path = Path(folder) / name
            if name == SCORES_FILE and scores_stage(path) == "synthetic":
                continue
            if name == SCORES_FILE or any(fnmatch.fnmatch(name, pat) for pat in _RUN_FILES):
                raise ValueError(
                    f"{out}: holds a run's results ({path}); a made-up scores.npz there would be "
                    f"read instead of them: {fix}"
                )
