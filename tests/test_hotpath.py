"""The training hot path never waits for the host; a non-finite step is skipped on the device.

``HostReads`` is a ``TorchFunctionMode`` that records every call reading a tensor's value into
Python (``item``, ``tolist``, ``bool()``, ``float()``, data-dependent shapes such as ``nonzero``
or boolean indexing): on a GPU each of these waits for the device. On the CPU they cost nothing,
but the same Python calls happen, so counting them here catches a sync before it reaches a GPU.
"""

from __future__ import annotations

import collections
import math
import traceback

import pytest
import torch
from lightning.pytorch import Callback
from test_module import TinyVideoData, tiny_model, tiny_trainer
from torch.overrides import TorchFunctionMode

from a2video.training.module import NonFiniteLossError

_T = torch.Tensor
HOST_READS = {
    _T.item: "item",
    _T.tolist: "tolist",
    _T.__bool__: "__bool__",
    _T.__float__: "__float__",
    _T.__int__: "__int__",
    _T.__index__: "__index__",
    _T.numpy: "numpy",
    _T.__format__: "__format__",
    _T.__repr__: "__repr__",
    _T.nonzero: "nonzero",
    torch.nonzero: "nonzero",
    _T.unique: "unique",
    torch.unique: "unique",
    torch.masked_select: "masked_select",
    torch.equal: "equal",
    torch.allclose: "allclose",
}


class HostReads(TorchFunctionMode):
    """Records host reads of tensor values (and boolean-mask indexing) by training batch."""

    def __init__(self) -> None:
        super().__init__()
        self.batch: int | None = None
        self.reads: dict[int | None, list[str]] = collections.defaultdict(list)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = HOST_READS.get(func)
        if name is None and func is _T.__getitem__:
            index = args[1] if len(args) > 1 else None
            index = index if isinstance(index, tuple) else (index,)
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index):
                name = "boolean index"
        if name is not None:
            where = traceback.extract_stack(limit=4)[0]
            self.reads[self.batch].append(f"{name} at {where.filename}:{where.lineno}")
        return func(*args, **kwargs)


class WatchHostReads(Callback):
    """Turns ``HostReads`` on from the first training batch to the end of the epoch."""

    def __init__(self) -> None:
        self.mode = HostReads()
        self.active = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.active:
            self.mode.__enter__()
            self.active = True
        self.mode.batch = batch_idx

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.stop()

    def stop(self) -> None:
        if self.active:
            self.mode.__exit__(None, None, None)
            self.active = False


def test_host_reads_detector_catches_a_per_step_sync() -> None:
    """The detector itself: the old per-step ``bool(torch.isfinite(loss))`` is caught."""
    mode = HostReads()
    with mode:
        loss = torch.tensor(1.0)
        bool(torch.isfinite(loss))
        x = torch.arange(4)
        x[x > 1]
    assert [r.split(" at ")[0] for r in mode.reads[None]] == ["__bool__", "boolean index"]


def test_training_steps_read_nothing_on_the_host_between_logging_steps(tmp_path) -> None:
    """Only logging steps (every ``log_every_n_steps``) may read a value on the host."""
    watch = WatchHostReads()
    trainer = tiny_trainer(
        tmp_path,
        max_steps=8,
        limit_val_batches=0,
        log_every_n_steps=4,
        logger=True,
        callbacks=[watch],
    )
    model = tiny_model()
    try:
        trainer.fit(model, TinyVideoData(train_size=64))
    finally:
        watch.stop()
    assert trainer.global_step == 8
    reads = {b: r for b, r in watch.mode.reads.items() if r}
    assert set(reads) <= {3, 7}, reads  # batch_idx 3 and 7 end the logging windows
    assert model.nonfinite.device_skip  # the default (fused) SGD skips on the device
    assert "train/top1" in trainer.callback_metrics and "train/loss" in trainer.logged_metrics


class NaNAt(torch.nn.Module):
    """A criterion returning NaN at the given (0-based) calls."""

    def __init__(self, inner: torch.nn.Module, bad: set[int]) -> None:
        super().__init__()
        self.inner, self.bad, self.calls = inner, bad, 0

    def forward(self, logits, label):
        loss = self.inner(logits, label)
        bad = self.calls in self.bad
        self.calls += 1
        return loss * float("nan") if bad else loss


