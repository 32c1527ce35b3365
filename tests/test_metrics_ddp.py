"""Video-level metrics are exact under DDP: one, two and three CPU processes (gloo) give the same
per-video predictions and metrics on an odd-sized test set, whatever padding the sampler adds:
every video counted exactly once, none lost, none double-counted."""

from __future__ import annotations

import csv

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ports import free_port
from torch.utils.data import DistributedSampler

from a2video.training.metrics import (
    VideoAccumulator,
    VideoResults,
    gather_uneven,
    video_metrics,
    write_predictions_csv,
)

N_VIDEOS, N_CLASSES = 11, 5


def _video_rows(i: int) -> tuple[int, torch.Tensor, torch.Tensor, bool]:
    g = torch.Generator().manual_seed(i)
    probs = torch.rand(N_CLASSES, generator=g).softmax(0)
    clip = torch.rand(N_CLASSES, generator=g).softmax(0)
    return i % N_CLASSES, probs, clip, i != 4  # video 4 is unreadable


def _evaluate(indices: list[int]) -> VideoResults:
    acc = VideoAccumulator(N_CLASSES)
    for start in range(0, len(indices), 2):  # batches of 2
        batch = indices[start : start + 2]
        rows = [_video_rows(i) for i in batch]
        acc.update(
            torch.tensor(batch),
            torch.tensor([r[0] for r in rows]),
            torch.stack([r[1] for r in rows]),
            torch.stack([r[2] for r in rows]),
            torch.tensor([r[3] for r in rows]),
        )
    return acc.compute()


