"""DataModules: attributes right after __init__, batch contracts, sharding, reproducibility."""

from __future__ import annotations

import pytest
import torch

from a2video.data import KineticsDataModule, ShardedSampler, UCF101DataModule


def test_classes_known_right_after_init(kinetics_root, ucf_root, small_clip):
    dm = KineticsDataModule(kinetics_root, **small_clip)
    assert dm.class_names == ["falling", "growing", "rising", "shrinking"]
    assert dm.num_classes == 4 and not dm.datasets  # nothing decoded or indexed yet
    assert dm.clip_spec["frames"] == 4 and dm.clip_spec["crop_size"] == 32
    assert dm.clip_spec["mean"] == [0.485, 0.456, 0.406]
    ucf = UCF101DataModule(ucf_root, fold=2, **small_clip)
    assert ucf.class_names == ["BalloonRise", "StoneDrop", "BalloonInflate", "BalloonDeflate"]


def test_train_val_test_batches(kinetics_root, small_clip):
    dm = KineticsDataModule(kinetics_root, **small_clip)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (4, 3, 4, 32, 32) and batch["video"].dtype == torch.uint8
    batch = dm.on_after_batch_transfer(batch, 0)  # what Lightning calls on the device
    assert batch["video"].dtype == torch.float32
    assert batch["label"].dtype == torch.long and batch["index"].dtype == torch.long
    assert batch["valid"].all()
    val = next(iter(dm.val_dataloader()))
    assert val["video"].shape[1:] == (3, 4, 32, 32) and val["valid"].dtype == torch.bool
    dm.setup("test")
    seen = []
    for test in dm.test_dataloader():
        assert test["video"].shape[1:] == (9, 3, 4, 32, 32)  # V = 3 clips x 3 crops
        seen += test["index"].tolist()
    assert seen == list(range(len(dm.datasets["test"])))  # stable video index, in order


def test_labels_in_batches_follow_the_annotations(ucf_root, small_clip):
    dm = UCF101DataModule(ucf_root, fold=1, **small_clip)
    dm.setup("test")
    records = dm.datasets["test"].records
    for batch in dm.test_dataloader():
        for i, label in zip(batch["index"].tolist(), batch["label"].tolist(), strict=True):
            assert dm.class_names[label] in records[i].path


def _batches(dm, n=3):
    out = []
    for b in dm.train_dataloader():
        out.append((b["index"].clone(), b["video"].clone()))
        if len(out) == n:
            break
    return out


def test_same_seed_same_batches_whatever_the_worker_count(kinetics_root, small_clip):
    small_clip["batch_size"] = 2
    ref = _batches(KineticsDataModule(kinetics_root, seed=3, **small_clip))
    again = _batches(KineticsDataModule(kinetics_root, seed=3, **small_clip))
    small_clip["num_workers"] = 2
    workers = _batches(KineticsDataModule(kinetics_root, seed=3, **small_clip))
    for (i0, v0), (i1, v1), (i2, v2) in zip(ref, again, workers, strict=True):
        assert torch.equal(i0, i1) and torch.equal(v0, v1)
        assert torch.equal(i0, i2) and torch.equal(v0, v2)
    small_clip["num_workers"] = 0
    other = _batches(KineticsDataModule(kinetics_root, seed=4, **small_clip))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(ref, other, strict=True))


def test_new_epoch_new_order_and_augmentation(kinetics_root, small_clip):
    dm = KineticsDataModule(kinetics_root, **small_clip)
    loader = dm.train_dataloader()
    first = [b["index"] for b in loader]
    loader.sampler.set_epoch(1)  # what Lightning does every epoch
    second = [b["index"] for b in loader]
    assert not all(torch.equal(a, b) for a, b in zip(first, second, strict=False))


@pytest.mark.parametrize("length,world", [(10, 3), (7, 2), (4, 4)])
def test_eval_sharding_has_no_padding_and_no_duplicates(length, world):
    shards = [list(ShardedSampler(length, rank=r, world_size=world)) for r in range(world)]
    flat = [i for s in shards for i in s]
    assert sorted(flat) == list(range(length))  # every video exactly once over all ranks
    for r, s in enumerate(shards):
        assert s == list(range(r, length, world))
        assert len(ShardedSampler(length, rank=r, world_size=world)) == len(s)


