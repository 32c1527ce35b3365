"""DataModules: attributes right after __init__, batch contracts, sharding, reproducibility."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import torch

from a2video.data import KineticsDataModule, ShardedSampler, UCF101DataModule, listing
from a2video.data import annotations as ann


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


# --------------------------------------------------------------------------- listing once per node
def settled(root: Path) -> None:
    """Date every folder under ``root`` a minute back: settled, as a downloaded dataset is (a
    folder written to in the last seconds is not cached)."""
    old = time.time() - 60
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        os.utime(folder, (old, old))


@pytest.fixture
def listed_root(kinetics_root, tmp_path, monkeypatch) -> Path:
    """A settled copy of the Kinetics fixture (a CVDF replacement of a missing train video
    included) and a temporary folder of this test's own for the listing cache."""
    root = tmp_path / "k400"
    shutil.copytree(kinetics_root, root, symlinks=True)
    missing = KineticsDataModule(str(root), listing_cache=False)._read_split("train").missing
    fixed = root / "replacement" / "replacement_for_corrupted_k400"
    fixed.mkdir(parents=True)
    shutil.copy(next((root / "test").glob("*.mp4")), fixed / f"{missing[0][1]}.mp4")
    with open(root / "annotations" / "train.csv", "a") as f:
        f.write("rising,aBsEnTvIdEo,0,10,train\n")  # listed, absent (see _add_video)
    settled(root)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return root


def _splits(root: Path, stages=("fit", "test"), **kwargs) -> dict:
    dm = KineticsDataModule(str(root), num_workers=0, **kwargs)
    for stage in stages:
        dm.setup(stage)
    return {name: (d.records, dm.missing[name]) for name, d in dm.datasets.items()}


def _no_listing(monkeypatch) -> None:
    def listed(*args, **kwargs):
        raise AssertionError("setup listed the video folders")

    monkeypatch.setattr(ann, "find_kinetics_videos", listed)


def test_setup_reads_the_listing_prepare_data_wrote(listed_root, monkeypatch, caplog):
    """prepare_data (once per node) lists the split folders; setup in every process then gets
    the same records (RecordArray equality), missing counts and log lines without listing."""
    with caplog.at_level(logging.INFO, logger="a2video"):
        reference = _splits(listed_root, listing_cache=False)
    said = sorted(r.getMessage() for r in caplog.records)
    assert any("read from CVDF's replacements" in m for m in said)
    KineticsDataModule(str(listed_root)).prepare_data()
    caplog.clear()
    with monkeypatch.context() as m, caplog.at_level(logging.INFO, logger="a2video"):
        _no_listing(m)
        cached = _splits(listed_root)
        KineticsDataModule(str(listed_root)).prepare_data()  # a later run: the listing holds
    assert cached == reference and set(cached) == {"train", "val", "test"}
    assert sorted(r.getMessage() for r in caplog.records) == said
    # another CSV (a subset of train's) of the same folders: its own rows, matched to the listing
    subset = listed_root / "annotations" / "subset.csv"
    lines = (listed_root / "annotations" / "train.csv").read_text().splitlines()
    subset.write_text("\n".join(lines[:5]) + "\n")
    reference = _splits(listed_root, ("test",), test_split=str(subset), listing_cache=False)
    _no_listing(monkeypatch)
    assert _splits(listed_root, ("test",), test_split=str(subset)) == reference


def _add_video(root: Path) -> None:
    """The video of the last train row (absent until now) appears in its class folder."""
    label, youtube_id, start, end = (
        (root / "annotations" / "train.csv").read_text().split()[-1].split(",")[:4]
    )
    name = f"{ann.kinetics_video_stem(youtube_id, start, end)}.mp4"
    shutil.copy(next((root / "test").glob("*.mp4")), root / "train" / label / name)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_add_video, id="a listed video added to a class folder"),
        pytest.param(lambda root: next((root / "val").glob("*.mp4")).unlink(), id="removed"),
        pytest.param(
            lambda root: shutil.rmtree(root / "replacement"), id="the replacements removed"
        ),
    ],
)
def test_a_listing_of_folders_changed_since_is_not_used(listed_root, change):
    KineticsDataModule(str(listed_root)).prepare_data()
    before = _splits(listed_root)
    change(listed_root)
    after = _splits(listed_root)
    assert after == _splits(listed_root, listing_cache=False) and after != before


def test_another_data_root_has_its_own_listing(listed_root, tmp_path):
    KineticsDataModule(str(listed_root)).prepare_data()
    other = tmp_path / "other"
    shutil.copytree(listed_root, other, symlinks=True)
    settled(other)
    records = _splits(other)["train"][0]
    assert all(r.path.startswith(f"{other}{os.sep}") for r in records)
    assert _splits(other) == _splits(other, listing_cache=False)


