"""Inference with a trained checkpoint: load it, predict video files or a test set from several
views, and the accuracy analyses the notebooks draw.

A checkpoint written by training carries what inference needs (``checkpoint["a2video"]``: arch,
arch options, class names, clip spec, metrics), so :func:`load_predictor` rebuilds the network
with :func:`a2video.models.build_model` and needs no config file.

Multi-view testing follows the paper's protocol (Chen et al., NeurIPS 2018, Section 4.1, after
Wang et al.'s non-local networks): several clips spread over the video, several spatial crops of
each, softmax scores averaged over the views. Views are ordered clip-major (``c * crops + s``),
as in the test batches of :mod:`a2video.data`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from a2video.data.datasets import ClipSpec
from a2video.devices import resolve_device  # re-exported
from a2video.training.views import per_view_probs, view_subset  # view_subset: re-exported

__all__ = [
    "DatasetPredictions",
    "Predictor",
    "VideoPrediction",
    "accuracy_by_views",
    "centre_clip",
    "confusion_matrix",
    "load_predictor",
    "most_confused_pairs",
    "parse_views",
    "per_class_accuracy",
    "predict_loader",
    "predict_videos",
    "resolve_device",
    "view_subset",
]

# Builder options that fetch initial weights: irrelevant (and possibly unreachable paths) when the
# checkpoint supplies every weight.
_WEIGHT_OPTIONS = ("pretrained_2d", "pretrained_ptv", "inflate")


# ---------------------------------------------------------------- loading


@dataclass
class Predictor:
    """A network ready for inference and what it needs to read a clip.

    Attributes:
        model: The network in eval mode, on ``device``.
        class_names: Names indexed by class.
        clip_spec: the training clips and test views (the checkpoint's typed
            :class:`a2video.data.ClipSpec`).
        meta: The checkpoint's ``a2video`` metadata (arch, options, metrics, …).
        device: Where the model runs.
        datamodule_class: Name of the DataModule class the checkpoint was trained with (in
            :mod:`a2video.data`), when the checkpoint records it.
        datamodule_hparams: That DataModule's constructor arguments.
        run_data_root: The data root of the run's saved config, absolute where the folder
            existed when the run started (None where the checkpoint keeps no config).
    """

    model: nn.Module
    class_names: list[str]
    clip_spec: ClipSpec
    meta: dict[str, Any] = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    datamodule_class: str | None = None
    datamodule_hparams: dict[str, Any] = field(default_factory=dict)
    run_data_root: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        """(3, T, H, W) of one view."""
        spec = self.clip_spec
        return (3, spec.frames, spec.crop_size, spec.crop_size)

    def spec(self, clips: int | None = None, crops: int | None = None) -> ClipSpec:
        """The checkpoint's clip spec, with the number of test clips and crops optionally
        replaced."""
        values = {"num_clips": clips, "num_crops": crops}
        return dataclasses.replace(
            self.clip_spec, **{k: v for k, v in values.items() if v is not None}
        )

    def recorded_data_root(self) -> str | None:
        """The dataset root the checkpoint was trained on, as the run found it.

        The DataModule's argument is kept as typed; a relative one named a folder of the
        directory the run started in, not of this process's (the notebooks move to the
        repository root), so the run's saved config's absolute path is used where that folder
        exists; otherwise (moved, another machine) the argument as typed.
        """
        given = self.datamodule_hparams.get("data_root")
        absolute = self.run_data_root
        if given is not None and os.path.isabs(os.fspath(given)):
            return os.fspath(given)
        if absolute and os.path.isabs(absolute) and os.path.isdir(absolute):
            return absolute
        return None if given is None else os.fspath(given)

    def datamodule(self, data_root: str | os.PathLike | None = None, **overrides: Any):
        """The DataModule the checkpoint was trained with, rebuilt from its recorded arguments.

        Args:
            data_root: Dataset root (default: the recorded one, :meth:`recorded_data_root`).
            **overrides: Constructor arguments to replace (``num_workers``, ``num_clips``, …).

        Returns:
            A :class:`a2video.data.VideoDataModule` (Kinetics when the checkpoint names none).
        """
        import inspect as pyinspect

        import a2video.data as data

        cls = getattr(data, self.datamodule_class or "KineticsDataModule", None)
        if not (isinstance(cls, type) and issubclass(cls, data.VideoDataModule)):
            cls = data.KineticsDataModule
        accepted = {
            name
            for klass in cls.__mro__
            if klass.__init__ is not object.__init__
            for name in pyinspect.signature(klass.__init__).parameters
        }
        kwargs = {k: v for k, v in self.datamodule_hparams.items() if k in accepted}
        spec = self.spec()
        for key in ("frames", "stride", "crop_size", "test_scale", "mean", "std"):
            kwargs.setdefault(key, getattr(spec, key))
        recorded = self.recorded_data_root()
        if data_root is not None or recorded is not None:
            kwargs["data_root"] = os.fspath(data_root) if data_root is not None else recorded
        kwargs["normalize_on_device"] = False  # its loaders are iterated directly: float clips
        kwargs.update(overrides)
        if "data_root" not in kwargs:
            raise ValueError("the checkpoint records no data_root: pass data_root=")
        return cls(**kwargs)

    @torch.no_grad()
    def view_scores(self, views: Tensor, batch_size: int = 16) -> Tensor:
        """Softmax scores of each view (:func:`a2video.training.views.per_view_probs`).

        Args:
            views: (V, 3, T, H, W) normalised clips (on any device: moved chunk by chunk).
            batch_size: Views per forward pass.

        Returns:
            (V, num_classes) float32 probabilities, on the CPU.
        """
        return per_view_probs(self.model, views[None], batch_size, self.device)[0].cpu()


def load_predictor(
    ckpt: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    unsafe: bool = False,
) -> Predictor:
    """Loads a training checkpoint for inference.

    Args:
        ckpt: A ``.ckpt`` written by ``train.py`` / ``finetune_ucf.py``.
        device: Where to run the network.
        unsafe: Allow pickled Python objects in the file (trusted files only).

    Returns:
        The :class:`Predictor`.

    Raises:
        a2video.training.checkpoint.CheckpointError: the file is missing, corrupt, or not an a2video
            checkpoint.
        ValueError: ``device`` is not a device of this machine (:func:`resolve_device`), or the
            checkpoint's arch is not registered.
    """
    from a2video.models import build_model, load_weights
    from a2video.training.checkpoint import CheckpointError, load_checkpoint, saved_config

    device = resolve_device(device)  # before the (slow) load
    checkpoint = load_checkpoint(ckpt, unsafe=unsafe, map_location="cpu")
    meta = checkpoint.get("a2video")
    if not isinstance(meta, dict) or "arch" not in meta:
        raise CheckpointError(
            f"{os.fspath(ckpt)}: no 'a2video' metadata (arch, classes, clip spec): it was not "
            "written by a2video's training; pass a checkpoint from train.py or finetune_ucf.py."
        )
    options = {
        k: v for k, v in (meta.get("arch_options") or {}).items() if k not in _WEIGHT_OPTIONS
    }
    num_classes = int(meta["num_classes"])
    model = build_model(meta["arch"], num_classes=num_classes, **options)
    load_weights(model, checkpoint, kind="a2video")  # every tensor, head included
    model.to(device).eval()
    names = list(meta.get("class_names") or [str(i) for i in range(num_classes)])
    # Lightning stores the DataModule's state under its class name, its arguments apart.
    dm_class = next((k for k in checkpoint if k.endswith("DataModule")), None)
    data = saved_config(checkpoint).get("data")
    run_root = data.get("data_root") if isinstance(data, dict) else None
    return Predictor(
        model=model,
        class_names=names,
        clip_spec=ClipSpec.from_dict(meta["clip_spec"]),
        meta=dict(meta),
        device=device,
        datamodule_class=dm_class,
        datamodule_hparams=dict(checkpoint.get("datamodule_hyper_parameters") or {}),
        run_data_root=run_root if isinstance(run_root, str) else None,
    )


def parse_views(spec: str) -> tuple[int, int]:
    """``"10x3"`` -> (10 clips, 3 crops); ``"1"`` -> (1, 1).

    Raises:
        ValueError: not ``CLIPS[xCROPS]`` with positive integers, or crops not 1 or 3.
    """
    parts = spec.lower().replace("×", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values.append(1)
    if len(values) != 2 or min(values) < 1 or values[1] not in (1, 3):
        raise ValueError(f"views must be CLIPSxCROPS with crops 1 or 3, e.g. 10x3; got {spec!r}")
    return values[0], values[1]


# ---------------------------------------------------------------- video files


@dataclass
class VideoPrediction:
    """What :func:`predict_videos` says about one file.

    Attributes:
        path: The file as given.
        topk: ``(class name, score)`` pairs, best first; empty when the file was unreadable.
        scores: (K,) mean softmax over the views; None when unreadable.
        views: Views averaged (clips · crops).
        error: Why the file could not be read (None when it was).
        frame_step: The file keeps every ``frame_step``-th frame of its original (a video of a
            prepared copy, see :func:`a2video.data.prepare.video_frame_step`); 1 otherwise.
        prepared_root: That prepared copy's root (None outside one).
    """

    path: str
    topk: list[tuple[str, float]] = field(default_factory=list)
    scores: Tensor | None = None
    views: int = 0
    error: str | None = None
    frame_step: int = 1
    prepared_root: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def label(self) -> str | None:
        return self.topk[0][0] if self.topk else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``path``, ``ok``, ``error``, ``views``, ``frame_step``, ``label``,
        ``topk``."""
        return {
            "path": self.path,
            "ok": self.ok,
            "error": self.error,
            "views": self.views,
            "frame_step": self.frame_step,
            "label": self.label,
            "topk": [{"label": name, "score": round(score, 6)} for name, score in self.topk],
        }


