"""The train workers write their batches into a ring of shared memory (``data.batch_ring``).

On a GPU host the ring is page-locked and the GPU copies each batch straight out of it (no
pin-memory thread copying 38.5 MB per batch once more); here, on the CPU, the same ring runs
unpinned (``batch_ring=True``), so everything but the page-locking is tested: the batches are the
copy path's, byte for byte and in the same memory order, written in place in the ring, across
epochs, with persistent workers, an abandoned epoch, repeat_clips, the mixed NVDEC loader and a
``fit``; a batch stays intact while Lightning fetches ahead of it; and a slot is not written again
before the copy out of it is done.
"""

from __future__ import annotations

import math

import fake_nvdec
import pytest
import torch
from lightning.pytorch import Callback
from tiny_fit import tiny_fit_args

from a2video.data import KineticsDataModule
from a2video.data.ring import SLOT_KEY, SPARE_SLOTS, BatchRing, slots_for
from a2video.training.cli import A2VideoCLI
from a2video.training.module import VideoClassifier

WORKERS = {"num_workers": 2, "repeat_clips": 2, "seed": 3}


def _in_ring(video: torch.Tensor, ring: BatchRing) -> bool:
    start = ring.memory.data_ptr()
    return start <= video.data_ptr() < start + ring.memory.numel()


def _epoch(dm: KineticsDataModule, loader, epoch: int, stop: int | None = None) -> list[dict]:
    """An epoch's batches as handed on (cloned), each then released as after its copy."""
    loader.sampler.set_epoch(epoch)
    out = []
    for i, batch in enumerate(loader):
        if stop is not None and i == stop:
            break  # an abandoned epoch: its workers may have more batches in flight
        if dm._ring is not None:
            assert _in_ring(batch["video"], dm._ring)  # written in place, not copied over
        out.append({k: v.clone() if torch.is_tensor(v) else v for k, v in batch.items()})
        dm.on_after_batch_transfer(batch, 0)
        assert SLOT_KEY not in batch  # the slot is freed, not handed to the model
    return out


def _same(a: dict, b: dict) -> None:
    assert torch.equal(a["video"], b["video"]) and a["video"].stride() == b["video"].stride()
    for key in ("index", "label", "valid", "failed"):
        assert torch.equal(a[key], b[key]), key


@pytest.mark.timeout(180)
@pytest.mark.parametrize("persistent", [False, True])
def test_the_rings_batches_are_the_copy_paths_written_in_place(
    kinetics_root, small_clip, persistent
):
    kwargs = {**small_clip, **WORKERS, "persistent_workers": persistent}
    plain = KineticsDataModule(kinetics_root, batch_ring=False, **kwargs)
    ringed = KineticsDataModule(kinetics_root, batch_ring=True, **kwargs)
    a, b = plain.train_dataloader(), ringed.train_dataloader()
    assert plain._ring is None and ringed._ring is not None
    assert ringed._ring.slots == slots_for(2, None) == 2 * 2 + SPARE_SLOTS  # fewer than 2 epochs
    assert len(a) == len(b) == math.ceil(11 / 2)  # 11 videos, 2 per batch of 4 clips
    for epoch, stop in ((0, None), (1, 1), (2, None), (3, None)):  # epoch 1 abandoned
        want, got = _epoch(plain, a, epoch, stop), _epoch(ringed, b, epoch, stop)
        assert len(got) == len(want)
        for x, y in zip(want, got, strict=True):
            _same(x, y)
    assert b.ring._next > 2 * ringed._ring.slots  # the slots came round several times


@pytest.mark.timeout(120)
def test_a_batch_stays_intact_while_the_next_two_are_fetched(kinetics_root, small_clip):
    """Lightning fetches a batch ahead of the step it runs; the DataLoader has up to
    ``prefetch_factor * num_workers`` more in flight: none of them may land in a held slot."""
    dm = KineticsDataModule(kinetics_root, batch_ring=True, **{**small_clip, **WORKERS})
    loader = dm.train_dataloader()
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        held: list[tuple[dict, torch.Tensor]] = []
        for batch in loader:
            held.append((batch, batch["video"].clone()))
            if len(held) == 3:  # the oldest is copied to the device only now
                old, when_handed_out = held.pop(0)
                assert torch.equal(old["video"], when_handed_out)
                dm.on_after_batch_transfer(old, 0)