def test_without_prepare_data_setup_lists_and_writes_nothing(listed_root, tmp_path):
    """A DataModule used alone (a notebook: no Trainer, prepare_data never called)."""
    assert _splits(listed_root) == _splits(listed_root, listing_cache=False)
    assert not list((tmp_path / "tmp").rglob("*.json"))


def test_a_folder_written_to_now_is_not_cached(listed_root, tmp_path):
    """Two changes of a folder within one tick of its time stamp look like none: a listing
    taken while a folder is being written to is not kept."""
    _add_video(listed_root)  # the class folder's time is now
    KineticsDataModule(str(listed_root)).prepare_data()
    cached = [p.name for p in (tmp_path / "tmp").rglob("*.json")]
    assert cached == [listing.cache_path(listed_root / "val").name]  # not train/


def test_a_damaged_or_foreign_cache_is_not_read(listed_root, monkeypatch):
    KineticsDataModule(str(listed_root)).prepare_data()
    path = listing.cache_path(listed_root / "train")
    assert listing.load(listed_root / "train") is not None
    path.write_text('{"version": 1, "key"')
    assert listing.load(listed_root / "train") is None
    KineticsDataModule(str(listed_root)).prepare_data()  # written again, whole
    assert listing.load(listed_root / "train") is not None
    path.parent.chmod(0o755)  # a folder others could have written into
    assert listing.load(listed_root / "train") is None


def test_a_node_without_a_usable_temporary_folder_lists_in_every_process(listed_root, monkeypatch):
    """No writable $TMPDIR, /tmp, /var/tmp nor working folder (tempfile finds none): setup lists
    the folders itself, as with ``listing_cache=False``; before, its cache look-up raised
    tempfile's FileNotFoundError through setup."""
    reference = _splits(listed_root, listing_cache=False)

    def no_temporary_folder():
        raise FileNotFoundError("No usable temporary directory found in ['/tmp']")

    monkeypatch.setattr(tempfile, "gettempdir", no_temporary_folder)
    dm = KineticsDataModule(str(listed_root), num_workers=0)
    dm.prepare_data()
    for stage in ("fit", "test"):
        dm.setup(stage)
    assert {name: (d.records, dm.missing[name]) for name, d in dm.datasets.items()} == reference


def _age(path: Path, days: float) -> None:
    then = time.time() - days * 24 * 3600
    os.utime(path, (then, then))


def test_the_listing_cache_keeps_what_was_used_in_the_last_days(listed_root, tmp_path):
    """The cache folder is pruned when a listing is written, at most once a day: listings not
    read nor written for KEEP_DAYS days (and writers' leftover temp files) go, one read since
    stays, and so does any file that is not the cache's."""
    KineticsDataModule(str(listed_root)).prepare_data()
    folder = listing.cache_dir()
    train, val = (listing.cache_path(listed_root / s) for s in ("train", "val"))
    gone = folder / "0123456789abcdef01234567.json"  # another dataset's, long unused
    leftover = folder / f".{gone.name}.4242.tmp.node7"  # its writer was killed
    other = folder / "notes.txt"
    for path in (gone, leftover, other):
        path.write_text("{}")
    days = listing.KEEP_DAYS + 1
    for path in (train, val, gone, leftover, other):
        _age(path, days)
    _age(folder / listing.PRUNED, 2)  # pruned two days ago
    assert listing.load(listed_root / "train") is not None  # used today
    listing.scan(listed_root / "test")  # a listing written: the folder is pruned
    kept = {p.name for p in folder.iterdir()}
    assert kept == {train.name, listing.cache_path(listed_root / "test").name, other.name,
                    listing.PRUNED}  # fmt: skip
    assert _splits(listed_root) == _splits(listed_root, listing_cache=False)  # val listed again
    # once a day: a listing written again within the day prunes nothing
    gone.write_text("{}")
    _age(gone, days)
    listing.scan(listed_root / "test")
    assert gone.exists()


def test_a_listing_pruned_under_a_reader_is_listed_again(listed_root, monkeypatch):
    """Another process prunes the cache between this one's check of the folder and its read
    of the file: setup lists the folders and gets what listing them gets."""
    reference = _splits(listed_root, listing_cache=False)
    KineticsDataModule(str(listed_root)).prepare_data()
    folder = listing.cache_dir()
    own_folder = listing._own_folder

    def pruned_meanwhile(path: Path) -> bool:
        mine = own_folder(path)
        for cached in folder.glob("*.json"):
            _age(cached, listing.KEEP_DAYS + 1)
        _age(folder / listing.PRUNED, 2)
        listing.prune(folder)
        return mine

    scans = []
    find = ann.find_kinetics_videos
    monkeypatch.setattr(listing, "_own_folder", pruned_meanwhile)
    monkeypatch.setattr(ann, "find_kinetics_videos", lambda *a: scans.append(a) or find(*a))
    assert _splits(listed_root) == reference
    assert scans and not list(folder.glob("*.json"))