def _worker(rank: int, world: int, port: int, out: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        # torch's DistributedSampler repeats videos so that every rank gets as many
        padded = _evaluate(list(DistributedSampler(range(N_VIDEOS), world, rank, shuffle=False)))
        # unpadded shards where the last rank saw no video: it must still join the gather
        empty = _evaluate([] if rank == world - 1 else list(range(N_VIDEOS))[rank::world])
        if rank == 0:
            torch.save({"padded": padded.__dict__, "empty": empty.__dict__}, out)
    finally:
        dist.destroy_process_group()


def _run_ranks(world: int, tmp_path) -> dict[str, VideoResults]:
    out = str(tmp_path / f"res_{world}.pt")
    mp.spawn(_worker, args=(world, free_port(), out), nprocs=world, join=True)
    return {k: VideoResults(**v) for k, v in torch.load(out, weights_only=True).items()}


def _assert_same(a: VideoResults, b: VideoResults) -> None:
    for key in ("index", "label", "valid"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    assert torch.equal(a.probs, b.probs) and torch.equal(a.clip_probs, b.clip_probs)
    assert video_metrics(a) == video_metrics(b)


@pytest.mark.parametrize("world", [pytest.param(2, marks=pytest.mark.slow), 3])
def test_accumulator_union_is_exact_with_padding(world, tmp_path):
    single = _evaluate(list(range(N_VIDEOS)))
    assert single.index.tolist() == list(range(N_VIDEOS))
    m = video_metrics(single)
    assert m["videos"] == N_VIDEOS - 1 and m["unreadable"] == 1
    runs = _run_ranks(world, tmp_path)
    _assert_same(runs["padded"], single)
    # The last rank saw no video: the union is the other ranks' videos (that rank's share is
    # left out by construction); the point is that an empty rank neither hangs nor breaks it.
    videos = list(range(N_VIDEOS))
    _assert_same(runs["empty"], _evaluate(sorted(v for v in videos if v % world != world - 1)))


def test_duplicates_counted_once_and_metrics_by_hand():
    acc = VideoAccumulator(3)
    eye = torch.eye(3)
    # video 0 (label 0) right, video 1 (label 1) wrong (says 2), video 0 again (padding)
    acc.update(torch.tensor([0, 1]), torch.tensor([0, 1]), eye[[0, 2]])
    acc.update(torch.tensor([0]), torch.tensor([0]), eye[[0]])
    res = acc.compute()
    assert res.index.tolist() == [0, 1]
    m = video_metrics(res)
    assert m["top1"] == 0.5 and m["mean_class_acc"] == 0.5 and m["videos"] == 2
    assert gather_uneven(torch.ones(2)).tolist() == [1.0, 1.0]  # no process group: identity


def test_one_video_evaluation_keeps_its_rows(tmp_path):
    """A test or validation of exactly one video (a one-video split, fast_dev_run at test batch
    1): every row keeps its video axis (torchmetrics squeezed one-element results to 0-d, and
    the metrics failed on them)."""
    from lightning.pytorch import Trainer
    from test_module import TinyVideoData, tiny_model

    acc = VideoAccumulator(3)
    acc.update(torch.tensor([0]), torch.tensor([2]), torch.eye(3)[[2]])
    res = acc.compute()
    assert res.index.shape == (1,) and res.label.shape == (1,) and res.valid.shape == (1,)
    assert video_metrics(res)["top1"] == 1.0

    trainer = Trainer(
        accelerator="cpu", default_root_dir=str(tmp_path), logger=False,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip
    (metrics,) = trainer.test(tiny_model(), TinyVideoData(test_size=1, views=3))
    assert metrics["test/videos"] == 1
    with open(tmp_path / "predictions.csv") as f:
        assert len(list(csv.DictReader(f))) == 1


def test_predictions_csv_rows(tmp_path):
    res = _evaluate(list(range(N_VIDEOS)))
    path = tmp_path / "p.csv"
    write_predictions_csv(path, res, [f"c{i}" for i in range(N_CLASSES)], None, k=3)
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == N_VIDEOS and rows[4]["valid"] == "0"
    assert rows[0]["top1"] == f"c{int(res.probs[0].argmax())}"


# ----------------------------------------------------------------- end to end through Lightning
def _lightning_test(tmp_path, devices: int):
    # imported here so the spawned workers of the tests above start faster
    from lightning.pytorch import Trainer
    from test_module import TinyVideoData, tiny_model

    torch.manual_seed(0)
    model = tiny_model()
    model.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    root = tmp_path / f"dev{devices}"
    trainer = Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        default_root_dir=str(root),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        use_distributed_sampler=True,  # torch's padding sampler: 7 videos over 2 ranks → 8 slots
    )
    (metrics,) = trainer.test(model, TinyVideoData(test_size=7, views=3, bad=(5,)))
    from a2video.explore.results import load_run

    with open(root / "predictions.csv") as f:
        return metrics, list(csv.DictReader(f)), load_run(root)


@pytest.mark.timeout(120)
def test_trainer_one_vs_two_processes_identical(tmp_path):
    from test_module import tiny_model

    torch.manual_seed(0)
    torch.save(tiny_model().state_dict(), tmp_path / "weights.pt")
    m1, rows1, run1 = _lightning_test(tmp_path, 1)
    m2, rows2, run2 = _lightning_test(tmp_path, 2)
    # scores.npz (per-view top-k, view-subset top-1) is the same from one or two processes.
    assert run2.views == run1.views == (1, 3) and run2.index.tolist() == list(range(7))
    for key in ("labels", "valid", "view_topk_classes", "subset_pred", "clip_topk_classes"):
        assert torch.equal(getattr(run1, key), getattr(run2, key)), key
    assert torch.allclose(run1.view_topk_scores, run2.view_topk_scores, atol=1e-3)
    assert [r["index"] for r in rows2] == [str(i) for i in range(7)]
    assert m1["test/videos"] == m2["test/videos"] == 6 and m2["test/unreadable"] == 1
    assert m1 == pytest.approx(m2, abs=1e-6)
    for a, b in zip(rows1, rows2, strict=True):
        tops = [f"top{i}" for i in range(1, 5)]
        assert [a[k] for k in ["index", "video", "valid", "label", *tops]] == [
            b[k] for k in ["index", "video", "valid", "label", *tops]
        ]
        for k in (f"score{i}" for i in range(1, 5)):
            assert (a[k] == b[k] == "") or abs(float(a[k]) - float(b[k])) < 1e-5


def test_padded_shards_do_repeat_a_video():
    """Sanity of the set-up: without the dedupe, one video would be counted twice."""
    shards = [list(DistributedSampler(range(7), 2, r, shuffle=False)) for r in range(2)]
    flat = shards[0] + shards[1]
    assert len(flat) == 8 and len(set(flat)) == 7
