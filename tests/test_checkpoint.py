"""Checkpoints: safe loading (weights_only) with one-line errors, atomic writes, metadata, and
validate/test from a saved checkpoint reproducing the in-training numbers."""

from __future__ import annotations

import os

import pytest
import torch
from lightning.pytorch import Trainer
from test_module import TinyVideoData, tiny_model

import a2video.training.checkpoint as ck
from a2video.training.checkpoint import (
    AtomicCheckpointIO,
    CheckpointError,
    atomic_save,
    load_checkpoint,
)
from a2video.training.module import VideoClassifier


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_crafted_pickle_refused_unless_unsafe(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": _Evil()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.ckpt: refused.*--unsafe_load"):
        load_checkpoint(path)


def test_truncated_and_foreign_files_named_with_fix(tmp_path):
    path = tmp_path / "t.ckpt"
    atomic_save({"state_dict": {"w": torch.ones(100)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"t\.ckpt: .*truncated.*earlier checkpoint"):
        load_checkpoint(path)
    (tmp_path / "n.ckpt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "n.ckpt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_a_torchscript_export_given_as_a_checkpoint_is_named_not_called_corrupt(tmp_path):
    """``a2video predict --ckpt model.pt`` on an ``a2video export --format torchscript`` file said
    "unreadable checkpoint (Cannot use weights_only=True with TorchScript archives...); the file
    is truncated or corrupt: re-copy it" after a torch UserWarning; it is neither. Saved
    weights are still told apart from it (``holds_weights``: export refuses to replace them)."""
    import warnings

    script = tmp_path / "model.pt"
    torch.jit.save(torch.jit.trace(torch.nn.Linear(2, 3), torch.zeros(1, 2)), str(script))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no torch warning on the way
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(script)
    message = str(err.value)
    assert message.startswith(f"{script}: not a PyTorch checkpoint (a TorchScript program"), message
    assert "corrupt" not in message and "\n" not in message
    weights = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(2, 3).state_dict(), weights)
    assert ck.holds_weights(weights) and not ck.holds_weights(script)


def test_flipped_bytes_inside_a_checkpoint_are_refused_not_loaded(tmp_path):
    """A bit flip or bad copy inside a tensor leaves a valid zip directory, and torch.load reads
    other numbers without a word: the members' CRC-32 catch it."""
    path = tmp_path / "last.ckpt"
    weights = torch.arange(4096, dtype=torch.float32)
    atomic_save({"state_dict": {"w": weights}}, path)
    data = bytearray(path.read_bytes())
    start = bytes(data).find(weights[:4].numpy().tobytes())  # the tensor's stored bytes
    data[start + 1000 : start + 1016] = bytes(16)
    path.write_bytes(data)
    corrupt = r"last\.ckpt: the file is corrupt .*checksum.*re-copy"
    with pytest.raises(CheckpointError, match=corrupt):
        load_checkpoint(path)
    load_checkpoint(path, mmap=True)  # metadata reads (ranking best files) do not read it all


def test_a_directory_given_as_a_checkpoint_names_the_files_in_it(tmp_path):
    run = tmp_path / "run"
    atomic_save({"state_dict": {}}, run / "checkpoints" / "last.ckpt")
    for folder, example in ((run, "checkpoints/last.ckpt"), (run / "checkpoints", "last.ckpt")):
        with pytest.raises(CheckpointError, match="is a directory") as err:
            load_checkpoint(folder)
        assert str(run / "checkpoints" / "last.ckpt") in str(err.value), example


def test_checkpoints_get_the_mode_of_a_plain_file_and_killed_writes_are_cleaned(tmp_path):
    """Written with the umask's mode (a team reads a shared run folder; mkstemp's 0o600 did not
    let it), and the temp file a SIGKILL left mid-write is removed by the next save."""
    path = tmp_path / "last.ckpt"
    stale = tmp_path / ".last.ckpt.3f2a9c.tmp"  # what a kill between create and replace leaves
    stale.write_bytes(b"PK partial")
    other = tmp_path / ".best.ckpt.77aa00.tmp"  # another file's: not this save's business
    other.write_bytes(b"x")
    umask = os.umask(0o022)
    try:
        atomic_save({"state_dict": {}}, path)
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == [".best.ckpt.77aa00.tmp", "last.ckpt"]


def test_interrupted_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_save({"state_dict": {}, "global_step": 1}, path)

    def dying_save(obj, f):
        f.write(b"PK\x03\x04partial")
        raise KeyboardInterrupt  # the process dies mid-write

    monkeypatch.setattr(ck.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"state_dict": {}, "global_step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["global_step"] == 1
    assert os.listdir(tmp_path) == ["last.ckpt"]  # no temp file left behind


def test_validate_and_test_from_checkpoint_reproduce_training(tmp_path):
    dm = TinyVideoData(test_size=7, views=3)
    model = tiny_model()
    kw = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
              enable_model_summary=False, plugins=[AtomicCheckpointIO()])  # fmt: skip
    trainer = Trainer(default_root_dir=str(tmp_path), max_epochs=1, **kw)
    trainer.fit(model, dm)
    in_training = float(trainer.callback_metrics["val/top1"])
    (tested,) = trainer.test(model, dm, verbose=False)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)

    ckpt = load_checkpoint(path)  # weights_only=True: the whole Lightning checkpoint passes
    meta = ckpt["a2video"]
    assert meta["arch"] == "a2net_tiny" and meta["class_names"] == dm.class_names
    assert meta["num_classes"] == 4 and meta["clip_spec"]["crop_size"] == 32 and "version" in meta

    fresh = Trainer(default_root_dir=str(tmp_path / "eval"), **kw)
    (val,) = fresh.validate(tiny_model(), dm, ckpt_path=str(path), verbose=False)
    assert val["val/top1"] == pytest.approx(in_training, abs=1e-7)
    (test,) = fresh.test(tiny_model(), dm, ckpt_path=str(path), verbose=False)
    assert test == pytest.approx(tested, abs=1e-7)

    restored = VideoClassifier.from_checkpoint(path)
    assert restored.class_names == dm.class_names
    x = dm.test[0]["video"][:1]
    assert torch.allclose(restored(x), model.eval()(x), atol=1e-5)


def test_find_run_checkpoint_ranks_best_files_by_their_saved_metric(tmp_path):
    """``--ckpt_path best`` with ``save_top_k > 1``: the file whose saved ``val/top1`` is best
    (by ``mode``), whatever the order of names or times; ``last`` is ``last.ckpt`` only."""
    from a2video.training.checkpoint import find_run_checkpoint

    scores = {"best-a.ckpt": 0.5, "best-b.ckpt": 0.9, "best-c.ckpt": 0.7}
    for name, score in scores.items():
        torch.save({"a2video": {"metrics": {"val/top1": score}}}, tmp_path / name)
    torch.save({"a2video": {"metrics": {"val/top1": 1.0}}}, tmp_path / "last.ckpt")
    assert find_run_checkpoint("best", tmp_path).name == "best-b.ckpt"
    assert find_run_checkpoint("best", tmp_path, mode="min").name == "best-a.ckpt"
    assert find_run_checkpoint("last", tmp_path).name == "last.ckpt"
    (tmp_path / "last.ckpt").unlink()
    assert find_run_checkpoint("last", tmp_path) is None
    assert find_run_checkpoint("best", tmp_path / "nowhere") is None


def test_best_is_ranked_by_the_monitor_the_files_record(tmp_path):
    """``best`` ranks by the run's own monitor: from Lightning's ModelCheckpoint state (the
    monitor in the state, the mode in its key), else from the run's YAML in
    ``checkpoint["a2video"]["config"]`` (weights-only files have no callback state); a monitor
    a2video does not keep is read from the state's scores; the caller's only when none is
    recorded."""
    from a2video.training.checkpoint import find_best_checkpoint

    key = "ModelCheckpoint{'monitor': %r, 'mode': %r, 'every_n_train_steps': 0}"
    metrics = {"a": {"val/top1": 0.9, "val/loss": 2.0}, "b": {"val/top1": 0.5, "val/loss": 1.0}}

    def write(folder, config=None, monitor=None):
        folder.mkdir()
        for name, values in metrics.items():
            path = folder / f"best-{name}.ckpt"
            ckpt = {"a2video": {"metrics": values, "config": config}}
            if monitor:  # the state of the ModelCheckpoint that wrote it
                state = {"monitor": monitor[0], "best_k_models": {str(path): torch.tensor(1.0)}}
                ckpt["callbacks"] = {key % monitor: state}
            torch.save(ckpt, path)
        return folder

    best = find_best_checkpoint(write(tmp_path / "lightning", monitor=("val/loss", "min")))
    assert best.path.name == "best-b.ckpt" and best.how.startswith("ranked by val/loss (min)")
    assert best.how.endswith("not by this command's checkpoint.monitor val/top1 (max)")

    config = "checkpoint:\n  monitor: val/loss\n  mode: min\n"
    assert find_best_checkpoint(write(tmp_path / "yaml", config)).path.name == "best-b.ckpt"

    nothing = write(tmp_path / "nothing")
    best = find_best_checkpoint(nothing)
    assert best.path.name == "best-a.ckpt" and "none recorded" in best.how
    assert find_best_checkpoint(nothing, "val/loss", "min").path.name == "best-b.ckpt"

    train_loss = tmp_path / "train_loss"  # not in a2video's metrics: the state's scores rank
    train_loss.mkdir()
    for name, score in (("a", 0.2), ("b", 0.4)):
        path = train_loss / f"best-{name}.ckpt"
        state = {"monitor": "train/loss", "best_k_models": {str(path): torch.tensor(score)}}
        torch.save({"callbacks": {key % ("train/loss", "min"): state}}, path)
    assert find_best_checkpoint(train_loss).path.name == "best-a.ckpt"
