"""The mixed train loader (``decoder: nvdec`` with ``num_workers > 0``) on the CPU.

NVDEC is the stand-in of tests/fake_nvdec.py (PyNvVideoCodec replaced by PyAV; a2video's NVDEC
reader, the mixed loader and its threads run as on a GPU). Everything goes through the
DataModule's ``train_dataloader`` (what Lightning iterates): the same batches as the plain CPU
loader, every video once per epoch, disjoint ranks, the resume skip, bad videos replaced and
counted, a thread's exception raised in the caller, no thread left behind; then one ``fit``.
"""

from __future__ import annotations

import gc
import math
import threading
import types
from pathlib import Path

import fake_nvdec
import pytest
import torch
from fake_nvdec import FakeSimpleDecoder
from tiny_fit import tiny_fit_args
from torch.utils.data import DataLoader

from a2video.data import KineticsDataModule
from a2video.data import datasets as datasets_mod
from a2video.data.mixed import THREAD_NAME, MixedLoader, nvdec_batches
from a2video.training.cli import A2VideoCLI
from a2video.training.module import VideoClassifier
from a2video.training.resume import _train_sampler

ROOT = Path(__file__).resolve().parents[1]
MIXED = {"decoder": "nvdec", "num_workers": 1, "nvdec_share": 0.5, "nvdec_threads": 2}
MIXED_ARGS = [f"--data.{k}={v}" for k, v in MIXED.items()]


@pytest.fixture
def fake(monkeypatch):
    return fake_nvdec.install(monkeypatch)


def _nvdec_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_NAME)]


def _nvdec_videos() -> set[str]:
    """Videos the stand-in NVDEC decoded (in the loader's threads)."""
    return {path for path, thread in FakeSimpleDecoder.opened if thread.startswith(THREAD_NAME)}


def _modules(root: str, clip: dict, **kwargs) -> tuple[KineticsDataModule, KineticsDataModule]:
    """The plain CPU loader's DataModule and the mixed one, otherwise alike."""
    plain = KineticsDataModule(root, **{**clip, "num_workers": 1, **kwargs})
    mixed = KineticsDataModule(root, **{**clip, **MIXED, **kwargs})
    return plain, mixed


def _same(a: dict, b: dict) -> None:
    assert torch.equal(a["index"], b["index"]) and torch.equal(a["label"], b["label"])
    assert torch.equal(a["video"], b["video"]) and a["video"].dtype == torch.uint8
    assert torch.equal(a["failed"], b["failed"])


# ------------------------------------------------------------------------------ the rule
def test_nvdec_batches_spread_the_share_by_position():
    assert sum(nvdec_batches(0.3, 0, 10)) == 3 and sum(nvdec_batches(0.3, 0, 1000)) == 300
    assert nvdec_batches(0.5, 0, 4) == [False, True, False, True]
    assert not any(nvdec_batches(0.0, 0, 7)) and all(nvdec_batches(1.0, 0, 7))
    for first in range(10):  # the choice depends on the batch's position alone
        assert nvdec_batches(0.37, first, 20) == nvdec_batches(0.37, 0, 30)[first : first + 20]
    window = nvdec_batches(0.29, 0, 100)
    assert all(abs(sum(window[i : i + 10]) - 2.9) < 1 for i in range(90))  # spread, not lumped


def test_where_nvdec_cannot_run_the_mixed_loader_says_so_in_one_line(kinetics_root, small_clip):
    """No fake here: this machine has no GPU (and maybe no PyNvVideoCodec)."""
    if torch.cuda.is_available():
        pytest.skip("NVDEC may run here")
    one_line = r"^decoder='nvdec'.*, or decode on the CPU with --data\.decoder (decord|pyav)$"
    with pytest.raises(ImportError, match=one_line):
        KineticsDataModule(kinetics_root, **{**small_clip, **MIXED})


def test_options_and_what_stays_on_the_cpu(kinetics_root, small_clip, fake):
    with pytest.raises(ValueError, match=r"nvdec_share=1.5 must be in \[0, 1\]"):
        KineticsDataModule(kinetics_root, **{**small_clip, **MIXED, "nvdec_share": 1.5})
    dm = KineticsDataModule(kinetics_root, **{**small_clip, **MIXED})
    assert dm.mixed and isinstance(dm.train_dataloader(), MixedLoader)
    val = dm.val_dataloader()  # validation/test: the CPU workers, decoder auto
    assert isinstance(val, DataLoader) and val.num_workers == 1
    assert {dm.datasets[s].decoder_name for s in ("train", "val")} == {"auto"}
    assert dm.mixed_loader.nvdec_dataset.decoder_name == "nvdec"


