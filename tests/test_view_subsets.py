"""The view subsets a K×3 test reports as a smaller test's scores are that test's views.

Clip starts and crop offsets share one rounding rule (``sampling.spread``), so a subset that
:func:`subset_is_exact` calls exact (the middle clip of an odd count, 2 clips of any, 3 of 5, the
centre crop of 3) holds the very frames and pixels a smaller test decodes, and its accuracy is
that test's; the others (1, 3, 5 of 10 clips) are estimates, and are said to be. The sizes below
hit the cases where rounding half-to-even or half-up would differ from rounding down: an odd
number of frames to spread the clips over (``delta``) and an odd crop margin (``w - S``).
"""

from __future__ import annotations

import pytest
import torch

from a2video.data import sampling, transforms
from a2video.training.metrics import view_subsets
from a2video.training.views import subset_is_exact, view_subset

FRAMES, STRIDE, CROP = 4, 2, 32
SPAN = sampling.clip_span(FRAMES, STRIDE)  # 7


def _views(video: torch.Tensor, clips: int, crops: int, scale: int) -> torch.Tensor:
    """The uint8 test views of an in-memory video (N, H, W, 3), as the test dataset makes them:
    the union of the clips' frames, resized once, each clip cropped."""
    starts = sampling.multi_clip(video.shape[0], FRAMES, STRIDE, clips)
    flat = sorted({i for clip in starts for i in clip})
    pos = {v: k for k, v in enumerate(flat)}
    positions = [[pos[i] for i in clip] for clip in starts]
    mean = std = (0.5,) * 3
    return transforms.multi_view_transform(
        video[flat], positions, scale, CROP, crops, mean, std, uint8=True
    )


def _claimed(clips: int, crops: int) -> list[tuple[int, int]]:
    return [(n, s) for n, s in view_subsets(clips, crops) if n]


def test_spread_is_one_rounding_rule_with_the_ends_and_the_middle():
    assert [sampling.spread(k, 3, 43) for k in range(3)] == [0, 21, 43]  # 21.5 rounds down
    assert sampling.spread(0, 1, 43) == 21
    assert [sampling.spread(k, 5, 7) for k in range(5)] == [0, 1, 3, 5, 7]
    assert sampling.uniform_clip_starts(SPAN + 7, FRAMES, STRIDE, 1) == [3]
    assert sampling.uniform_clip_starts(SPAN + 7, FRAMES, STRIDE, 3) == [0, 3, 7]
    assert sampling.center_clip(SPAN + 7, FRAMES, STRIDE)[0] == 3


def test_which_subsets_are_exact():
    approximate = {(n, s) for n, s in _claimed(10, 3) if not subset_is_exact(10, 3, n, s)}
    assert approximate == {(1, 1), (1, 3), (3, 1), (3, 3), (5, 1), (5, 3)}
    for clips, crops in ((3, 3), (5, 3), (5, 1), (1, 3)):
        assert all(subset_is_exact(clips, crops, n, s) for n, s in _claimed(clips, crops))
    assert not subset_is_exact(2, 3, 1, 3) and not subset_is_exact(10, 2, 10, 1)


def test_a_10x3_run_lists_its_estimates_and_leaves_them_out_when_asked():
    from a2video.explore.results import RunResults

    columns = view_subsets(10, 3)
    n = 4
    run = RunResults(
        index=torch.arange(n), labels=torch.zeros(n, dtype=torch.long),
        valid=torch.ones(n, dtype=torch.bool), probs=torch.eye(3)[[0, 0, 0, 1]],
        clip_topk_scores=torch.ones(n, 1), clip_topk_classes=torch.zeros(n, 1, dtype=torch.long),
        class_names=["a", "b", "c"], video_names=[""] * n,
        subset_pred=torch.zeros(n, len(columns), dtype=torch.long), subsets=columns,
        views=(10, 3),
    )  # fmt: skip
    assert run.approximate_views() == [(1, 1), (1, 3), (3, 1), (3, 3), (5, 1), (5, 3)]
    assert list(run.accuracy_by_views(exact_only=True)) == [(2, 1), (2, 3), (10, 1), (10, 3)]
    assert len(run.accuracy_by_views()) == 10


