"""Plots and attention capture: what is drawn, read back from the figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba
from torch import nn

from a2video.explore import viz
from a2video.explore.attention_maps import attention_blocks, capture_attention, descriptor_usage
from a2video.models import DoubleAttention

NAMES = [f"class_{i}" for i in range(7)]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _frames(t: int = 8, h: int = 16, w: int = 20) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


def _bars(ax) -> list:
    return list(ax.patches)


# ---------------------------------------------------------------- frames and top-k


def test_denormalize_inverts_the_normalisation():
    frames = _frames()
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    video = torch.from_numpy(frames).float().div(255).permute(3, 0, 1, 2)  # (3, T, H, W)
    video = (video - torch.tensor(mean)[:, None, None, None]) / torch.tensor(std)[
        :, None, None, None
    ]
    np.testing.assert_array_equal(viz.denormalize(video, mean, std), frames)


def test_frame_indices_are_spread_over_the_clip():
    assert viz.frame_indices(8, 4) == [1, 3, 5, 7]
    assert viz.frame_indices(3, 10) == [0, 1, 2]
    assert viz.frame_indices(16, 1) == [8]


def test_clip_topk_draws_frames_and_the_k_best_scores_in_order():
    frames = _frames()
    scores = np.array([0.05, 0.4, 0.02, 0.3, 0.1, 0.08, 0.05])
    fig = viz.plot_clip_topk(frames, scores, NAMES, k=5, label=3, num_frames=4)
    axes = fig.axes
    assert len(axes) == 5
    for ax, t in zip(axes[:4], viz.frame_indices(8, 4), strict=True):
        np.testing.assert_array_equal(ax.images[0].get_array(), frames[t])
    bars = _bars(axes[4])
    assert len(bars) == 5
    # Drawn top to bottom: the best score has the highest y.
    bars = sorted(bars, key=lambda b: -b.get_y())
    np.testing.assert_allclose([b.get_width() for b in bars], [0.4, 0.3, 0.1, 0.08, 0.05])
    # Each name is written inside its bar's row (long names never run into the frames).
    names = [(t.get_position()[1], t.get_text()) for t in axes[4].texts if t.get_text() in NAMES]
    by_height = [name for _, name in sorted(names, reverse=True)]
    assert by_height == ["class_1", "class_3", "class_4", "class_5", "class_0"]
    # The wrong top-1 is red, the true class green, the others grey.
    assert bars[0].get_facecolor() == to_rgba(viz.WRONG_COLOR, 0.45)
    assert bars[1].get_facecolor() == to_rgba(viz.CORRECT_COLOR, 0.45)
    assert bars[2].get_facecolor() == to_rgba(viz.OTHER_COLOR, 0.45)


def test_mistake_gallery_has_one_row_per_clip_with_its_title():
    items = [{"frames": _frames(), "scores": np.eye(7)[i], "label": (i + 1) % 7} for i in range(3)]
    fig = viz.plot_mistake_gallery(items, NAMES, k=3, num_frames=2)
    assert len(fig.axes) == 3 * 3
    titles = [sub._suptitle.get_text() for sub in fig.subfigs]  # one line above each row
    assert titles[0] == "true: class_1  |  predicted: class_0 (1.00)"
    assert titles[2] == "true: class_3  |  predicted: class_2 (1.00)"
    missing = viz.plot_mistake_gallery([{**items[0], "frames": None, "missing": "gone"}], NAMES)
    assert "gone" in [t.get_text() for t in missing.axes[0].texts]
    with pytest.raises(ValueError, match="empty"):
        viz.plot_mistake_gallery([], NAMES)


# ---------------------------------------------------------------- accuracy plots


def test_confusion_matrix_image_is_the_row_normalised_matrix():
    cm = np.array([[3, 1, 0], [0, 0, 0], [2, 0, 2]])
    ax = viz.plot_confusion_matrix(cm, NAMES[:3])
    expected = np.array([[0.75, 0.25, 0], [0, 0, 0], [0.5, 0, 0.5]])
    np.testing.assert_allclose(ax.images[0].get_array(), expected)
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES[:3]
    # One annotation per non-empty cell.
    assert sorted(t.get_text() for t in ax.texts) == ["0.25", "0.50", "0.50", "0.75"]
    raw = viz.plot_confusion_matrix(cm, NAMES[:3], normalize=False)
    np.testing.assert_array_equal(raw.images[0].get_array(), cm)


def test_per_class_accuracy_puts_the_worst_class_on_top_and_skips_absent_classes():
    acc = np.array([0.9, np.nan, 0.2, 0.5])
    ax, hist = viz.plot_per_class_accuracy(acc, NAMES[:4], overall=0.6).axes
    assert sum(p.get_height() for p in hist.patches) == 3  # every present class, once
    bars = sorted(_bars(ax), key=lambda b: -b.get_y())
    np.testing.assert_allclose([b.get_width() for b in bars], [0.2, 0.5, 0.9])
    labels = dict(zip(ax.get_yticks(), [t.get_text() for t in ax.get_yticklabels()], strict=True))
    assert [labels[y] for y in sorted(labels, reverse=True)] == ["class_2", "class_3", "class_0"]
    assert ax.lines[0].get_xdata()[0] == pytest.approx(0.6)


def test_accuracy_vs_views_draws_one_line_per_crop_count():
    table = {(1, 1): 0.5, (3, 1): 0.6, (10, 1): 0.7, (1, 3): 0.55, (3, 3): 0.65, (10, 3): 0.75}
    ax = viz.plot_accuracy_vs_views(table)
    lines = {line.get_label(): line for line in ax.lines}
    assert set(lines) == {"1 crop", "3 crops"}
    np.testing.assert_array_equal(lines["1 crop"].get_xdata(), [1, 3, 10])
    np.testing.assert_allclose(lines["3 crops"].get_ydata(), [0.55, 0.65, 0.75])


def test_view_estimates_are_drawn_hollow_and_marked():
    """Subsets that are not a smaller test's views (1, 3 of 10 clips) are said to be estimates."""
    table = {(1, 1): 0.5, (2, 1): 0.55, (3, 1): 0.6, (10, 1): 0.7, (10, 3): 0.75}
    fig = viz.plot_view_summary(
        table, dict.fromkeys(("clip top-1", "clip top-5", "video top-1", "video top-5"), 0.5),
        approximate=[(1, 1), (3, 1)],
    )  # fmt: skip
    lines, bars = fig.axes
    texts = sorted(t.get_text() for t in lines.texts)
    assert texts == ["0.550", "0.700", "0.750", "≈0.500", "≈0.600"]
    (hollow,) = lines.collections
    np.testing.assert_array_equal(hollow.get_offsets(), [[1, 0.5], [3, 0.6]])
    assert "estimate" in hollow.get_label() and "≈" in bars.get_title()