class Snapshots(Callback):
    """Weights and optimizer state before and after every training batch."""

    def __init__(self) -> None:
        self.before: dict[int, tuple] = {}
        self.after: dict[int, tuple] = {}

    @staticmethod
    def _take(trainer, pl_module) -> tuple:
        weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        opt = trainer.optimizers[0]
        state = {
            id(p): {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()}
            for p, s in opt.state.items()
        }
        return weights, state

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.before[batch_idx] = self._take(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.after[batch_idx] = self._take(trainer, pl_module)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _params_only(weights: dict) -> dict:
    return {k: v for k, v in weights.items() if "running_" not in k and "num_batches" not in k}


@pytest.mark.parametrize("bad_step", [0, 2])
def test_nonfinite_step_leaves_weights_and_optimizer_state_untouched(tmp_path, bad_step) -> None:
    """A NaN step (the first one, or later with momentum buffers live) moves nothing, is counted."""
    model = tiny_model(max_nonfinite_steps=3)
    model.criterion = NaNAt(model.criterion, {bad_step})
    snaps = Snapshots()
    trainer = tiny_trainer(tmp_path, max_steps=4, limit_val_batches=0, callbacks=[snaps])
    trainer.fit(model, TinyVideoData())
    w0, s0 = snaps.before[bad_step]
    w1, s1 = snaps.after[bad_step]
    assert _same(_params_only(w0), _params_only(w1))  # BN running stats may move, weights not
    if not s0:  # skipped first step: buffers exist but are zero, i.e. a fresh optimizer
        assert all(not s["momentum_buffer"].any() for s in s1.values())
    else:
        assert s0.keys() == s1.keys() and all(_same(s0[k], s1[k]) for k in s0)
    # the neighbouring finite steps did move the weights, and everything stayed finite
    w2, _ = snaps.after[bad_step + 1]
    assert not _same(_params_only(w1), _params_only(w2))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    for s in trainer.optimizers[0].state.values():
        assert torch.isfinite(s["momentum_buffer"]).all()
    assert model.nonfinite_total == 1


def test_nonfinite_limit_stops_the_run_within_the_check_interval(tmp_path) -> None:
    model = tiny_model(max_nonfinite_steps=3)
    model.criterion = NaNAt(model.criterion, set(range(100)))
    trainer = tiny_trainer(tmp_path, max_epochs=5, limit_val_batches=0, log_every_n_steps=2)
    with pytest.raises(NonFiniteLossError, match=r"\d+ consecutive steps had a non-finite loss"):
        trainer.fit(model, TinyVideoData(train_size=64))
    # checked every 2 batches: stops at the first check with a run of >= 3, i.e. after 4 steps
    assert model.nonfinite_total == 4
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_an_unfused_optimizer_still_skips_on_the_host(tmp_path) -> None:
    """An injected optimizer without ``found_inf`` support keeps the per-step host check."""
    model = tiny_model(
        max_nonfinite_steps=2,
        optimizer=lambda groups: torch.optim.SGD(groups, lr=0.05, momentum=0.9, foreach=True),
    )
    model.criterion = NaNAt(model.criterion, {1})
    snaps = Snapshots()
    trainer = tiny_trainer(tmp_path, max_steps=3, limit_val_batches=0, callbacks=[snaps])
    trainer.fit(model, TinyVideoData())
    assert not model.nonfinite.device_skip and model.nonfinite_total == 1
    assert _same(_params_only(snaps.before[1][0]), _params_only(snaps.after[1][0]))


DDP_SCRIPT = """
import sys

import torch
from lightning.pytorch import Callback, Trainer

sys.path.insert(0, sys.argv[2])
from test_module import TinyVideoData, tiny_model


class NaNOnRank1(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, logits, label):
        loss = self.inner(logits, label)
        bad = self.calls == 1 and torch.distributed.get_rank() == 1
        self.calls += 1
        return loss * float("nan") if bad else loss


def weights_and_state(trainer, pl_module):
    weights = sum(float(p.detach().double().sum()) for p in pl_module.parameters())
    state = trainer.optimizers[0].state.values()
    moments = sum(float(v.double().sum()) for s in state for v in s.values() if v.dim())
    return weights, moments


class Report(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.before = weights_and_state(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == 1:  # the NaN step: weights and optimizer state untouched
            self.unchanged = weights_and_state(trainer, pl_module) == self.before

    def on_train_end(self, trainer, pl_module):
        total = sum(float(p.detach().double().sum()) for p in pl_module.parameters())
        with open(f"{sys.argv[1]}/rank{trainer.global_rank}.txt", "w") as f:
            f.write(f"{pl_module.nonfinite_total} {total!r} {self.unchanged}")


torch.manual_seed(0)
options = {}
if sys.argv[3] == "unfused":  # the host check: an optimizer that cannot skip on the device
    options["optimizer"] = lambda groups: torch.optim.AdamW(groups, lr=0.05, foreach=True)
model = tiny_model(max_nonfinite_steps=3, **options)
model.criterion = NaNOnRank1(model.criterion)
trainer = Trainer(
    accelerator="cpu", devices=2, strategy="ddp", max_steps=3, limit_val_batches=0,
    logger=False, enable_progress_bar=False, enable_model_summary=False,
    enable_checkpointing=False, default_root_dir=sys.argv[1], callbacks=[Report()],
)
trainer.fit(model, TinyVideoData())
"""


@pytest.mark.timeout(240)
@pytest.mark.parametrize("optimizer", ["fused", "unfused"])
def test_ddp_a_nan_on_one_rank_is_skipped_by_every_rank(tmp_path, optimizer) -> None:
    """The non-finite flag is all-reduced (on the device with a fused optimizer, on the host
    with another): both ranks skip the step, leaving weights and optimizer state as they were,
    and the replicas stay equal. With an unfused optimizer (the demo configs' AdamW) the first
    NaN ended a DDP run: Lightning refuses a ``training_step`` that returns None under DDP."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "ddp_nan.py"
    script.write_text(DDP_SCRIPT)
    tests = str(Path(__file__).parent)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(tests).parent))
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path), tests, optimizer],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=220,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = [(tmp_path / f"rank{r}.txt").read_text().split() for r in (0, 1)]
    assert [r[0] for r in reports] == ["1", "1"]  # counted on both ranks
    assert [r[2] for r in reports] == ["True", "True"]  # the NaN step changed nothing
    # skipped on both: finite weights, and the replicas did not diverge
    assert math.isfinite(float(reports[0][1])) and reports[0][1] == reports[1][1]
