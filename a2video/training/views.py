"""Test-time views: where the centre view is, every view's softmax in bounded chunks, and which
views a smaller ``clips × crops`` test would have used.

A test/predict batch carries ``V = num_clips × num_crops`` views per video, clip-major
(view ``c * crops + s``). The video score averages the softmax over all views (the paper's K×3
testing); the centre clip's centre crop gives the single-clip accuracy (exactly a 1×1 test's with
odd counts of clips and crops; with 10 clips, clip 5, one of the two middle ones: see
:func:`subset_is_exact`). The layout comes from the data's
:class:`~a2video.data.datasets.ClipSpec`, never guessed from the count.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from a2video.data.datasets import ClipSpec

__all__ = ["per_view_probs", "subset_is_exact", "view_layout", "view_subset"]


def view_layout(spec: ClipSpec | None, views: int) -> tuple[int, int]:
    """Crops per clip and the centre clip's centre crop among ``views`` clip-major views, from
    ``spec`` (the data's, linked to the model by the CLI); no guessing from the count."""
    if views == 1:
        return 1, 0
    if spec is None or spec.num_views != views:
        have = "no clip_spec" if spec is None else f"{spec.num_clips}x{spec.num_crops} views"
        raise ValueError(
            f"a2video: test batches carry {views} views per video but the model has {have}; "
            "the views are the DataModule's num_clips x num_crops (data.spec, linked to "
            "model.clip_spec by the CLI): pass clip_spec=datamodule.spec"
        )
    return spec.num_crops, spec.centre_view


def per_view_probs(
    forward: Callable[[Tensor], Tensor],
    video: Tensor,
    chunk: int = 0,
    device: torch.device | None = None,
) -> Tensor:
    """Softmax of every view of ``video`` ``(B, V, 3, T, H, W)`` (or ``(B, 3, T, H, W)``, one
    view) → ``(B, V, C)``, forwarding at most ``chunk`` clips at once (0: all at once).

    The one place that turns test views into per-view scores: the LightningModule's test/predict
    steps (clips already on the device) and :class:`a2video.explore.predict.Predictor` (clips on
    the host, each chunk moved to ``device`` just before its forward) both call it.

    Args:
        forward: clips ``(N, 3, T, H, W)`` → logits ``(N, C)``.
        video: the views, clip-major (view ``c * crops + s``).
        chunk: clips per forward (0: all).
        device: where to move each chunk first (None: leave it where it is).
    """
    if video.ndim == 5:  # a single view per video
        video = video[:, None]
    b, v = video.shape[:2]
    flat = video.flatten(0, 1)  # (B*V, 3, T, H, W)
    chunk = chunk or flat.shape[0]
    logits = []
    for i in range(0, flat.shape[0], chunk):
        clips = flat[i : i + chunk]
        logits.append(forward(clips if device is None else clips.to(device, non_blocking=True)))
    return torch.cat(logits).float().softmax(dim=1).view(b, v, -1)  # (B*V, C) -> (B, V, C)


def view_subset(clips_total: int, crops_total: int, clips: int, crops: int) -> list[int]:
    """Indices of a ``clips × crops`` subset of a ``clips_total × crops_total`` decode.

    The test sampler spreads clip starts uniformly from the first to the last possible one (one
    clip: the centre one), so the subset takes, for each start a ``clips``-clip decode would use,
    the nearest decoded clip: 1 of 10 is clip 5 (of 0..9), 3 of 10 are clips 0, 5, 9. One crop is
    the middle crop. Views are clip-major: view ``c * crops_total + s``.

    Where :func:`subset_is_exact` holds these are the very views a ``clips × crops`` test
    decodes (1 of 3 or 5 clips, 2 of any, 3 of 5; the centre crop of 3); elsewhere (1, 3 or 5 of
    10 clips) the nearest ones, whose score only estimates that test's.

    Raises:
        ValueError: the subset is larger than the decode, or crops is neither 1 nor all.
    """
    if clips > clips_total or crops > crops_total:
        raise ValueError(
            f"{clips}x{crops} views is more than the {clips_total}x{crops_total} decoded"
        )
    if crops not in (1, crops_total):
        raise ValueError(f"crops must be 1 or {crops_total}, got {crops}")
    if clips == 1:
        targets = [(clips_total - 1) / 2]
    else:
        targets = [i * (clips_total - 1) / (clips - 1) for i in range(clips)]
    clip_ids = [math.floor(t + 0.5) for t in targets]
    crop_ids = [crops_total // 2] if crops == 1 else list(range(crops_total))
    return [c * crops_total + s for c in clip_ids for s in crop_ids]


def _evenly_inside(n: int, total: int) -> bool:
    """Whether ``n`` items spread uniformly (first and last included; one: the middle) sit on
    ``total`` such items: every position ``k / (n - 1)`` (``1/2``) is some ``j / (total - 1)``."""
    if n == total:
        return True
    if n == 1:
        return total % 2 == 1
    return (total - 1) % (n - 1) == 0


def subset_is_exact(clips_total: int, crops_total: int, clips: int, crops: int) -> bool:
    """Whether the :func:`view_subset` of a ``clips_total × crops_total`` decode is, for every
    video, exactly the views (frames and pixels) a ``clips × crops`` test decodes, so that its
    score is that test's.

    Clip starts and crop offsets are rounded by one rule
    (:func:`a2video.data.sampling.spread`), so item ``k`` of ``n`` is item
    ``k (m - 1) / (n - 1)`` of ``m`` whenever that is whole: 1 clip of an odd count (the middle
    one), 2 of any (first and last), 3 of 5, ``n`` of ``n``; the centre crop of an odd number of
    crops. Otherwise (1, 3 or 5 clips of 10) the smaller test samples between the decoded clips:
    the subset's nearest clips only estimate it.
    """
    return _evenly_inside(clips, clips_total) and _evenly_inside(crops, crops_total)