@torch.no_grad()
def predict_videos(
    predictor: Predictor,
    paths: Sequence[str | os.PathLike],
    *,
    clips: int = 10,
    crops: int = 3,
    topk: int = 5,
    decoder: str = "auto",
    batch_size: int = 16,
    progress: bool = False,
) -> list[VideoPrediction]:
    """Top-k classes of each file from ``clips × crops`` views (the test set's pipeline).

    Each file is decoded once (:class:`a2video.data.datasets.VideoClipDataset` in test mode);
    a file the decoder cannot read gives a :class:`VideoPrediction` with ``error`` set, and the
    others are still predicted. A file inside a prepared copy (``a2video_prepared.json`` in a
    folder above it) is read with that copy's ``frame_step``, as the DataModules read it, so
    its clips span the checkpoint's stride in original frames.

    Args:
        predictor: From :func:`load_predictor`.
        paths: Video files.
        clips: Clips spread over each video.
        crops: Spatial crops per clip (1: centre; 3: along the long side).
        topk: Classes listed per video.
        decoder: Decoder name (``auto``, ``decord``, ``pyav``, ``torchcodec``).
        batch_size: Views per forward pass.
        progress: A tqdm progress bar over the files, on stderr.

    Returns:
        One :class:`VideoPrediction` per path, in order.
    """
    from tqdm import tqdm

    from a2video.data.annotations import VideoRecord
    from a2video.data.datasets import VideoClipDataset
    from a2video.data.prepare import video_frame_step
    from a2video.data.video import check_decoder

    check_decoder(decoder)  # one line for an unknown or uninstalled decoder, before any file
    spec = predictor.spec(clips, crops)
    records = [VideoRecord(path=os.fspath(p), label=-1) for p in paths]
    datasets: dict[int, VideoClipDataset] = {}  # one per frame_step met
    results = []
    bar = tqdm(paths, desc="predict", unit="video", disable=not progress)
    for i, path in enumerate(bar):
        step, root = video_frame_step(path)
        if step not in datasets:
            datasets[step] = VideoClipDataset(
                records, "test", spec, decoder=decoder, frame_step=step
            )
        where = {"frame_step": step, "prepared_root": None if root is None else str(root)}
        sample = datasets[step][(i, 0)]
        if not sample["valid"]:
            reason = sample.get("failed_reason") or "unreadable"
            results.append(
                VideoPrediction(os.fspath(path), error=f"cannot decode: {reason}", **where)
            )
            continue
        scores = predictor.view_scores(sample["video"], batch_size).mean(0)  # (V, K) -> (K,)
        values, classes = scores.topk(min(topk, scores.numel()))
        results.append(
            VideoPrediction(
                os.fspath(path),
                topk=[
                    (predictor.class_names[c], float(v))
                    for v, c in zip(values.tolist(), classes.tolist(), strict=True)
                ],
                scores=scores,
                views=spec.num_views,
                **where,
            )
        )
    return results