@pytest.mark.timeout(120)
def test_an_unfinished_epochs_workers_stop_before_the_next_epoch_takes_the_slots(
    kinetics_root, small_clip
):
    """An epoch left unfinished while its iterator is still referenced (Lightning's fetcher
    after ``max_steps`` or a stop): its workers could still write into slots the next epoch
    reuses, so they are stopped when the next epoch's iterator is made."""
    kwargs = {**small_clip, **WORKERS}
    plain = KineticsDataModule(kinetics_root, batch_ring=False, **kwargs)
    ringed = KineticsDataModule(kinetics_root, batch_ring=True, **kwargs)
    loader = ringed.train_dataloader()
    loader.sampler.set_epoch(0)
    unfinished = iter(loader)
    next(unfinished)
    workers = loader.ring.last_iterator()._workers
    assert all(w.is_alive() for w in workers)
    got = _epoch(ringed, loader, 1)
    assert not any(w.is_alive() for w in workers)
    want = _epoch(plain, plain.train_dataloader(), 1)
    for x, y in zip(want, got, strict=True):
        _same(x, y)
    del unfinished


class _Copy:
    """Stands in for a CUDA event recorded after a copy out of a slot."""

    def __init__(self) -> None:
        self.waited = 0

    def synchronize(self) -> None:
        self.waited += 1


def test_a_slot_is_given_out_again_only_after_the_copy_out_of_it():
    ring = BatchRing(slots=3, slot_bytes=8)
    assert [ring.acquire() for _ in range(3)] == [0, 1, 2]
    copy = _Copy()
    ring._copies[1] = copy  # batch 1's copy to the device was launched
    assert ring.acquire() == 0 and copy.waited == 0  # another slot: no wait
    assert ring.acquire() == 1 and copy.waited == 1  # its slot again: waited for first
    assert ring.acquire() == 2 and ring.acquire() == 0 and copy.waited == 1  # once only
    ring._copies[2] = later = _Copy()
    ring.wait()  # teardown: every launched copy, before the memory goes
    assert later.waited == 1


def test_a_batch_that_does_not_fit_a_slot_is_refused_in_the_worker():
    ring = BatchRing(slots=2, slot_bytes=3 * 2 * 4 * 4)  # one clip of (3, 2, 4, 4)
    clip = torch.zeros(3, 2, 4, 4, dtype=torch.uint8)
    slot, shape, _ = ring.write(1, [clip])
    assert (slot, shape) == (1, (1, 3, 2, 4, 4))
    with pytest.raises(ValueError, match="does not fit a ring slot of 96 bytes"):
        ring.write(0, [clip, clip])


def test_the_ring_needs_uint8_clips(kinetics_root, small_clip):
    with pytest.raises(ValueError, match="batch_ring true needs uint8 clips"):
        KineticsDataModule(kinetics_root, batch_ring=True, normalize_on_device=False, **small_clip)
    # by default only where the batches go to a GPU
    assert KineticsDataModule(kinetics_root, **{**small_clip, **WORKERS})._train_ring() is None


def test_without_room_in_shared_memory_the_ring_is_left_with_one_warning(
    kinetics_root, small_clip, monkeypatch, caplog
):
    """A container's default 64 MB /dev/shm cannot hold the ring (1 GB for 12 workers at batch
    32): page-locking it would end the training process with a bus error. The pin-memory path
    is used instead, with one warning naming the fix."""
    from a2video.data import ring

    monkeypatch.setattr(ring, "shared_memory_free", lambda: 100_000)  # the tiny ring: 0.3 MiB
    dm = KineticsDataModule(kinetics_root, batch_ring=True, **{**small_clip, **WORKERS})
    with caplog.at_level("WARNING"):
        loader = dm.train_dataloader()
    assert dm._ring is None and loader.ring is None
    (warning,) = [r.getMessage() for r in caplog.records if "batch_ring" in r.getMessage()]
    assert "/dev/shm has 0.1 MiB free and the ring needs 0.3 MiB" in warning
    assert "--shm-size" in warning
    assert "pin-memory thread" in warning
    batch = next(iter(loader))
    assert batch["video"].dtype == torch.uint8  # the copy path's batches