def test_eval_sharding_with_fewer_videos_than_ranks_gives_every_rank_one():
    """2 videos on 4 ranks: Lightning refuses a rank with an empty loader, so ranks 2 and 3
    repeat one video each (the video-level metrics deduplicate by index); none is lost."""
    shards = [list(ShardedSampler(2, rank=r, world_size=4)) for r in range(4)]
    assert shards == [[0], [1], [0], [1]]
    assert [len(ShardedSampler(2, rank=r, world_size=4)) for r in range(4)] == [1, 1, 1, 1]
    assert list(ShardedSampler(0, rank=1, world_size=2)) == []
    assert len(ShardedSampler(0, rank=1, world_size=2)) == 0


def test_train_sharding_pads_to_equal_steps():
    shards = [
        list(ShardedSampler(10, shuffle=True, pad=True, rank=r, world_size=3)) for r in range(3)
    ]
    assert {len(s) for s in shards} == {4}
    assert set().union(*map(set, shards)) == set(range(10))


def test_class_names_travel_with_checkpoints(kinetics_root, small_clip, tmp_path):
    dm = KineticsDataModule(kinetics_root, **small_clip)
    state = dm.state_dict()
    assert state["class_names"] == dm.class_names and state["clip_spec"] == dm.clip_spec
    path = dm.save_class_names(tmp_path)
    assert path.read_text().splitlines() == dm.class_names


@pytest.mark.timeout(120)
def test_resume_skip_reaches_a_train_loader_with_workers(kinetics_root, small_clip):
    """Lightning makes the train iterator (FitLoop.setup_data) before ResumeState's
    ``sampler.skip`` (on_train_start); with workers the skip must still shorten the epoch."""
    small_clip["num_workers"] = 1
    dm = KineticsDataModule(kinetics_root, **small_clip)
    loader = dm.train_dataloader()
    whole = [b["index"].tolist() for b in loader]
    it = iter(loader)  # setup_data
    loader.sampler.skip(0, 4)  # on_train_start: one batch of 4 consumed before the kill
    assert [b["index"].tolist() for b in it] == whole[1:]


def _workers_of(loader_iter) -> list:
    workers = list(loader_iter._workers)
    assert len(workers) == 2 and all(w.is_alive() for w in workers)
    return workers


@pytest.mark.timeout(60)
def test_a_sigterm_from_outside_the_training_process_leaves_its_workers_running(
    kinetics_root, small_clip
):
    """``scancel`` / pre-emption signal every process of the job from outside it, the loader
    workers too. A worker that died of it ended the run with "DataLoader worker is killed by
    signal" before SaveOnSigterm could save; now the epoch's batches still come. The training
    process has run its thread pool first: a worker then starts with PyTorch's threads, which
    must not take the signal either."""
    import subprocess
    import time

    torch.nn.functional.conv3d(torch.rand(2, 3, 4, 16, 16), torch.rand(8, 3, 3, 3, 3))
    dm = KineticsDataModule(kinetics_root, **{**small_clip, "num_workers": 2, "batch_size": 2})
    loader = dm.train_dataloader()
    batches = loader._get_iterator()  # what iter(loader) makes at its first batch
    first = next(batches)
    workers = _workers_of(batches)
    subprocess.run(["kill", "-s", "TERM", *(str(w.pid) for w in workers)], check=True)
    time.sleep(0.5)
    assert all(w.is_alive() for w in workers)
    rest = list(batches)
    assert 1 + len(rest) == len(loader) and first["video"].shape[0] == 2
    for worker in workers:  # the loader's own shutdown still ends them
        worker.join(timeout=10)
    assert [w.exitcode for w in workers] == [0, 0]