# --------------------------------------------------------------------- same batches, once
@pytest.mark.timeout(120)
@pytest.mark.parametrize("persistent", [False, True])
def test_same_batches_as_the_plain_loader_every_video_once(
    kinetics_root, small_clip, fake, persistent
):
    kwargs = dict(repeat_clips=2, seed=3, persistent_workers=persistent)
    plain, mixed = _modules(kinetics_root, small_clip, **kwargs)
    a, b = plain.train_dataloader(), mixed.train_dataloader()
    assert len(a) == len(b) == math.ceil(11 / 2)  # 11 videos, 2 per batch of 4 clips
    for epoch in range(2):  # Lightning's set_epoch: a new shuffle and new augmentation
        a.sampler.set_epoch(epoch)
        b.sampler.set_epoch(epoch)
        FakeSimpleDecoder.opened = []
        want, got = list(a), list(b)
        assert len(got) == len(want)
        for x, y in zip(want, got, strict=True):
            _same(x, y)
        videos = [i for batch in got for i in batch["index"][0::2].tolist()]
        assert sorted(videos) == list(range(11))
        # the NVDEC share was decoded in the threads, the rest by the CPU workers
        records = mixed.datasets["train"].records
        on_nvdec = nvdec_batches(0.5, 0, len(got))
        expected = {
            records[i].path for y, nv in zip(got, on_nvdec, strict=True) if nv for i in y["index"]
        }
        assert expected and _nvdec_videos() == expected
    assert not _nvdec_threads()  # joined at the end of each epoch


@pytest.mark.timeout(120)
@pytest.mark.parametrize("persistent", [False, True])
def test_the_workers_fork_before_the_nvdec_threads_start(
    kinetics_root, small_clip, fake, monkeypatch, persistent
):
    """A worker forked while an NVDEC thread holds a lock (the import lock, a decoder's) waits on
    it forever (the slow CLI resume test hung so): every epoch's workers exist before the first
    NVDEC decode. (An iterator that deferred the fork to the first CPU batch failed this.)"""
    import multiprocessing

    workers_at_first_open: list[int] = []
    opened = FakeSimpleDecoder.reconfigure_decoder

    def spy(self, path):
        if not workers_at_first_open:
            workers_at_first_open.append(len(multiprocessing.active_children()))
        return opened(self, path)

    monkeypatch.setattr(FakeSimpleDecoder, "reconfigure_decoder", spy)
    _, mixed = _modules(kinetics_root, small_clip, seed=3, persistent_workers=persistent)
    loader = mixed.train_dataloader()
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        workers_at_first_open.clear()
        assert len(list(loader)) == len(loader)
        assert workers_at_first_open and workers_at_first_open[0] >= 1, workers_at_first_open


@pytest.mark.timeout(120)
def test_two_ranks_disjoint_as_the_plain_loader(kinetics_root, small_clip, fake):
    plain, mixed = _modules(kinetics_root, small_clip, train_split="val")  # 4 videos
    seen = []
    for rank in range(2):
        a, b = plain.train_dataloader(), mixed.train_dataloader()
        for loader in (a, b):  # what torch.distributed would tell a rank of 2
            loader.sampler._rank, loader.sampler._world = rank, 2
        want, got = list(a), list(b)
        for x, y in zip(want, got, strict=True):
            _same(x, y)
        seen.append([i for batch in got for i in batch["index"].tolist()])
    assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == [0, 1, 2, 3]


def _rank_batches(rank: int, world: int, root: str, clip: dict, split: str, port: int, out) -> None:
    """One gloo rank: the plain and the mixed loader's videos over two epochs, and whether the
    two loaders gave equal batches."""
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        fake_nvdec.install(pytest.MonkeyPatch())
        plain, mixed = _modules(root, clip, train_split=split)
        a, b = plain.train_dataloader(), mixed.train_dataloader()
        videos, equal = [], True
        for epoch in range(2):
            a.sampler.set_epoch(epoch)
            b.sampler.set_epoch(epoch)
            want, got = list(a), list(b)
            equal &= len(want) == len(got) and all(
                torch.equal(x["index"], y["index"]) and torch.equal(x["video"], y["video"])
                for x, y in zip(want, got, strict=True)
            )
            videos.append([i for batch in got for i in batch["index"].tolist()])
        out.put((rank, videos, equal, len(_nvdec_videos())))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow  # ~25 s on 2 cores; test_two_ranks_disjoint_as_the_plain_loader is the quick one