@pytest.mark.timeout(180)
def test_the_mixed_loaders_cpu_batches_come_through_the_ring(
    kinetics_root, small_clip, monkeypatch
):
    fake_nvdec.install(monkeypatch)
    mixed = {"decoder": "nvdec", "nvdec_share": 0.5, "nvdec_threads": 2}
    kwargs = {**small_clip, **WORKERS, "num_workers": 1}
    plain = KineticsDataModule(kinetics_root, **kwargs)
    ringed = KineticsDataModule(kinetics_root, batch_ring=True, **kwargs, **mixed)
    a, b = plain.train_dataloader(), ringed.train_dataloader()
    for epoch in range(2):
        a.sampler.set_epoch(epoch)
        b.sampler.set_epoch(epoch)
        got = []
        for batch in b:
            got.append((_in_ring(batch["video"], ringed._ring), batch["video"].clone()))
            ringed.on_after_batch_transfer(batch, 0)
        want = list(a)
        assert [in_ring for in_ring, _ in got] == [j % 2 == 0 for j in range(len(want))]
        for x, (_, video) in zip(want, got, strict=True):
            assert torch.equal(x["video"], video)


class _Losses(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.ringed: set[bool] = set()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))
        self.ringed.add(trainer.datamodule._ring is not None)


@pytest.mark.timeout(240)
def test_fit_on_the_ring_trains_on_the_same_batches(kinetics_root, tmp_path):
    """``train.py fit --data.batch_ring true``: the same losses, step for step, as without."""
    torch.set_num_threads(1)
    losses = {}
    for ring in ("false", "true"):
        record = _Losses()
        extra = ["--data.num_workers", "2", "--data.batch_ring", ring, "--trainer.max_epochs", "1"]
        A2VideoCLI(
            VideoClassifier,
            KineticsDataModule,
            trainer_defaults={"callbacks": [record]},
            args=tiny_fit_args(kinetics_root, tmp_path / ring, *extra),
        )
        losses[ring] = record.losses
        assert record.ringed == {ring == "true"}
    assert len(losses["true"]) == math.ceil(11 / 4)
    assert losses["true"] == losses["false"]


@pytest.mark.timeout(120)
def test_bench_handover_runs_without_pyav_decord_or_jsonargparse(tmp_path):
    """``benchmarks/bench_handover.py`` (what gpu_checks.sh runs on a GPU host, which has no
    PyAV, decord or jsonargparse): both paths' rows, tiny batches, in a subprocess."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    absent = ("av", "decord", "jsonargparse", "lightning")
    blocked = f"import sys; [sys.modules.__setitem__(m, None) for m in {absent!r}]"
    args = ["--batch-clips", "2", "--frames", "2", "--crop", "16", "--workers", "1"]
    args += ["--prefetch", "2", "--rounds", "1", "--fill-s", "0.5", "--worker-reps", "2"]
    args += ["--json", str(tmp_path / "h.json")]
    code = (
        f"{blocked}; sys.path.insert(0, 'benchmarks'); import bench_handover; "
        f"sys.exit(bench_handover.main({args!r}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=100
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "h.json").read_text())
    assert set(result["training_process_ms_per_batch"]) == {"copy", "ring"}
    assert result["batch_mb"] == round(2 * 3 * 2 * 16 * 16 / 1e6, 1) and not result["ring_pinned"]
    assert "| ring |" in proc.stdout


def test_bench_handover_refuses_fewer_than_two_batches_in_flight(capsys):
    """One worker prefetching one batch leaves no batch to time: one line, not a division by
    zero after the loader started."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_handover

    with pytest.raises(SystemExit) as exit_:
        bench_handover.main(["--workers", "1", "--prefetch", "1"])
    assert exit_.value.code == 2
    assert "--workers x --prefetch must be at least 2" in capsys.readouterr().err
