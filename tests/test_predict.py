"""Inference: view parsing and subsets, the accuracy analyses, and predicting files and test sets
with a tiny checkpoint trained in the session."""

from __future__ import annotations

import pytest
import torch

from a2video.predict import (
    DatasetPredictions,
    accuracy_by_views,
    confusion_matrix,
    most_confused_pairs,
    parse_views,
    per_class_accuracy,
    view_subset,
)

# ---------------------------------------------------------------- views


def test_parse_views_reads_clips_by_crops():
    assert parse_views("10x3") == (10, 3)
    assert parse_views("1") == (1, 1)
    assert parse_views("3×1") == (3, 1)
    for bad in ("0x3", "10x2", "ax3", "10x3x1", ""):
        with pytest.raises(ValueError, match="CLIPSxCROPS"):
            parse_views(bad)


def test_view_subset_picks_the_decoded_clips_nearest_to_a_smaller_decode():
    # 10x3 decode, clip-major (view c*3 + s), crops left/centre/right.
    assert view_subset(10, 3, 1, 1) == [16]  # centre clip 5, centre crop 1
    assert view_subset(10, 3, 1, 3) == [15, 16, 17]
    assert view_subset(10, 3, 3, 1) == [1, 16, 28]  # clips 0, 5, 9: first, centre, last
    assert view_subset(10, 3, 10, 3) == list(range(30))
    assert view_subset(4, 1, 2, 1) == [0, 3]
    with pytest.raises(ValueError):
        view_subset(3, 1, 10, 1)
    with pytest.raises(ValueError):
        view_subset(10, 3, 1, 2)


def test_accuracy_by_views_averages_the_softmax_of_each_subset():
    # Two videos, 3 clips x 1 crop, 2 classes. Video 0: only its centre clip is right;
    # video 1: only its last clip is right, and strongly.
    scores = torch.tensor(
        [
            [[0.4, 0.6], [0.9, 0.1], [0.4, 0.6]],  # label 0
            [[0.6, 0.4], [0.6, 0.4], [0.0, 1.0]],  # label 1
        ]
    )
    table = accuracy_by_views(scores, torch.tensor([0, 1]), 3, 1, clips=(1, 3, 10), crops=(1, 3))
    assert table == {(1, 1): 0.5, (3, 1): 1.0}  # 10 clips and 3 crops exceed the decode


# ---------------------------------------------------------------- confusion


def test_confusion_matrix_per_class_accuracy_and_most_confused_pairs():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    preds = torch.tensor([0, 1, 1, 1, 2, 2, 2, 0, 2])
    cm = confusion_matrix(labels, preds, 4)
    assert cm.tolist() == [[1, 2, 0, 0], [0, 1, 1, 0], [1, 0, 3, 0], [0, 0, 0, 0]]
    acc = per_class_accuracy(cm)
    torch.testing.assert_close(acc[:3], torch.tensor([1 / 3, 0.5, 0.75], dtype=torch.float64))
    assert torch.isnan(acc[3])  # no video of class 3
    names = ["a", "b", "c", "d"]
    pairs = most_confused_pairs(cm, names, k=2)
    assert pairs[0] == {"true": "a", "predicted": "b", "count": 2, "fraction": 2 / 3}
    # Ties in count break on the larger fraction: b->c is half of b, c->a a quarter of c.
    assert (pairs[1]["true"], pairs[1]["predicted"]) == ("b", "c")
    assert len(most_confused_pairs(cm, names, k=10)) == 3


def test_dataset_predictions_score_valid_videos_only():
    scores = torch.tensor([[[0.9, 0.1]], [[0.2, 0.8]], [[0.5, 0.5]]])
    preds = DatasetPredictions(
        view_scores=scores,
        labels=torch.tensor([0, 0, 1]),
        index=torch.arange(3),
        valid=torch.tensor([True, True, False]),
        clips=1,
        crops=1,
    )
    assert preds.accuracy() == 0.5
    assert len(preds.only_valid().labels) == 2
