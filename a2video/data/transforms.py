"""Spatial transforms on uint8 clip tensors (our own; see docs/data.md for why not PyTorchVideo).

Clips enter as decoded ``(T, H, W, 3)`` uint8 and leave as normalised float ``(3, T, H, W)``,
or, for the DataModules' loaders, as uint8 ``(3, T, H, W)`` (:func:`to_cthw`) that
:func:`normalize_batch` turns into the same floats on the device; either way in the frames'
``(T, H, W, 3)`` memory order, so a batch is ``channels_last_3d`` (:func:`stack_clips`).
Resizing runs on uint8 (torchvision's antialiased uint8 bilinear kernel, on the decoder's
channels-last frames without a copy: :func:`to_tchw`) before the float conversion. Train and val
crop the source region first and resize only that region (:func:`resized_crop`); test
resizes the decoded frames once for all crops of all clips; that resize works frame by frame
(the same bytes for a frame alone as in a stack), so the test sample applies it to the frames
chunk by chunk as they are decoded (:func:`multi_view_crops` takes the resized frames), never
holding them all at full size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .sampling import spread
from .video import select_frames

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_tchw(frames: torch.Tensor) -> torch.Tensor:
    """(T, H, W, C) -> (T, C, H, W) as a view (channels-last storage, no copy).

    A single-channel clip is repeated to 3 channels. The view is what the resize wants:
    torchvision's antialiased uint8 kernel runs 4-5× faster on channels-last frames than on a
    channels-first copy, with bit-identical output (tests/test_data_sampling.py).
    """
    x = frames.permute(0, 3, 1, 2)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x


def _resize(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """torchvision's antialiased resize. Imported at first use, so what only stacks and normalises
    batches (``VideoClassifier``, the batch ring, the GPU benchmarks) imports without torchvision,
    which a GPU host's own torch may lack or not match."""
    from torchvision.transforms.v2.functional import resize

    return resize(x, size, antialias=True)


def short_side_shape(h: int, w: int, size: int) -> tuple[int, int]:
    """(H, W) after resizing the short side to ``size``, keeping the aspect ratio."""
    if h <= w:
        return size, max(size, round(w * size / h))
    return max(size, round(h * size / w)), size


def short_side_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (T, C, H, W) so that its short side is ``size``, keeping the aspect ratio."""
    h, w = x.shape[-2:]
    if min(h, w) == size:
        return x
    return _resize(x, list(short_side_shape(h, w, size)))


def source_box(
    h: int, w: int, short: int, top: int, left: int, size: int
) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)``: the region of an (h, w) frame that the ``size`` crop at (top, left)
    of the frame resized to short side ``short`` covers."""
    new_h, new_w = short_side_shape(h, w, short)
    fy, fx = h / new_h, w / new_w
    y0, x0 = round(top * fy), round(left * fx)
    return y0, min(h, round((top + size) * fy)), x0, min(w, round((left + size) * fx))


def resized_crop(x: torch.Tensor, short: int, top: int, left: int, size: int) -> torch.Tensor:
    """The ``size`` crop at (top, left) of ``x`` resized to short side ``short``.

    Crops the matching region of the source first and resizes only that region: the same
    picture as resizing the whole frame then cropping (up to sub-pixel rounding of the box),
    for a fraction of the resizing work.
    """
    y0, y1, x0, x1 = source_box(*x.shape[-2:], short, top, left, size)
    region = x[..., y0:y1, x0:x1]
    if region.shape[-2:] == (size, size):
        return region
    return _resize(region, [size, size])


