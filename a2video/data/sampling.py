"""Temporal sampling of frame indices (PySlowFast / MMAction2 conventions).

A clip is ``frames`` indices ``stride`` apart, spanning ``(frames - 1) * stride + 1`` frames.
Train: one clip from a uniformly random start; with repeated augmentation, K clips with their
own starts inside one random window of ``REPEAT_WINDOW`` clip spans (one decode serves them
all). Val: the centre clip. Test: ``num_clips`` clips with starts spread uniformly from the
first to the last possible one, so together they cover the whole video. A video shorter than
the span is sampled with repetition as PySlowFast does: indices spread over the span and
clamped to the last frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where used: GPU tools import this without it
    import numpy as np


def clip_span(frames: int, stride: int) -> int:
    return (frames - 1) * stride + 1


def clip_at(start: int, num_frames: int, frames: int, stride: int) -> list[int]:
    """Indices of the clip starting at ``start``, clamped to ``[0, num_frames)``."""
    last = num_frames - 1
    return [min(start + i * stride, last) for i in range(frames)]


def train_clip(num_frames: int, frames: int, stride: int, rng: np.random.Generator) -> list[int]:
    delta = max(num_frames - clip_span(frames, stride), 0)
    start = int(rng.integers(0, delta + 1))
    return clip_at(start, num_frames, frames, stride)


REPEAT_WINDOW = 2  # repeated clips: the decoded window, in clip spans


def repeated_train_clips(
    num_frames: int, frames: int, stride: int, repeat: int, rng: np.random.Generator
) -> list[list[int]]:
    """``repeat`` training clips from one decoded window (repeated augmentation).

    A window of ``REPEAT_WINDOW`` clip spans (the whole video if shorter) starts uniformly at
    random; each clip then starts uniformly inside it. Decoding serves all clips from the
    keyframe before the window to its end, about the cost of one clip on long-GOP video, while
    every frame of the video stays reachable. ``repeat=1`` is :func:`train_clip`.
    """
    if repeat == 1:
        return [train_clip(num_frames, frames, stride, rng)]
    span = clip_span(frames, stride)
    window = min(num_frames, REPEAT_WINDOW * span)
    first = int(rng.integers(0, num_frames - window + 1))
    delta = max(window - span, 0)
    return [
        clip_at(first + int(rng.integers(0, delta + 1)), num_frames, frames, stride)
        for _ in range(repeat)
    ]


def spread(k: int, n: int, length: int) -> int:
    """Offset of item ``k`` of ``n`` spread uniformly over ``[0, length]``, first and last
    included, rounded down: ``k * length // (n - 1)``; a single item is the middle one,
    ``length // 2``.

    The one rounding rule of the eval views, in time (clip starts: :func:`center_clip`,
    :func:`uniform_clip_starts`) and in space (crop offsets:
    :func:`a2video.data.transforms.center_crop`, :func:`~a2video.data.transforms.three_crops`),
    in exact integer arithmetic; the centre rounds down as MMAction2's ``CenterCrop`` and
    ``ThreeCrop`` (``(w - size) // 2``) and PySlowFast's single test clip
    (``floor(delta / 2)``) do. So item ``k`` of ``n`` is item ``k * (m - 1) / (n - 1)`` of ``m``
    whenever that is a whole number (for ``n = 1``: the middle item of an odd ``m``), whatever
    ``length``: such a smaller test's views are views of the larger one, frame for frame and
    pixel for pixel (:func:`a2video.training.views.subset_is_exact`).
    """
    if n == 1:
        return length // 2
    return k * length // (n - 1)


def center_clip(num_frames: int, frames: int, stride: int) -> list[int]:
    delta = max(num_frames - clip_span(frames, stride), 0)
    return clip_at(spread(0, 1, delta), num_frames, frames, stride)


def uniform_clip_starts(num_frames: int, frames: int, stride: int, num_clips: int) -> list[int]:
    """Starts of ``num_clips`` clips spread uniformly over the video, first and last included
    (one clip: the centre one, as :func:`center_clip`), rounded down (:func:`spread`)."""
    delta = max(num_frames - clip_span(frames, stride), 0)
    return [spread(k, num_clips, delta) for k in range(num_clips)]


def multi_clip(num_frames: int, frames: int, stride: int, num_clips: int) -> list[list[int]]:
    """``num_clips`` clips of indices, one list per clip, in temporal order."""
    return [
        clip_at(s, num_frames, frames, stride)
        for s in uniform_clip_starts(num_frames, frames, stride, num_clips)
    ]


def centre_view(num_clips: int, num_crops: int) -> int:
    """Index of the centre clip's centre crop among ``num_clips × num_crops`` test views.

    Views are clip-major (view ``c * num_crops + s``, as :func:`a2video.data.transforms` stacks
    them): e.g. 3 of 6×1, 7 of 5×3, 16 of 10×3. With odd counts (7 of 5×3) it is the view a
    single-clip, single-crop test decodes, frame for frame and pixel for pixel (:func:`spread`);
    an even count has no middle item: 16 of 10×3 is clip 5, one of the two clips either side of
    the single-clip test's, so its score only estimates that test's.
    """
    return (num_clips // 2) * num_crops + num_crops // 2
