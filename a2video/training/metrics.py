"""Video-level evaluation, exact under DDP.

A Kinetics test video is scored from K temporal clips × 3 spatial crops: the softmax of each view
is averaged (MMAction2's ``average_clips='prob'``) and the video is correct if its label is in the
top-k of that mean (the paper's "video accuracy"); the centre view alone gives the "single clip
accuracy" (a 1-clip test's view with an odd K; of an even K, clip K/2, next to it).

DistributedSampler pads the last shards with repeated samples so every rank gets the same number
of batches (pytorch #25162, Lightning #4732); counting those repeats biases the numbers and makes
them depend on the world size. Here every rank keeps one row per video it saw, ``(index, label,
mean softmax, single-view softmax, valid)``; at epoch end the rows are all-gathered (uneven sizes
allowed, a rank may hold none), deduplicated by ``index`` and the metrics are computed on the union:
each video counted exactly once, whatever the number of ranks and whatever padding was added.

With the per-view softmax ``(B, V, C)`` of a multi-view test, each rank also keeps what the
exploration tools read later without the checkpoint: every view's top-k (one row per (video,
view), deduplicated the same way) and the top-1 of the standard view subsets (1, 2, 3, 5, 10
clips × the centre crop or all crops, see :func:`a2video.training.views.view_subset`), each from
the mean of its views' full softmax, without keeping all V·C scores per video. A subset is a real
smaller test's score where :func:`a2video.training.views.subset_is_exact` holds (2 and 10 of 10
clips, every subset of 3 or 5 clips), an estimate from the nearest decoded clips elsewhere.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor
from torchmetrics import Metric

from a2video.training.views import view_subset

__all__ = [
    "ClipAccuracy",
    "VideoAccumulator",
    "VideoResults",
    "gather_uneven",
    "video_metrics",
    "view_subsets",
    "write_predictions_csv",
]


# Clip counts of the view subsets whose top-1 is kept per video (each with 1 crop and all crops).
SUBSET_CLIPS = (1, 2, 3, 5, 10)
VIEW_TOPK = 5  # classes kept per view


def view_subsets(clips: int, crops: int) -> list[tuple[int, int]]:
    """The ``(clips, crops)`` subsets of a ``clips × crops`` decode whose top-1 is kept, in the
    fixed column order of :attr:`VideoResults.subset_pred`: every ``SUBSET_CLIPS`` count × (1
    crop, all crops); a column that does not fit the decode (or repeats one) is ``(0, 0)``."""
    out: list[tuple[int, int]] = []
    for n in SUBSET_CLIPS:
        for s in (1, crops):
            out.append((n, s) if n <= clips and (n, s) not in out else (0, 0))
    return out


def gather_uneven(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every rank along dim 0 (sizes may differ, even be zero).

    Args:
        x: tensor ``(n_rank, *rest)``; ``rest`` and dtype must agree across ranks.

    Returns:
        ``(sum n_rank, *rest)`` in rank order; ``x`` itself when not distributed.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    world = dist.get_world_size()
    size = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    longest = max(counts)
    padded = x.new_zeros((longest, *x.shape[1:]))
    padded[: x.shape[0]] = x
    chunks = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(chunks, padded.contiguous())
    return torch.cat([c[:n] for c, n in zip(chunks, counts, strict=True)], dim=0)


@dataclass
class VideoResults:
    """One row per distinct video, sorted by ``index`` (identical on every rank)."""

    index: Tensor  # (N,) long
    label: Tensor  # (N,) long; -1 when unknown (predict)
    probs: Tensor  # (N, C) float: softmax averaged over all views
    clip_probs: Tensor  # (N, C) float: softmax of the single (centre) view
    valid: Tensor  # (N,) bool: False when the video could not be decoded
    # Multi-view tests only (None otherwise):
    view_topk_scores: Tensor | None = None  # (N, V, k) float: each view's k best softmax scores
    view_topk_classes: Tensor | None = None  # (N, V, k) long: their classes
    subset_pred: Tensor | None = None  # (N, S) long: top-1 of view_subsets(...) (-1: n/a)
    # (clips, crops) decoded per video (also for predict, which keeps no per-view data)
    views: tuple[int, int] | None = None

    def __len__(self) -> int:
        return int(self.index.numel())

    def scored(self) -> Tensor:
        """``(N,)`` bool: the videos the metrics count (decoded, with a known label)."""
        return self.valid & (self.label >= 0)

    def topk(self, k: int = 5) -> tuple[Tensor, Tensor]:
        """Top-k (scores, classes) of the view-averaged softmax, each ``(N, min(k, C))``."""
        return self.probs.topk(min(k, self.probs.shape[1]), dim=1)


class VideoAccumulator(Metric):
    """Collects per-video rows on each rank; ``compute()`` returns the deduplicated union.

    Every rank must call ``compute()`` (it all-gathers). Rows of the same ``index`` seen twice
    (sampler padding) are identical, so the first is kept.

    Args:
        num_classes: width of the probability rows (needed for ranks that saw no video).
    """

    full_state_update = False
    # We gather ourselves (uneven, possibly empty shards); torchmetrics' own sync is off.
    higher_is_better = True

    def __init__(self, num_classes: int) -> None:
        super().__init__(sync_on_compute=False, compute_with_cache=False)
        self.num_classes = num_classes
        self.view_k = min(VIEW_TOPK, num_classes)
        # Per view (one row per (video, view), so ranks need not know V to join the gather):
        self.add_state("view_video", default=[], dist_reduce_fx=None)
        self.add_state("view_id", default=[], dist_reduce_fx=None)
        self.add_state("view_scores", default=[], dist_reduce_fx=None)
        self.add_state("view_classes", default=[], dist_reduce_fx=None)
        # Per video: top-1 of each view subset and the (clips, crops) layout.
        self.add_state("subset_pred", default=[], dist_reduce_fx=None)
        self.add_state("layout", default=[], dist_reduce_fx=None)
        self.add_state("index", default=[], dist_reduce_fx=None)
        self.add_state("label", default=[], dist_reduce_fx=None)
        self.add_state("probs", default=[], dist_reduce_fx=None)
        self.add_state("clip_probs", default=[], dist_reduce_fx=None)
        self.add_state("valid", default=[], dist_reduce_fx=None)

    def update(
        self,
        index: Tensor,
        label: Tensor,
        probs: Tensor,
        clip_probs: Tensor | None = None,
        valid: Tensor | None = None,
    ) -> None:
        """Add a batch of videos.

        Args:
            index: ``(B,)`` the videos' stable indices in the split.
            label: ``(B,)`` true classes (-1 if unknown).
            probs: ``(B, C)`` softmax averaged over the views.
            clip_probs: ``(B, C)`` softmax of the single view; ``probs`` if None.
            valid: ``(B,)`` bool; all True if None.
        """
        self.index.append(index.detach().long().reshape(-1))
        self.label.append(label.detach().long().reshape(-1))
        self.probs.append(probs.detach().float())
        self.clip_probs.append((probs if clip_probs is None else clip_probs).detach().float())
        if valid is None:
            valid = torch.ones_like(index, dtype=torch.bool)
        self.valid.append(valid.detach().bool().reshape(-1))

    def update_views(self, index: Tensor, view_probs: Tensor, crops: int) -> None:
        """Add the per-view softmax of a batch (after :meth:`update` of the same videos).

        Args:
            index: ``(B,)`` the videos' indices.
            view_probs: ``(B, V, C)`` softmax of each view, clip-major (``c * crops + s``).
            crops: spatial crops per clip (V = clips · crops).
        """
        b, v, _ = view_probs.shape
        probs = view_probs.detach().float()
        scores, classes = probs.topk(self.view_k, dim=2)  # (B, V, k)
        index = index.detach().long().reshape(-1)
        self.view_video.append(index.repeat_interleave(v))
        self.view_id.append(torch.arange(v, device=index.device).repeat(b))
        self.view_scores.append(scores.reshape(b * v, -1))
        self.view_classes.append(classes.reshape(b * v, -1))
        clips = v // crops
        columns = []
        for n, s in view_subsets(clips, crops):
            if n == 0:
                columns.append(torch.full_like(index, -1))
            else:
                idx = view_subset(clips, crops, n, s)
                columns.append(probs[:, idx].mean(1).argmax(1))
        self.subset_pred.append(torch.stack(columns, dim=1))
        self.update_layout(index, clips, crops)

    def update_layout(self, index: Tensor, clips: int, crops: int) -> None:
        """Record the ``clips × crops`` views of a batch's videos (:meth:`update_views` does;
        predict, which keeps no per-view scores, calls it alone): ``VideoResults.views``."""
        b = index.shape[0]
        # fill kernels: a tensor made from host numbers would be a blocking copy per batch
        self.layout.append(
            torch.stack((index.new_full((b,), clips), index.new_full((b,), crops)), 1).long()
        )

    def _wrap_compute(self, compute: Callable[[], VideoResults]) -> Callable[[], VideoResults]:
        # torchmetrics' wrapper squeezes every one-element tensor of the result, which made a
        # one-video evaluation's (1,) rows 0-d; compute gathers the states itself (no sync, no
        # cache to manage) and returns new tensors, so it is used as it is.
        return compute

    def _local(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        items = getattr(self, name)
        if isinstance(items, Tensor):  # torchmetrics may have concatenated the list already
            return items
        if not items:
            return torch.zeros(shape, dtype=dtype, device=self.device)
        return torch.cat(items, dim=0)

    def compute(self) -> VideoResults:
        c = self.num_classes
        index = gather_uneven(self._local("index", (0,), torch.long))
        label = gather_uneven(self._local("label", (0,), torch.long))
        probs = gather_uneven(self._local("probs", (0, c), torch.float32))
        clip_probs = gather_uneven(self._local("clip_probs", (0, c), torch.float32))
        valid = gather_uneven(self._local("valid", (0,), torch.bool).to(torch.uint8)).bool()
        order = torch.argsort(index, stable=True)
        index = index[order]
        keep = torch.ones_like(index, dtype=torch.bool)
        keep[1:] = index[1:] != index[:-1]
        sel = order[keep]
        results = VideoResults(
            index=index[keep].cpu(),
            label=label[sel].cpu(),
            probs=probs[sel].cpu(),
            clip_probs=clip_probs[sel].cpu(),
            valid=valid[sel].cpu(),
        )
        self._compute_views(results, sel, index.shape[0])
        return results

    def _compute_views(self, results: VideoResults, rows: Tensor, gathered: int) -> None:
        """Gathers the per-view rows and attaches them to ``results`` (every rank must call).

        ``rows``: which of the ``gathered`` per-video rows :meth:`compute` kept (the first of
        each index); the per-video ``subset_pred`` rows line up with them.
        """
        k, s = self.view_k, len(view_subsets(1, 1))
        video = gather_uneven(self._local("view_video", (0,), torch.long))
        view = gather_uneven(self._local("view_id", (0,), torch.long))
        scores = gather_uneven(self._local("view_scores", (0, k), torch.float32))
        classes = gather_uneven(self._local("view_classes", (0, k), torch.long))
        subset = gather_uneven(self._local("subset_pred", (0, s), torch.long))
        layout = gather_uneven(self._local("layout", (0, 2), torch.long))
        if video.numel() == 0 or subset.shape[0] != gathered:
            # no per-view data (validation, predict) or not for every video: the views alone,
            # where every video has the same (predict)
            if gathered and layout.shape[0] == gathered and bool((layout == layout[:1]).all()):
                results.views = (int(layout[0, 0]), int(layout[0, 1]))
            return
        clips, crops = (int(x) for x in layout.max(dim=0).values)
        v = clips * crops
        key = video * v + view
        order = torch.argsort(key, stable=True)
        first = torch.ones_like(order, dtype=torch.bool)
        first[1:] = key[order][1:] != key[order][:-1]
        sel = order[first]  # one row per (video, view), sorted by video then view
        n = len(results)
        first_of_each = video[sel][::v].cpu() if sel.numel() == n * v else None
        same = first_of_each is not None and torch.equal(first_of_each, results.index)
        if not same:
            return  # videos with differing view counts: per-view data is left out
        results.view_topk_scores = scores[sel].view(n, v, k).cpu()
        results.view_topk_classes = classes[sel].view(n, v, k).cpu()
        results.subset_pred = subset[rows].cpu()
        results.views = (clips, crops)


def _topk_correct(probs: Tensor, label: Tensor, k: int) -> Tensor:
    k = min(k, probs.shape[1])
    return (probs.topk(k, dim=1).indices == label[:, None]).any(dim=1)


class ClipAccuracy(Metric):
    """Top-1 and top-k clip accuracy of training batches, updated without a host sync.

    ``update`` only launches device kernels (no argument validation that reads values, unlike
    torchmetrics' classification metrics with ``validate_args``), and rows can be masked on the
    device (``weight`` 0 for a skipped non-finite step), so the training step never waits for the
    host. ``compute`` (epoch end) sums the counts over ranks.

    Args:
        k: the second accuracy's k (5; capped at the number of classes).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, k: int = 5) -> None:
        super().__init__()
        self.k = k
        self.add_state("correct", default=torch.zeros(2, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: Tensor, label: Tensor, weight: Tensor | None = None) -> None:
        """Add a batch: ``logits`` (B, C), ``label`` (B,), optional 0-d ``weight`` (0 or 1)."""
        k = min(self.k, logits.shape[1])
        hits = logits.detach().topk(k, dim=1).indices == label[:, None]  # (B, k)
        counts = torch.stack([hits[:, 0].sum(), hits.any(dim=1).sum()]).double()
        total = counts.new_full((), float(label.shape[0]))  # a fill kernel, no host copy
        if weight is not None:
            counts, total = counts * weight, total * weight
        self.correct += counts
        self.total += total

    def compute(self) -> dict[str, Tensor]:
        """``{"top1", "top5"}`` over all rows seen (NaN before any)."""
        acc = self.correct / self.total
        return {"top1": acc[0], "top5": acc[1]}


def video_metrics(results: VideoResults, num_classes: int | None = None) -> dict[str, float]:
    """Top-1/top-5 video accuracy, mean class accuracy and single-clip accuracy.

    Computed over the valid videos with a known label; ``videos`` and ``unreadable`` say over how
    many videos the numbers were computed and how many could not be decoded. Where there is no
    such video (an unlabelled test split, a predict), there is nothing to score: only the counts
    are returned, never accuracies of 0.

    Args:
        results: the union from :meth:`VideoAccumulator.compute`.
        num_classes: number of classes (defaults to the probability width).

    Returns:
        ``top1, top5, mean_class_acc, clip_top1, clip_top5`` (fractions in [0, 1]; left out
        when ``videos`` is 0) and the counts ``videos, unreadable``.
    """
    num_classes = num_classes or results.probs.shape[1]
    use = results.scored()
    label = results.label[use]
    out = {"videos": float(use.sum()), "unreadable": float((~results.valid).sum())}
    if label.numel() == 0:
        return out  # nothing to score: no accuracy (an accuracy of 0 would be a false figure)
    probs, clip = results.probs[use], results.clip_probs[use]
    top1 = _topk_correct(probs, label, 1)
    per_class_hits = torch.zeros(num_classes).index_add_(0, label, top1.float())
    per_class_count = torch.zeros(num_classes).index_add_(0, label, torch.ones_like(top1.float()))
    present = per_class_count > 0
    out["top1"] = top1.float().mean().item()
    out["top5"] = _topk_correct(probs, label, 5).float().mean().item()
    out["mean_class_acc"] = (per_class_hits[present] / per_class_count[present]).mean().item()
    out["clip_top1"] = _topk_correct(clip, label, 1).float().mean().item()
    out["clip_top5"] = _topk_correct(clip, label, 5).float().mean().item()
    return out


def write_predictions_csv(
    path: str | os.PathLike,
    results: VideoResults,
    class_names: Sequence[str] | None = None,
    video_names: Sequence[str] | None = None,
    k: int = 5,
) -> None:
    """One row per video: ``index, video, valid, label, label_name, top1.., score1..``.

    Args:
        path: the CSV file to write.
        results: deduplicated rows.
        class_names: names by class index (numbers are written when None).
        video_names: names by video ``index`` (the index is written when None).
        k: how many classes to list.
    """
    scores, classes = results.topk(k)
    kk = scores.shape[1]

    def name(c: int) -> str:
        return class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["index", "video", "valid", "label", "label_name"]
            + [f"top{i + 1}" for i in range(kk)]
            + [f"score{i + 1}" for i in range(kk)]
        )
        for row in range(len(results)):
            idx = int(results.index[row])
            label = int(results.label[row])
            valid = bool(results.valid[row])
            video = (
                video_names[idx]
                if video_names is not None and 0 <= idx < len(video_names)
                else str(idx)
            )
            tops = [name(int(c)) for c in classes[row]] if valid else [""] * kk
            vals = [f"{float(s):.6f}" for s in scores[row]] if valid else [""] * kk
            writer.writerow(
                [idx, video, int(valid), label, name(label) if label >= 0 else "", *tops, *vals]
            )
