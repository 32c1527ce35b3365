"""Video-level evaluation, exact under DDP.

A Kinetics test video is scored from K temporal clips × 3 spatial crops: the softmax of each view
is averaged (MMAction2's ``average_clips='prob'``) and the video is correct if its label is in the
top-k of that mean (the paper's "video accuracy"); the centre view alone gives the "single clip
accuracy".

DistributedSampler pads the last shards with repeated samples so every rank gets the same number
of batches (pytorch #25162, Lightning #4732); counting those repeats biases the numbers and makes
them depend on the world size. Here every rank keeps one row per video it saw, ``(index, label,
mean softmax, single-view softmax, valid)``; at epoch end the rows are all-gathered (uneven sizes
allowed, a rank may hold none), deduplicated by ``index`` and the metrics are computed on the union:
each video counted exactly once, whatever the number of ranks and whatever padding was added.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor
from torchmetrics import Metric

__all__ = [
    "ClipAccuracy",
    "VideoAccumulator",
    "VideoResults",
    "gather_uneven",
    "video_metrics",
    "write_predictions_csv",
]


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

    def __len__(self) -> int:
        return int(self.index.numel())

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
        return VideoResults(
            index=index[keep].cpu(),
            label=label[sel].cpu(),
            probs=probs[sel].cpu(),
            clip_probs=clip_probs[sel].cpu(),
            valid=valid[sel].cpu(),
        )


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
    many videos the numbers were computed and how many could not be decoded.

    Args:
        results: the union from :meth:`VideoAccumulator.compute`.
        num_classes: number of classes (defaults to the probability width).

    Returns:
        ``top1, top5, mean_class_acc, clip_top1, clip_top5`` (fractions in [0, 1]) and the
        counts ``videos, unreadable``.
    """
    num_classes = num_classes or results.probs.shape[1]
    use = results.valid & (results.label >= 0)
    label = results.label[use]
    out = {"videos": float(use.sum()), "unreadable": float((~results.valid).sum())}
    if label.numel() == 0:
        return out | {k: 0.0 for k in ("top1", "top5", "mean_class_acc", "clip_top1", "clip_top5")}
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


def confusion_matrix(results: VideoResults, num_classes: int) -> Tensor:
    """Counts ``(C, C)``: ``cm[true, predicted]`` over valid, labelled videos (top-1 of mean)."""
    use = results.valid & (results.label >= 0)
    pred = results.probs[use].argmax(dim=1)
    flat = results.label[use] * num_classes + pred
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


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
