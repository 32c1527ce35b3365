"""Temporal sampling and spatial transforms (PySlowFast / MMAction2 conventions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from a2video.data import sampling, transforms


def test_train_clip_is_strided_and_inside_the_video():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(200):
        idx = sampling.train_clip(100, 8, 4, rng)
        assert len(idx) == 8 and np.all(np.diff(idx) == 4)
        assert idx[0] >= 0 and idx[-1] <= 99
        starts.add(idx[0])
    assert min(starts) == 0 and max(starts) == 100 - 29  # every start reachable


def test_short_video_is_sampled_with_repetition():
    """Fewer frames than T x stride: indices clamp to the last frame (PySlowFast)."""
    idx = sampling.train_clip(10, 8, 4, np.random.default_rng(0))
    assert idx == [0, 4, 8, 9, 9, 9, 9, 9]
    assert sampling.center_clip(1, 8, 8) == [0] * 8


def test_center_clip():
    assert sampling.center_clip(100, 8, 4) == [35 + 4 * i for i in range(8)]


@pytest.mark.parametrize("num_frames", [40, 101, 300])
def test_test_views_cover_the_video_uniformly(num_frames):
    clips = sampling.multi_clip(num_frames, 8, 4, 10)
    starts = [c[0] for c in clips]
    span = sampling.clip_span(8, 4)
    assert starts[0] == 0 and clips[-1][-1] == num_frames - 1  # first and last frames covered
    gaps = np.diff(starts)
    assert gaps.max() - gaps.min() <= 1  # equally spaced
    assert starts[-1] == num_frames - span
    # when the clips' spans can cover the video, every frame lies within one of them
    covered = np.zeros(num_frames, bool)
    for c in clips:
        covered[c[0] : c[-1] + 1] = True
    assert covered.all() == (10 * span >= num_frames)


def test_three_crops_left_centre_right():
    x = torch.arange(40 * 64).view(1, 1, 40, 64).expand(2, 3, 40, 64)
    crops = transforms.three_crops(x, 40, 3)
    assert [c[0, 0, 0, 0].item() for c in crops] == [0, 12, 24]
    tall = torch.zeros(2, 3, 64, 40)
    assert all(c.shape[-2:] == (40, 40) for c in transforms.three_crops(tall, 40, 3))


def test_train_and_eval_transform_shapes_and_normalisation():
    frames = torch.full((4, 48, 64, 3), 128, dtype=torch.uint8)
    rng = np.random.default_rng(0)
    out = transforms.train_transform(
        frames, rng, (40, 48), 32, transforms.IMAGENET_MEAN, transforms.IMAGENET_STD
    )
    assert out.shape == (3, 4, 32, 32) and out.dtype == torch.float32
    expected = (128 / 255 - transforms.IMAGENET_MEAN[0]) / transforms.IMAGENET_STD[0]
    assert torch.allclose(out[0], torch.full_like(out[0], expected), atol=1e-5)
    ev = transforms.eval_transform(frames, 40, 32, (0.5,) * 3, (0.25,) * 3)
    assert ev.shape == (3, 4, 32, 32)


def test_multi_view_from_one_decode_equals_views_made_one_by_one():
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (60, 48, 64, 3), generator=g, dtype=torch.uint8)
    clips = sampling.multi_clip(60, 4, 3, 5)
    flat = sorted({i for c in clips for i in c})
    pos = {v: k for k, v in enumerate(flat)}
    views = transforms.multi_view_transform(
        video[flat], [[pos[i] for i in c] for c in clips], 40, 32, 3, (0.5,) * 3, (0.25,) * 3
    )
    assert views.shape == (15, 3, 4, 32, 32)
    for c, clip in enumerate(clips):
        x = transforms.short_side_resize(transforms.to_tchw(video[clip]), 40)
        for s, crop in enumerate(transforms.three_crops(x, 32, 3)):
            one = transforms.normalize(crop, (0.5,) * 3, (0.25,) * 3)
            assert torch.allclose(views[c * 3 + s], one)  # clip-major order


def test_resized_crop_matches_resize_then_crop():
    """Cropping the source region first gives the resize-then-crop picture (within rounding)."""
    yy, xx = torch.meshgrid(torch.arange(240.0), torch.arange(320.0), indexing="ij")
    smooth = ((yy + 2 * xx) / 4).to(torch.uint8).expand(2, 3, 240, 320)  # a smooth ramp
    full = transforms.crop(transforms.short_side_resize(smooth, 256), 10, 40, 224)
    fast = transforms.resized_crop(smooth, 256, 10, 40, 224)
    assert fast.shape == full.shape
    assert (fast.float() - full.float()).abs().mean() < 1.5


@pytest.mark.parametrize("hw", [(256, 340), (240, 320), (340, 256), (97, 131)])
def test_transforms_on_channels_last_view_equal_a_channels_first_copy(hw):
    """The resize reads the decoder's (T, H, W, 3) frames as a view: the same bytes as a copy."""
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (4, *hw, 3), generator=g, dtype=torch.uint8)
    view = transforms.to_tchw(frames)
    assert view.data_ptr() == frames.data_ptr()  # no copy
    copy = view.contiguous()
    for short in (224, 256, 300):
        h, w = transforms.short_side_shape(*hw, short)
        assert torch.equal(
            transforms.resized_crop(view, short, h - 224, w - 224, 224),
            transforms.resized_crop(copy, short, h - 224, w - 224, 224),
        )
        assert torch.equal(
            transforms.short_side_resize(view, short), transforms.short_side_resize(copy, short)
        )
    rng = np.random.default_rng(3)
    out = transforms.train_transform(frames, rng, (256, 320), 224, (0.5,) * 3, (0.25,) * 3)
    assert out.shape == (3, 4, 224, 224)
    assert out.permute(1, 2, 3, 0).is_contiguous()  # dense in the frames' (T, H, W, C) order