def test_no_listing_cache_in_the_working_folder(listed_root, tmp_path, monkeypatch, caplog):
    """$TMPDIR unset and /tmp, /var/tmp, /usr/tmp unwritable: tempfile's last resort is the
    working folder; the listings are not cached there (the run's folder stays as it was),
    each process lists, and one line says so."""
    reference = _splits(listed_root, listing_cache=False)
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.chdir(run)
    for name in ("TMPDIR", "TEMP", "TMP"):
        monkeypatch.delenv(name, raising=False)
    nowhere = [str(tmp_path / "no" / d) for d in ("tmp", "var_tmp", "usr_tmp")]
    monkeypatch.setattr(tempfile, "_candidate_tempdir_list", lambda: [*nowhere, os.getcwd()])
    monkeypatch.setattr(tempfile, "tempdir", None)  # found again, as in a new process
    monkeypatch.setattr(listing, "_said", set())
    assert tempfile.gettempdir() == str(run)
    with caplog.at_level(logging.DEBUG, logger="a2video"):
        for _ in range(2):
            dm = KineticsDataModule(str(listed_root), num_workers=0)
            dm.prepare_data()
            for stage in ("fit", "test"):
                dm.setup(stage)
            assert {n: (d.records, dm.missing[n]) for n, d in dm.datasets.items()} == reference
    assert list(run.iterdir()) == []
    said = [r for r in caplog.records if r.levelno >= logging.INFO and "cached" in r.getMessage()]
    assert len(said) == 1 and "set TMPDIR" in said[0].getMessage(), caplog.text
    monkeypatch.setenv("TMPDIR", str(run))  # the user's choice: cached there
    monkeypatch.setattr(tempfile, "tempdir", None)
    assert listing.cache_dir().parent == run
    monkeypatch.delenv("TMPDIR")  # a run started in /tmp: cached there too
    monkeypatch.chdir("/tmp")
    monkeypatch.setattr(tempfile, "tempdir", "/tmp")
    assert listing.cache_dir().parent == Path("/tmp")


def test_prepare_data_leaves_a_broken_split_to_setup(listed_root):
    """An error raised in prepare_data would stop local rank 0 alone, the other ranks waiting
    at its barrier: it is setup, on every rank, that says it."""
    dm = KineticsDataModule(str(listed_root), val_split="nosuch")
    dm.prepare_data()
    with pytest.raises(ann.AnnotationError, match="nosuch"):
        dm.setup("fit")


def test_no_split_folder_is_said_once(kinetics_root, tmp_path, small_clip, monkeypatch, caplog):
    """A CSV whose split folder its name and rows do not tell (all of data_root is searched):
    rank 0 said so twice, in prepare_data and again in setup, and every other rank once."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the node's listing goes here
    mine = tmp_path / "my_val.csv"  # val.csv's rows without their split column
    rows = (Path(kinetics_root) / "annotations" / "val.csv").read_text().splitlines()
    mine.write_text("".join(",".join(row.split(",")[:4]) + "\n" for row in rows))
    said = "my_val.csv: no split folder found"
    with caplog.at_level(logging.INFO, logger="a2video"):
        dm = KineticsDataModule(kinetics_root, val_split=str(mine), **small_clip)
        dm.prepare_data()
        dm.setup("fit")
        dm.setup("test")  # the same CSV
    assert sum(said in r.getMessage() for r in caplog.records) == 1, caplog.text
    assert len(dm.datasets["val"]) == len(rows) - 1 - dm.missing["val"]
    caplog.clear()
    monkeypatch.setenv("RANK", "1")
    with caplog.at_level(logging.INFO, logger="a2video"):
        KineticsDataModule(kinetics_root, val_split=str(mine), **small_clip).setup("fit")
    assert not any(said in r.getMessage() for r in caplog.records), caplog.text


def test_the_test_split_follows_a_given_val_split(kinetics_root, tmp_path, small_clip):
    """Kinetics tests on its val split: ``--data.val_split my_val.csv`` (in the run's config)
    was not what ``test`` scored, which read annotations/val.csv by the name "val" without a
    word. The test (and predict) split now follows the val split unless given."""
    mine = tmp_path / "my_val.csv"
    lines = (Path(kinetics_root) / "annotations" / "val.csv").read_text().splitlines()
    mine.write_text("\n".join(lines[:3]) + "\n")  # the header and two of the val videos
    dm = KineticsDataModule(kinetics_root, val_split=str(mine), **small_clip)
    dm.setup("test")
    assert len(dm.datasets["test"]) == 2
    assert dm.splits["test"] == dm.splits["predict"] == str(mine)
    other = KineticsDataModule(kinetics_root, val_split=str(mine), test_split="val", **small_clip)
    assert other.splits["test"] == "val"  # given: kept