def centre_clip(
    predictor: Predictor, path: str | os.PathLike, decoder: str = "auto"
) -> tuple[Tensor, Tensor]:
    """The centre clip of a video as the network sees it (short side resized, centre crop).

    Returns:
        ``(video, frames)``: the normalised clip (3, T, S, S) to feed the network and the same
        clip as displayable uint8 frames (T, S, S, 3).

    Raises:
        a2video.data.video.VideoDecodeError: the file cannot be decoded.
    """
    from a2video.data.annotations import VideoRecord
    from a2video.data.datasets import VideoClipDataset
    from a2video.data.prepare import video_frame_step
    from a2video.data.video import VideoDecodeError, check_decoder

    check_decoder(decoder)
    spec = predictor.spec()
    record = VideoRecord(path=os.fspath(path), label=-1)
    step, _ = video_frame_step(path)  # a prepared copy's videos: as the DataModules read them
    sample = VideoClipDataset([record], "val", spec, decoder=decoder, frame_step=step)[(0, 0)]
    if not sample["valid"]:
        raise VideoDecodeError(record.path, sample.get("failed_reason") or "unreadable")
    video = sample["video"]  # (3, T, S, S) normalised
    mean = torch.tensor(spec.mean).view(3, 1, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1, 1)
    frames = (video * std + mean).permute(1, 2, 3, 0)  # (3, T, S, S) -> (T, S, S, 3)
    return video, frames.mul(255).round().clamp(0, 255).to(torch.uint8)