@pytest.mark.parametrize(("clips", "crops"), [(3, 3), (5, 3), (10, 3), (4, 3), (5, 1)])
def test_every_exact_subset_has_a_smaller_tests_frames_and_no_other_does(clips, crops):
    for n, s in _claimed(clips, crops):
        differ = []
        for num_frames in range(1, 120):
            big = sampling.multi_clip(num_frames, FRAMES, STRIDE, clips)
            picked = [big[v // crops] for v in view_subset(clips, crops, n, s)[::s]]
            differ.append(picked != sampling.multi_clip(num_frames, FRAMES, STRIDE, n))
        # exact: the same frames for every video; otherwise: not the same for most lengths
        assert not any(differ) if subset_is_exact(clips, crops, n, s) else sum(differ) > 60


@pytest.mark.parametrize(
    ("size", "scale"),
    [((40, 75), 40), ((75, 40), 40), ((48, 64), 38)],  # crop margins 43, 43, 19 (after resize)
)
@pytest.mark.parametrize(("clips", "crops"), [(3, 3), (5, 3), (10, 3)])
def test_exact_subsets_are_a_smaller_tests_views_pixel_for_pixel(size, scale, clips, crops):
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (SPAN + 7, *size, 3), generator=g, dtype=torch.uint8)  # delta 7
    big = _views(video, clips, crops, scale)
    exact = [(n, s) for n, s in _claimed(clips, crops) if subset_is_exact(clips, crops, n, s)]
    assert (2, 1) in exact and (clips, crops) in exact
    for n, s in exact:
        small = _views(video, n, s, scale)
        assert torch.equal(big[view_subset(clips, crops, n, s)], small), (n, s)
    if clips % 2:  # the centre view (test/clip_top1) is the 1×1 test's one view
        assert torch.equal(big[sampling.centre_view(clips, crops)], _views(video, 1, 1, scale)[0])


# ------------------------------------------------------------------ end to end: decoded videos


def _rounding_stride(dataset) -> int:
    """A stride at which some test video spreads its clips over an odd ``delta`` whose half
    rounds differently up (or half-to-even) and down: ``delta % 4 == 3``."""
    lengths = []
    for record in dataset.records:
        reader = dataset.decoder.open(record.path)
        lengths.append(reader.num_frames)
        reader.close()
    for stride in range(1, 8):
        if any((n - sampling.clip_span(FRAMES, stride)) % 4 == 3 for n in lengths):
            return stride
    raise AssertionError(f"no stride hits an odd delta for frame counts {lengths}")


@pytest.mark.timeout(120)
def test_accuracy_by_views_is_a_real_smaller_tests_top1(ucf_root, tmp_path):
    """A 3×3 test's subsets (3×1, 1×3, 1×1, 2×3) and its centre view score exactly what a real
    smaller test scores, video by video, on decoded 64×48 videos (crop margin 19 at scale 38)."""
    from lightning.pytorch import Trainer

    from a2video.data import UCF101DataModule
    from a2video.explore.results import RunResults
    from a2video.training.module import VideoClassifier

    def data(clips: int, crops: int, stride: int) -> UCF101DataModule:
        return UCF101DataModule(
            ucf_root, test_split="train", frames=FRAMES, stride=stride, train_scale=(38, 40),
            crop_size=CROP, test_scale=38, num_clips=clips, num_crops=crops,
            test_batch_size=4, num_workers=0,
        )  # fmt: skip

    probe = data(1, 1, STRIDE)
    probe.setup("test")
    stride = _rounding_stride(probe.datasets["test"])
    # a network whose every logit hangs on every pixel (an untrained A²-Net predicts one class
    # for every view): a view with other pixels or frames gives another top-1
    torch.manual_seed(0)
    probe_net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * FRAMES * CROP**2, 4))
    results = {}
    for layout in ((3, 3), (3, 1), (1, 3), (1, 1), (2, 3)):
        dm = data(*layout, stride)
        model = VideoClassifier(arch="a2net_tiny", num_classes=4, clip_spec=dm.spec)
        model.net = probe_net
        trainer = Trainer(
            accelerator="cpu", logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        )  # fmt: skip
        trainer.test(model, datamodule=dm, verbose=False)
        results[layout] = model.video_results
    full = results[(3, 3)]
    assert len(full) == 8 and full.valid.all()
    columns = [tuple(c) for c in view_subsets(3, 3)]
    run = RunResults(
        index=full.index, labels=full.label, valid=full.valid, probs=full.probs,
        clip_topk_scores=full.probs[:, :1], clip_topk_classes=full.probs[:, :1].long(),
        class_names=[str(c) for c in range(4)], video_names=[""] * 8,
        subset_pred=full.subset_pred, subsets=columns, views=(3, 3),
    )  # fmt: skip
    assert run.approximate_views() == []
    by_views = run.accuracy_by_views()
    for layout in ((3, 1), (1, 3), (1, 1), (2, 3)):
        real = results[layout]
        gap = real.probs.topk(2, dim=1).values.diff(dim=1).abs()
        assert (gap > 1e-4).all()  # no near-tie for the forward's float noise to flip
        assert torch.equal(full.subset_pred[:, columns.index(layout)], real.probs.argmax(1))
        top1 = (real.probs.argmax(1) == real.label).float().mean()
        assert by_views[layout] == pytest.approx(float(top1))
    # the centre view (test/clip_top1) is the 1×1 test's one view
    torch.testing.assert_close(full.clip_probs, results[(1, 1)].clip_probs, rtol=1e-5, atol=1e-6)


def test_a_scores_file_from_before_the_view_rule_calls_no_subset_exact(tmp_path):
    """A 3×3 test's subsets are exact under ``sampling.spread``; a scores.npz written before
    that rule (no ``view_rule`` array) placed its middle crop and clip by another rounding, so
    every subset but all nine views is read back as an estimate (``≈`` in the figures)."""
    import numpy as np

    from a2video.explore.results import load_run, save_results
    from a2video.training.metrics import VideoResults

    n, columns = 4, view_subsets(3, 3)
    probs = torch.eye(3)[[0, 0, 1, 2]]
    results = VideoResults(
        index=torch.arange(n), label=torch.zeros(n, dtype=torch.long),
        valid=torch.ones(n, dtype=torch.bool), probs=probs, clip_probs=probs, views=(3, 3),
        view_topk_scores=torch.ones(n, 9, 3),
        view_topk_classes=torch.zeros(n, 9, 3, dtype=torch.long),
        subset_pred=torch.zeros(n, len(columns), dtype=torch.long),
    )  # fmt: skip
    path = save_results(tmp_path / "scores.npz", results, stage="test")
    assert load_run(path).view_rule == "spread" and load_run(path).approximate_views() == []
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "view_rule"}
    np.savez_compressed(path, **arrays)
    old = load_run(path)
    assert old.view_rule is None
    assert old.approximate_views() == [(1, 1), (1, 3), (2, 1), (2, 3), (3, 1)]
    assert list(old.accuracy_by_views(exact_only=True)) == [(3, 3)]
