"""Test-time views: where the centre view is, and every view's softmax in bounded chunks.

A test/predict batch carries ``V = num_clips × num_crops`` views per video, clip-major
(view ``c * crops + s``). The video score averages the softmax over all views (the paper's K×3
testing); the centre clip's centre crop gives the single-clip accuracy. The layout comes from the
data's :class:`~a2video.data.datasets.ClipSpec`, never guessed from the count.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from a2video.data.datasets import ClipSpec

__all__ = ["per_view_probs", "view_layout"]


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


def per_view_probs(forward: Callable[[Tensor], Tensor], video: Tensor, chunk: int = 0) -> Tensor:
    """Softmax of every view of ``video`` ``(B, V, 3, T, H, W)`` (or ``(B, 3, T, H, W)``, one
    view) → ``(B, V, C)``, forwarding at most ``chunk`` clips at once (0: all at once)."""
    if video.ndim == 5:  # a single view per video
        video = video[:, None]
    b, v = video.shape[:2]
    flat = video.flatten(0, 1)  # (B*V, 3, T, H, W)
    chunk = chunk or flat.shape[0]
    logits = torch.cat([forward(flat[i : i + chunk]) for i in range(0, flat.shape[0], chunk)])
    return logits.float().softmax(dim=1).view(b, v, -1)