def crop(x: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    return x[..., top : top + size, left : left + size]


def random_crop(x: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    h, w = x.shape[-2:]
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    return crop(x, top, left, size)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The centre ``size`` square, its offsets rounded down (:func:`~a2video.data.sampling.spread`:
    MMAction2's ``CenterCrop``)."""
    h, w = x.shape[-2:]
    return crop(x, spread(0, 1, h - size), spread(0, 1, w - size), size)


def three_crops(x: torch.Tensor, size: int, num_crops: int = 3) -> list[torch.Tensor]:
    """``num_crops`` square crops along the long side (the layout of PySlowFast's
    ``uniform_crop``, whose middle crop rounds up where this one and MMAction2's round down).

    Three crops are left/centre/right for a landscape clip, top/centre/bottom for a portrait
    one; one crop is the centre crop. Offsets are spread by :func:`~a2video.data.sampling.spread`
    (first and last at the edges, rounded down), so the middle of an odd number of crops is
    :func:`center_crop`, pixel for pixel.
    """
    h, w = x.shape[-2:]
    out = []
    for k in range(num_crops):
        if w >= h:
            out.append(crop(x, spread(0, 1, h - size), spread(k, num_crops, w - size), size))
        else:
            out.append(crop(x, spread(k, num_crops, h - size), spread(0, 1, w - size), size))
    return out


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (T, C, H, W) -> float (C, T, H, W), scaled to [0, 1] then normalised."""
    return normalize_batch(to_cthw(x), mean, std)


def to_cthw(x: torch.Tensor) -> torch.Tensor:
    """(T, C, H, W) -> dense (C, T, H, W) in the decoder's (T, H, W, C) memory order, dtype kept
    (the uint8 clip a worker returns).

    A view of a channels-last clip (what the resize makes), a copy of any other. Batched
    (:func:`stack_clips`) it is a ``channels_last_3d`` ``(N, C, T, H, W)``, the layout the
    network converts to anyway; the channels-first copy it used to be cost each worker 0.35 ms
    per 8×224² clip, a transposing copy of every byte.
    """
    return x.permute(0, 2, 3, 1).contiguous().permute(3, 0, 1, 2)


def stack_clips(
    clips: Sequence[torch.Tensor], shared: bool = False, into: torch.Tensor | None = None
) -> torch.Tensor:
    """``torch.stack(clips)`` in the first clip's memory order (channels-last clips give a
    ``channels_last_3d`` batch), on its device; in shared memory with ``shared`` (a DataLoader
    worker's batch, which crosses to the training process without a copy, as in
    ``default_collate``), or in ``into`` (1-D, exactly the batch's elements: a slot of
    :class:`a2video.data.ring.BatchRing`). Each clip is copied once, without transposing its
    bytes."""
    first = clips[0]
    order = sorted(range(first.dim()), key=lambda d: (-first.stride(d), d))  # outermost first
    shape = [len(clips), *(first.shape[d] for d in order)]
    if into is not None:
        out = into.view(first.dtype).view(shape)
    elif shared:
        numel = len(clips) * first.numel()
        storage = torch.UntypedStorage._new_shared(numel * first.element_size())
        out = torch.empty(0, dtype=first.dtype).set_(storage).view(shape)
    else:
        out = torch.empty(shape, dtype=first.dtype, device=first.device)
    out = out.permute(0, *(1 + order.index(d) for d in range(first.dim())))
    for i, clip in enumerate(clips):
        out[i].copy_(clip)
    return out


# (mean, std, dtype, device) -> the (C, 1, 1, 1) mean and std tensors on that device
_MEAN_STD: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _mean_std(
    mean: Sequence[float], std: Sequence[float], dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean`` and ``std`` as ``(C, 1, 1, 1)`` tensors on ``device``, made there once.

    A tensor made from host numbers per batch is a blocking host-to-device copy on a GPU (it
    waits for every queued kernel), i.e. a host sync every training step. Traced code
    (``torch.compile``) builds them in the graph instead, where Inductor folds them into the
    kernel as constants.
    """

    def make() -> tuple[torch.Tensor, torch.Tensor]:
        m, s = (torch.tensor(v, dtype=dtype, device=device).view(-1, 1, 1, 1) for v in (mean, std))
        return m, s

    if torch.compiler.is_compiling():
        return make()
    key = (tuple(mean), tuple(std), dtype, device)
    if key not in _MEAN_STD:
        _MEAN_STD[key] = make()
    return _MEAN_STD[key]


def normalize_batch(
    video: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """uint8 ``(..., C, T, H, W)`` -> float, ``(x / 255 - mean) / std`` per channel.

    Runs where ``video`` is (the DataModules call it on the device after the transfer), with no
    host sync; the same operations in the same order as the CPU path, so the same floats.
    """
    x = video.float().div_(255.0)
    m, s = _mean_std(mean, std, x.dtype, x.device)
    return x.sub_(m).div_(s)


def finish(
    x: torch.Tensor, mean: Sequence[float], std: Sequence[float], uint8: bool = False
) -> torch.Tensor:
    """A transformed uint8 (T, C, H, W) clip as the dataset returns it: uint8 or normalised."""
    return to_cthw(x) if uint8 else normalize(x, mean, std)


def train_transform(
    frames: torch.Tensor,
    rng: np.random.Generator,
    scale: Sequence[int],
    crop_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    flip: bool = True,
    uint8: bool = False,
) -> torch.Tensor:
    """Random short side in ``scale`` (inclusive), random crop, random horizontal flip.

    Returns normalised float (C, T, S, S), or uint8 with ``uint8=True``.
    """
    x = to_tchw(frames)
    short = int(rng.integers(scale[0], scale[1] + 1))
    new_h, new_w = short_side_shape(x.shape[-2], x.shape[-1], short)
    top = int(rng.integers(0, new_h - crop_size + 1))
    left = int(rng.integers(0, new_w - crop_size + 1))
    x = resized_crop(x, short, top, left, crop_size)
    if flip and rng.random() < 0.5:
        x = x.flip(-1)
    return finish(x, mean, std, uint8)


def eval_transform(
    frames: torch.Tensor,
    scale: int,
    crop_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    uint8: bool = False,
) -> torch.Tensor:
    """Short side ``scale``, centre crop."""
    x = to_tchw(frames)
    new_h, new_w = short_side_shape(x.shape[-2], x.shape[-1], scale)
    top, left = spread(0, 1, new_h - crop_size), spread(0, 1, new_w - crop_size)
    x = resized_crop(x, scale, top, left, crop_size)
    return finish(x, mean, std, uint8)


def multi_view_transform(
    frames: torch.Tensor,
    clips: Sequence[Sequence[int]],
    scale: int,
    crop_size: int,
    num_crops: int,
    mean: Sequence[float],
    std: Sequence[float],
    uint8: bool = False,
) -> torch.Tensor:
    """All views of one video from its frames decoded once.

    Args:
        frames: the distinct decoded frames (N, H, W, 3), resized once for every view.
        clips: for each temporal clip, the positions of its frames in ``frames``.

    Returns:
        (len(clips) * num_crops, 3, T, S, S), clip-major: view ``c * num_crops + s``.
    """
    x = short_side_resize(to_tchw(frames), scale)  # (N, 3, h, w), resized once
    return multi_view_crops(x, clips, crop_size, num_crops, mean, std, uint8)


def multi_view_crops(
    x: torch.Tensor,
    clips: Sequence[Sequence[int]],
    crop_size: int,
    num_crops: int,
    mean: Sequence[float],
    std: Sequence[float],
    uint8: bool = False,
) -> torch.Tensor:
    """:func:`multi_view_transform` of frames ``x`` (N, 3, h, w) already resized to the test
    scale (each frame as decoded: :meth:`VideoClipDataset._test_views
    <a2video.data.datasets.VideoClipDataset>` resizes them chunk by chunk)."""
    views = []
    for positions in clips:
        clip = select_frames(x, positions)  # (T, 3, h, w)
        views.extend(finish(c, mean, std, uint8) for c in three_crops(clip, crop_size, num_crops))
    return stack_clips(views)