# ---------------------------------------------------------------- attention maps


def test_upsample_maps_keeps_constants_and_places_a_peak_where_it_was():
    const = np.full((2, 2, 4, 5), 0.25)
    up = viz.upsample_maps(const, (8, 16, 20))
    assert up.shape == (2, 8, 16, 20)
    np.testing.assert_allclose(up, 0.25, atol=1e-6)
    peak = np.zeros((1, 2, 4, 4))
    peak[0, 1, 3, 0] = 1.0  # second time step, bottom-left cell
    up = viz.upsample_maps(peak, (8, 16, 16))[0]
    t, y, x = np.unravel_index(up.argmax(), up.shape)
    assert t >= 4 and y >= 12 and x < 4


def test_attention_maps_overlay_each_max_scaled_map_on_its_frame():
    frames = _frames(t=8, h=16, w=16)
    maps = np.random.default_rng(1).random((6, 2, 4, 4))
    fig = viz.plot_attention_maps(frames, maps, descriptors=[0, 5], num_frames=4, title="B")
    axes = np.array(fig.axes).reshape(2, 4)
    up = viz.upsample_maps(maps[[0, 5]], (8, 16, 16))
    up /= up.reshape(2, -1).max(1)[:, None, None, None]
    times = viz.frame_indices(8, 4)
    for r in range(2):
        for c, t in enumerate(times):
            frame_img, map_img = axes[r, c].images
            np.testing.assert_array_equal(frame_img.get_array(), frames[t])
            np.testing.assert_allclose(map_img.get_array(), up[r, t], rtol=1e-6)
    assert axes[1, 0].get_ylabel() == "desc. 5"
    assert max(float(axes[r, c].images[1].get_array().max()) for r in range(2) for c in range(4))
    assert fig._suptitle.get_text() == "B"


