"""Bad videos inside a dataset: training and testing go on, every bad file is counted once."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch

from a2video.data import DataQualityError, KineticsDataModule
from a2video.data.synthetic import synthesize

UNUSABLE = {"zero-byte", "text", "truncated-moov", "audio-only"}


def _manifest(root) -> dict:
    return json.loads((Path(root) / "synth_manifest.json").read_text())


def _bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_data.py"
    spec = importlib.util.spec_from_file_location("bench_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_epoch_goes_on_and_counts_each_bad_file_once(
    broken_kinetics_root, small_clip, caplog
):
    small_clip["num_workers"] = 2  # the counts must be right across worker processes
    dm = KineticsDataModule(broken_kinetics_root, max_bad_fraction=0.5, **small_clip)
    dm.setup("fit")
    train_paths = set(dm.monitor.paths["train"])
    special = _manifest(broken_kinetics_root)["special"]
    unusable = {os.path.join(broken_kinetics_root, p) for p, k in special.items() if k in UNUSABLE}
    expected = unusable & train_paths
    assert expected, "the fixture should put unusable files in the train split"
    with caplog.at_level(logging.WARNING, logger="a2video.data.datasets"):
        for _epoch in range(2):
            n = 0
            for batch in dm.train_dataloader():
                dm.count_batch(batch, "train")
                assert batch["valid"].all()  # replaced, never zeros, in training
                replaced = batch["failed"]
                assert (batch["index"][replaced] != batch["failed_index"][replaced]).all()
                n += len(batch["index"])
            assert n == len(dm.datasets["train"])
            counters = dm.data_counters("train")
            assert counters["seen"] == n and counters["failed"] >= len(expected)
    bad = dm.bad_videos("train")
    assert expected <= set(bad)  # every unusable file found, with its reason
    assert all(bad[p] for p in expected)
    reports = [r.getMessage() for r in caplog.records if "unusable video" in r.getMessage()]
    assert len(reports) == len(bad)  # each reported once over two epochs and two workers


def _copy_val(kinetics_root, tmp_path) -> Path:
    root = tmp_path / "k"
    shutil.copytree(Path(kinetics_root) / "annotations", root / "annotations")
    shutil.copytree(Path(kinetics_root) / "val", root / "val")
    os.symlink(Path(kinetics_root) / "train", root / "train")
    return root


def test_test_mode_returns_unreadable_videos_as_invalid(kinetics_root, small_clip, tmp_path):
    root = _copy_val(kinetics_root, tmp_path)
    victim = sorted((root / "val").glob("*.mp4"))[1]
    victim.write_text("not a video")
    dm = KineticsDataModule(str(root), max_bad_fraction=0.5, **small_clip)
    dm.setup("test")
    out = {}
    for batch in dm.test_dataloader():
        dm.count_batch(batch, "test")
        for i, idx in enumerate(batch["index"].tolist()):
            out[idx] = (bool(batch["valid"][i]), batch["video"][i])
    assert len(out) == len(dm.datasets["test"])  # nothing dropped
    bad_index = [r.path for r in dm.datasets["test"].records].index(str(victim))
    valid, views = out[bad_index]
    assert not valid and torch.count_nonzero(views) == 0
    assert all(v for i, (v, _) in out.items() if i != bad_index)
    assert list(dm.bad_videos("test")) == [str(victim)]


def test_too_many_bad_videos_stop_with_a_clear_error(broken_kinetics_root, small_clip):
    dm = KineticsDataModule(broken_kinetics_root, max_bad_fraction=0.01, **small_clip)
    with pytest.raises(DataQualityError, match=r"more than data.max_bad_fraction 0\.01") as err:
        for batch in dm.train_dataloader():
            dm.count_batch(batch, "train")
    message = str(err.value)
    assert "\n" not in message and "a2video check-data --layout kinetics" in message, message
    assert "--write-clean DIR" in message and "--data.annotation_dir DIR" in message, message


def _bad_video_ranks(rank: int, world: int, port: int, out: str) -> None:
    """Each of 2 ranks meets 2 of 20 videos bad (10% each, 20% together; limit 15%)."""
    import torch.distributed as dist

    from a2video.data.datasets import BadVideoMonitor

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)  # fmt: skip
    try:
        monitor = BadVideoMonitor(0.15, {"train": [f"v{i}.mp4" for i in range(20)]})
        mine = [rank, rank + 2]  # disjoint shares
        batch = {"failed": torch.tensor([True, True]), "failed_index": torch.tensor(mine)}
        monitor.update(batch, "train")  # alone under the limit: no stop on one rank
        try:
            monitor.sync("train")
            said = ""
        except DataQualityError as stop:
            said = str(stop)
        torch.save(said, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_the_bad_video_limit_counts_every_ranks_videos(tmp_path):
    """Under DDP the limit is decided on the union of the ranks' bad files, and every rank
    stops with the same message (each rank compared its own count with the whole split: twice
    the limit with 2 ranks, and one rank's stop crashed the others)."""
    import torch.multiprocessing as mp
    from ports import free_port

    out = str(tmp_path / "said")
    mp.spawn(_bad_video_ranks, args=(2, free_port(), out), nprocs=2, join=True)
    said = [torch.load(f"{out}.{rank}", weights_only=True) for rank in range(2)]
    assert said[0] == said[1] and said[0].startswith("4 of 20 train videos (20.0%)"), said


def test_lightning_fit_and_test_run_through_bad_videos(broken_kinetics_root, small_clip, tmp_path):
    """Inside a Trainer the DataModule's batch hook counts failures without help."""

    class Tiny(L.LightningModule):
        def __init__(self, num_classes):
            super().__init__()
            self.fc = torch.nn.Linear(3, num_classes)
            self.test_valid = []

        def _logits(self, video):
            return self.fc(video.flatten(2).mean(-1) if video.dim() == 5 else video.mean((2, 3, 4)))

        def training_step(self, batch, _):
            return torch.nn.functional.cross_entropy(self._logits(batch["video"]), batch["label"])

        def test_step(self, batch, _):
            self.test_valid += batch["valid"].tolist()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = KineticsDataModule(broken_kinetics_root, max_bad_fraction=0.5, **small_clip)
    model = Tiny(dm.num_classes)
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        use_distributed_sampler=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, dm)
    counters = dm.data_counters("train")
    assert counters["bad_files"] >= 1
    assert counters["seen"] == len(dm.datasets["train"])  # per epoch: reset by set_epoch
    trainer.test(model, dm)
    assert len(model.test_valid) == len(dm.datasets["test"])