@pytest.mark.timeout(60)
def test_a_sigterm_from_the_training_process_ends_a_worker_at_once(kinetics_root, small_clip):
    """The DataLoader's shutdown and Python's at exit terminate workers with SIGTERM, then wait
    for them: a worker that ignored it hung the run at exit. It exits 0, as PyTorch's own
    handler makes it (a nonzero code is reported as a crashed worker)."""
    dm = KineticsDataModule(kinetics_root, **{**small_clip, "num_workers": 2, "batch_size": 2})
    loader = dm.train_dataloader()
    batches = loader._get_iterator()
    next(batches)
    workers = _workers_of(batches)
    for worker in workers:
        worker.terminate()
        worker.join(timeout=10)
    assert [w.exitcode for w in workers] == [0, 0]
    batches._shutdown_workers()


@pytest.mark.timeout(90)
def test_a_process_that_exits_with_a_loader_mid_epoch_does_not_hang(kinetics_root, tmp_path):
    """What hung with workers ignoring SIGTERM: the interpreter exits while a loader's workers
    are alive (as a fit that stops at an epoch's last batch leaves one), and multiprocessing
    terminates them with SIGTERM, then joins them without a timeout."""
    import subprocess
    import sys

    script = tmp_path / "exit_mid_epoch.py"
    script.write_text(
        "import sys\n"
        "from a2video.data import KineticsDataModule\n"
        "dm = KineticsDataModule(sys.argv[1], frames=4, stride=3, train_scale=[40, 48],\n"
        "    crop_size=32, test_scale=40, num_workers=2, batch_size=2, persistent_workers=True)\n"
        "BATCHES = iter(dm.train_dataloader())\n"
        "next(BATCHES)\n"
        "print('one batch', flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script), kinetics_root], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "one batch" in done.stdout, done.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_and_resume_with_workers_is_exactly_once(kinetics_root, tmp_path):
    """The CLI kill/resume check of tests/test_resume.py, with one DataLoader worker."""
    from test_resume import _assert_exactly_once, _exact_fit, _fit_ok

    extra = ("--data.batch_size", "4", "--data.num_workers", "1")
    whole = tmp_path / "whole" / "run"
    whole.parent.mkdir()
    _fit_ok(_exact_fit(whole, kinetics_root, *extra))
    _assert_exactly_once(tmp_path, kinetics_root, whole, 1, *extra)


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("batch_size", 0, "--data.batch_size 0: it must be >= 1"),
        ("test_batch_size", 0, "--data.test_batch_size 0: it must be >= 1"),
        ("num_workers", -1, "--data.num_workers -1: it must be >= 0"),
    ],
)
def test_a_bad_loader_value_is_one_line_at_construction(
    option, value, said, kinetics_root, small_clip
):
    with pytest.raises(ValueError) as err:
        KineticsDataModule(kinetics_root, **{**small_clip, option: value})
    assert str(err.value) == said


@pytest.mark.parametrize("option", ["num_clips", "num_crops", "frames", "stride", "crop_size"])
def test_a_clip_value_of_zero_is_one_line_at_construction(option, kinetics_root, small_clip):
    """``num_clips 0`` was accepted by fit and ended a test in "get_frames needs at least one
    index"; the DataModule names the option and its range, and ClipSpec refuses it too."""
    with pytest.raises(ValueError) as err:
        KineticsDataModule(kinetics_root, **{**small_clip, option: 0})
    assert str(err.value).startswith(f"--data.{option} 0: it must be >= 1 ("), err.value
    if option in ("num_clips", "num_crops"):
        from a2video.data import ClipSpec

        with pytest.raises(ValueError, match=r"num_clips and num_crops .* must be >= 1"):
            ClipSpec(**{option: 0})


def test_a_data_root_that_does_not_exist_is_named_with_its_flag(tmp_path, small_clip):
    from a2video.data.annotations import AnnotationError

    missing = tmp_path / "nowhere"
    for dm, holds in ((KineticsDataModule, "train/, val/ and annotations/"),
                      (UCF101DataModule, "UCF-101/ and ucfTrainTestlist/")):  # fmt: skip
        with pytest.raises(AnnotationError) as err:
            dm(str(missing), **small_clip)
        (line,) = str(err.value).splitlines()  # one line: where, what, and the fix
        first, fix = line.split("; fix: ")
        assert first == f"{missing}: no such folder"
        assert "--data.data_root DIR (data_root=)" in fix and holds in fix, fix