# ---------------------------------------------------------------- analysis


def accuracy_by_views(
    view_scores: Tensor,
    labels: Tensor,
    clips_total: int,
    crops_total: int,
    *,
    clips: Sequence[int] = (1, 3, 10),
    crops: Sequence[int] = (1, 3),
) -> dict[tuple[int, int], float]:
    """Top-1 accuracy of averaging the softmax of view subsets (see :func:`view_subset`): a real
    ``clips × crops`` test's where :func:`a2video.training.views.subset_is_exact` holds, an
    estimate from the nearest decoded clips elsewhere (e.g. 1 or 3 of 10 clips).

    Args:
        view_scores: (N, V, K) per-view probabilities, V = clips_total · crops_total.
        labels: (N,) true classes.
        clips_total: Clips decoded per video.
        crops_total: Crops decoded per clip.
        clips: Clip counts to evaluate (those above ``clips_total`` are skipped).
        crops: Crop counts to evaluate (1 or ``crops_total``).

    Returns:
        ``{(clips, crops): accuracy}``.
    """
    out: dict[tuple[int, int], float] = {}
    for n_crops in crops:
        if n_crops not in (1, crops_total):
            continue
        for n_clips in clips:
            if n_clips > clips_total:
                continue
            idx = view_subset(clips_total, crops_total, n_clips, n_crops)
            pred = view_scores[:, idx].mean(1).argmax(1)  # (N, |idx|, K) -> (N,)
            out[(n_clips, n_crops)] = float((pred == labels).float().mean())
    return out


def confusion_matrix(labels: Tensor, preds: Tensor, num_classes: int) -> Tensor:
    """(K, K) int64 counts (not normalised), ``cm[t, p]`` = videos of class t predicted p.

    The one confusion matrix of the package: the test run's ``confusion_matrix.png``
    (:mod:`a2video.training.outputs`) and the notebooks' analyses both count with it.
    """
    flat = labels.long() * num_classes + preds.long()
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_accuracy(cm: Tensor) -> Tensor:
    """(K,) accuracy per true class; NaN for a class with no video."""
    totals = cm.sum(1).double()
    return torch.where(totals > 0, cm.diag().double() / totals.clamp(min=1), float("nan"))