@pytest.mark.timeout(150)
def test_two_gloo_ranks_disjoint_every_video_once(kinetics_root, small_clip, tmp_path):
    """Two real processes: each rank's mixed loader reads its rank from torch.distributed."""
    import torch.multiprocessing as mp
    from ports import free_port

    records = KineticsDataModule(kinetics_root, **small_clip)._dataset("train").records[:8]
    split = tmp_path / "train8.txt"  # 8 videos: 4 per rank, 2 batches of 2 (no padding)
    split.write_text("".join(f"{r.path} {r.label}\n" for r in records))
    classes = KineticsDataModule(kinetics_root, **small_clip).class_names
    (tmp_path / "class_names.txt").write_text("".join(f"{c}\n" for c in classes))
    clip = {**small_clip, "batch_size": 2}
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(target=_rank_batches, args=(r, 2, kinetics_root, clip, str(split), port, out))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    results = {r: rest for r, *rest in (out.get(timeout=120) for _ in procs)}
    for p in procs:
        p.join(timeout=20)
        assert p.exitcode == 0
    for epoch in range(2):
        ranks = [results[r][0][epoch] for r in range(2)]
        assert not set(ranks[0]) & set(ranks[1]) and sorted(ranks[0] + ranks[1]) == list(range(8))
    assert all(results[r][1] for r in range(2))  # each rank: the plain loader's batches
    assert all(results[r][2] > 0 for r in range(2))  # and NVDEC decoded its share


# -------------------------------------------------------------------------------- resume
@pytest.mark.timeout(120)
def test_resume_skip_yields_the_rest_of_the_epoch(kinetics_root, small_clip, fake):
    """In Lightning's order: iter() first (FitLoop.setup_data), then ResumeState's skip."""
    small_clip["batch_size"] = 2
    dm = KineticsDataModule(kinetics_root, seed=1, **{**small_clip, **MIXED, "nvdec_share": 0.4})
    loader = dm.train_dataloader()
    trainer = types.SimpleNamespace(train_dataloader=loader)
    sampler, batch_size = _train_sampler(trainer)  # what ResumeState reads and skips
    assert sampler is loader.sampler and batch_size == 2
    loader.sampler.set_epoch(1)
    FakeSimpleDecoder.opened = []
    whole = list(loader)
    nvdec_whole = _nvdec_videos()
    k = 3  # NVDEC batches of 6 at share 0.4: 2 and 4
    it = iter(loader)
    loader.sampler.skip(1, k * batch_size)
    FakeSimpleDecoder.opened = []
    rest = list(it)
    assert len(rest) == len(whole) - k
    for x, y in zip(whole[k:], rest, strict=True):
        _same(x, y)
    # each remaining batch decoded where the uninterrupted run decoded it
    records = dm.datasets["train"].records
    on_nvdec = nvdec_batches(0.4, 0, len(whole))
    later = {
        records[i].path for j, y in enumerate(whole) if on_nvdec[j] and j >= k for i in y["index"]
    }
    assert _nvdec_videos() == later and later < nvdec_whole


# --------------------------------------------------------------------------- bad videos
@pytest.mark.timeout(120)
def test_bad_video_in_the_nvdec_share_is_replaced_and_counted(
    broken_kinetics_root, small_clip, fake
):
    """All batches on NVDEC (share 1): the same replacements and counts as the PyAV loader."""
    clip = {**small_clip, "max_bad_fraction": 1.0}  # ~15% broken: count, do not stop
    plain = KineticsDataModule(broken_kinetics_root, **{**clip, "decoder": "pyav"})
    mixed = KineticsDataModule(broken_kinetics_root, **{**clip, **MIXED, "nvdec_share": 1.0})
    want = [plain.count_batch(b, "train") for b in plain.train_dataloader()]
    got = [mixed.count_batch(b, "train") for b in mixed.train_dataloader()]
    for x, y in zip(want, got, strict=True):
        _same(x, y)
        assert torch.equal(x["failed_index"], y["failed_index"])
    failed = torch.cat([y["failed"] for y in got])
    assert failed.any()  # the epoch met a bad video: replaced by another one, flagged
    for y in got:
        for k in torch.nonzero(y["failed"]).view(-1).tolist():
            assert y["index"][k] != y["failed_index"][k] and y["valid"][k]
    assert mixed.data_counters("train") == plain.data_counters("train")
    assert mixed.data_counters("train")["failed"] == int(failed.sum())
    assert mixed.bad_videos("train").keys() == plain.bad_videos("train").keys()


# ----------------------------------------------------------------------- thread failures
@pytest.mark.timeout(60)
def test_an_exception_in_a_thread_reaches_the_caller_and_stops_the_threads(
    kinetics_root, small_clip, fake, monkeypatch
):
    real = datasets_mod.transforms.train_transform

    def failing_on_nvdec(*args, **kwargs):
        if threading.current_thread().name.startswith(THREAD_NAME):
            raise RuntimeError("CUDA out of memory (stand-in)")
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets_mod.transforms, "train_transform", failing_on_nvdec)
    dm = KineticsDataModule(kinetics_root, **{**small_clip, **MIXED})
    with pytest.raises(RuntimeError, match=r"CUDA out of memory \(stand-in\)"):
        list(dm.train_dataloader())
    assert not _nvdec_threads()