def test_epochs_over_broken_videos_keep_memory_flat(broken_kinetics_root):
    """Small version of `bench_data.py broken-epoch`: persistent worker, 3 epochs."""
    result = _bench().run_broken_epochs(broken_kinetics_root, epochs=3, workers=1)
    assert len(result["epochs"]) == 3 and result["bad_files"] >= 1
    assert result["rss_growth_mb_after_first_epoch"] < 25


@pytest.mark.slow
def test_many_epochs_over_a_10_percent_broken_dataset_keep_memory_flat(tmp_path):
    root = tmp_path / "k"
    synthesize(
        root,
        "kinetics",
        classes=8,
        videos_per_class=12,
        val_per_class=1,
        duration=(2.0, 4.0),
        max_side=128,
        seed=5,
        broken=0.10,
        missing=0.0,
        progress=False,
    )
    result = _bench().run_broken_epochs(str(root), epochs=6, workers=2, max_bad_fraction=0.2)
    assert result["bad_files"] >= 1
    assert result["rss_growth_mb_after_first_epoch"] < 25


@pytest.mark.parametrize(
    ("decoder", "message"),
    [
        ("ffmpeg", r"unknown decoder 'ffmpeg'; choose from auto, decord, pyav, torchcodec, nvdec"),
        (
            "torchcodec",
            r"^--data\.decoder torchcodec but torchcodec is not installed: pip install torchcodec, "
            r"or use --data\.decoder auto \(choices: auto, decord, pyav, torchcodec, nvdec\)$",
        ),
    ],
)
def test_unknown_or_uninstalled_decoder_is_one_line_at_construction(
    kinetics_root, small_clip, monkeypatch, decoder, message
):
    """Refused when the DataModule is built (not in a worker at the first batch), as a user
    error that the entry points print in one line."""
    from a2video.data import video
    from a2video.errors import is_user_error

    real = video.importlib.util.find_spec
    monkeypatch.setattr(
        video.importlib.util, "find_spec", lambda n, *a: None if n == "torchcodec" else real(n, *a)
    )
    with pytest.raises(ValueError, match=message) as err:
        KineticsDataModule(kinetics_root, decoder=decoder, **small_clip)
    assert is_user_error(err.value) and "\n" not in str(err.value)