def test_descriptor_usage_plot_marks_the_top_descriptors_of_each_class():
    usage = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    ax = viz.plot_descriptor_usage(usage, NAMES[:2], top=1)
    np.testing.assert_allclose(ax.images[0].get_array(), usage)
    marks = ax.collections[0].get_offsets()
    assert sorted(map(tuple, np.asarray(marks).tolist())) == [(0.0, 1.0), (1.0, 0.0)]


class _TwoBlockNet(nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv3d(3, 8, kernel_size=3, stride=(1, 2, 2), padding=1)
        self.attn1 = DoubleAttention(8, m=4, n=4, zero_init=False)
        self.down = nn.Conv3d(8, 8, kernel_size=3, stride=2, padding=1)
        self.attn2 = DoubleAttention(8, m=2, n=3, zero_init=False)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn2(self.down(self.attn1(self.stem(x))))
        return self.fc(x.mean((2, 3, 4)))


def test_capture_attention_records_b_and_v_on_each_blocks_grid():
    net = _TwoBlockNet().eval()
    clip = torch.randn(2, 3, 4, 16, 16)
    expected = net(clip)
    with capture_attention(net) as maps:
        out = net(clip)
    torch.testing.assert_close(out, expected)  # capturing does not change the output
    assert [m.name for m in maps] == ["attn1", "attn2"]
    assert maps[0].gather.shape == (2, 4, 4, 8, 8) and maps[0].grid == (4, 8, 8)
    assert maps[1].distribute.shape == (2, 3, 2, 4, 4)
    for m in maps:
        torch.testing.assert_close(m.gather.sum((2, 3, 4)), torch.ones(m.gather.shape[:2]))
        torch.testing.assert_close(m.distribute.sum(1), torch.ones(2, *m.grid))
    # The recorded maps are the block's own descriptors, laid out (t, h, w) on the grid.
    _, b, v = net.attn1.descriptors(net.stem(clip))
    torch.testing.assert_close(maps[0].gather.flatten(2), b)
    torch.testing.assert_close(maps[0].distribute.flatten(2), v)
    # Hooks are gone after the context.
    net(clip)
    assert len(maps) == 2
    assert all(not block._forward_pre_hooks for _, block in attention_blocks(net))


def test_descriptor_usage_averages_v_per_class():
    net = _TwoBlockNet().eval()
    videos = torch.randn(4, 2, 3, 4, 16, 16)  # (B, views, 3, T, H, W)
    labels = torch.tensor([0, 0, 2, 2])
    usage = descriptor_usage(net, [(videos[:2], labels[:2]), (videos[2:], labels[2:])], 3)
    assert set(usage) == {"attn1", "attn2"}
    assert usage["attn1"].shape == (3, 4) and usage["attn2"].shape == (3, 3)
    torch.testing.assert_close(usage["attn1"][[0, 2]].sum(1), torch.ones(2))
    torch.testing.assert_close(usage["attn1"][1], torch.zeros(4))  # no video of class 1
    with capture_attention(net) as maps:
        net(videos[:2].flatten(0, 1))
    first = maps[0].distribute.flatten(2).mean(2).mean(0)  # class 0: both videos, all views
    torch.testing.assert_close(usage["attn1"][0], first)