@pytest.mark.timeout(60)
def test_an_abandoned_epoch_stops_its_threads(kinetics_root, small_clip, fake):
    small_clip["batch_size"] = 1
    dm = KineticsDataModule(kinetics_root, **{**small_clip, **MIXED, "nvdec_share": 1.0})
    it = iter(dm.train_dataloader())
    next(it)
    assert len(_nvdec_threads()) == 2  # decoding ahead
    dm.teardown("fit")  # Lightning's teardown, e.g. after an exception in the step
    assert not _nvdec_threads()
    it = iter(dm.train_dataloader())
    next(it)
    del it  # dropped mid-epoch (limit_train_batches): the generator's cleanup joins them
    gc.collect()
    assert not _nvdec_threads()


# ------------------------------------------------------------------------------ fit
@pytest.mark.timeout(180)
def test_fit_with_the_mixed_loader(kinetics_root, tmp_path, fake):
    from lightning.pytorch import Callback

    seen: list[tuple[int, list[int], torch.dtype]] = []

    class Record(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append((trainer.current_epoch, batch["index"].tolist(), batch["video"].dtype))

    torch.set_num_threads(1)
    A2VideoCLI(
        VideoClassifier,
        KineticsDataModule,
        trainer_defaults={"callbacks": [Record()]},
        args=tiny_fit_args(kinetics_root, tmp_path / "run", *MIXED_ARGS),
    )
    assert len(seen) == 2 * math.ceil(11 / 4)
    for epoch in range(2):
        videos = [i for e, idx, _ in seen if e == epoch for i in idx]
        assert sorted(videos) == list(range(11))  # every video once
    assert all(dtype == torch.float32 for _, _, dtype in seen)  # normalised on the device
    assert _nvdec_videos()  # the NVDEC share went through the threads
    assert not _nvdec_threads()


@pytest.mark.timeout(120)
def test_validation_mid_epoch_forks_its_workers_while_the_nvdec_threads_run(
    kinetics_root, tmp_path, fake
):
    """``val_check_interval`` < an epoch: the validation loader forks its worker while an NVDEC
    thread is decoding ahead (one thread, 90% of the batches of one clip), and the run goes on
    to the end of the epoch with every training video once."""
    from lightning.pytorch import Callback

    seen: list[int] = []
    threads_at_validation: list[int] = []
    val_batches: list[int] = []

    class Record(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.extend(batch["index"].tolist())

        def on_validation_start(self, trainer, pl_module):
            threads_at_validation.append(len(_nvdec_threads()))

        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *_):
            val_batches.append(batch_idx)

    torch.set_num_threads(1)
    args = tiny_fit_args(kinetics_root, tmp_path / "run", *MIXED_ARGS)
    args += ["--data.batch_size", "1", "--data.nvdec_share", "0.9", "--data.nvdec_threads", "1"]
    args += ["--trainer.max_epochs", "1", "--trainer.check_val_every_n_epoch", "1"]
    args += ["--trainer.val_check_interval", "3", "--trainer.limit_val_batches", "2"]
    A2VideoCLI(
        VideoClassifier,
        KineticsDataModule,
        trainer_defaults={"callbacks": [Record()]},
        args=args,
    )
    assert sorted(seen) == list(range(11))  # the epoch finished, every video once
    assert len(threads_at_validation) >= 3 and threads_at_validation[0] == 1, threads_at_validation
    assert len(val_batches) == 2 * len(threads_at_validation)
    assert _nvdec_videos() and not _nvdec_threads()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_and_resume_with_the_mixed_loader_is_exactly_once(
    kinetics_root, tmp_path, monkeypatch
):
    """tests/test_resume.py's CLI kill/resume check, with NVDEC (stand-in) threads + 1 worker:
    killed after step 1, the resumed run trains on the same videos with the same losses."""
    import test_resume

    install = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
        "import fake_nvdec, pytest; fake_nvdec.install(pytest.MonkeyPatch())\n"
    )
    monkeypatch.setattr(test_resume, "EXACT_SCRIPT", install + test_resume.EXACT_SCRIPT)
    extra = ("--data.batch_size", "4", *MIXED_ARGS)
    whole = tmp_path / "whole" / "run"
    whole.parent.mkdir()
    test_resume._fit_ok(test_resume._exact_fit(whole, kinetics_root, *extra))
    test_resume._assert_exactly_once(tmp_path, kinetics_root, whole, 1, *extra)