def most_confused_pairs(
    cm: Tensor, class_names: Sequence[str], k: int = 10
) -> list[dict[str, Any]]:
    """The ``k`` largest off-diagonal cells of the confusion matrix.

    Returns:
        Dicts ``true``, ``predicted`` (names), ``count`` and ``fraction`` (of the true class's
        videos), largest count first (ties: larger fraction, then class order).
    """
    counts = cm.clone()
    counts.fill_diagonal_(0)
    totals = cm.sum(1)
    cells = [(int(counts[t, p]), t, p) for t, p in (counts > 0).nonzero().tolist()]
    cells.sort(key=lambda c: (-c[0], -c[0] / max(int(totals[c[1]]), 1), c[1], c[2]))
    return [
        {
            "true": class_names[t],
            "predicted": class_names[p],
            "count": n,
            "fraction": n / max(int(totals[t]), 1),
        }
        for n, t, p in cells[:k]
    ]


# ---------------------------------------------------------------- test sets


@dataclass
class DatasetPredictions:
    """Per-view scores of a test set, one decode of each video.

    Attributes:
        view_scores: (N, V, K) softmax scores per view, V = clips · crops, clip-major.
        labels: (N,) true classes.
        index: (N,) the videos' indices in the split's list.
        valid: (N,) False where the video could not be decoded (its scores are meaningless).
        clips: Clips per video.
        crops: Crops per clip.
    """

    view_scores: Tensor
    labels: Tensor
    index: Tensor
    valid: Tensor
    clips: int
    crops: int

    def scores(self) -> Tensor:
        """(N, K) video-level scores: the mean softmax over all views."""
        return self.view_scores.mean(1)

    def preds(self) -> Tensor:
        return self.scores().argmax(1)

    def accuracy(self) -> float:
        """Top-1 over the decodable videos."""
        ok = self.valid
        return float((self.preds()[ok] == self.labels[ok]).float().mean()) if ok.any() else 0.0

    def only_valid(self) -> DatasetPredictions:
        ok = self.valid
        return DatasetPredictions(
            self.view_scores[ok],
            self.labels[ok],
            self.index[ok],
            self.valid[ok],
            self.clips,
            self.crops,
        )


@torch.no_grad()
def predict_loader(
    predictor: Predictor,
    batches: Iterable[dict[str, Tensor]],
    clips: int,
    crops: int,
    *,
    batch_size: int = 16,
) -> DatasetPredictions:
    """Per-view scores of every video in test batches (``video`` (B, V, 3, T, H, W)).

    Args:
        predictor: From :func:`load_predictor`.
        batches: Test/predict batch dicts of :mod:`a2video.data` (``video``, ``label``,
            ``index``, optional ``valid``).
        clips: Clips per video in the batches.
        crops: Crops per clip in the batches.
        batch_size: Views per forward pass.

    Returns:
        The :class:`DatasetPredictions`, sorted by ``index``.
    """
    scores, labels, index, valid = [], [], [], []
    for batch in batches:
        video = batch["video"]
        b, v = video.shape[:2]
        if v != clips * crops:
            raise ValueError(f"batches carry {v} views per video, expected {clips}x{crops}")
        probs = per_view_probs(predictor.model, video, batch_size, predictor.device)  # (B, V, K)
        scores.append(probs.cpu())
        labels.append(batch["label"].cpu())
        index.append(batch["index"].cpu())
        valid.append(batch.get("valid", torch.ones(b, dtype=torch.bool)).cpu())
    index_t = torch.cat(index)
    order = index_t.argsort()
    return DatasetPredictions(
        view_scores=torch.cat(scores)[order],
        labels=torch.cat(labels)[order],
        index=index_t[order],
        valid=torch.cat(valid)[order],
        clips=clips,
        crops=crops,
    )
