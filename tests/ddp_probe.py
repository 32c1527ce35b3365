"""Test-only callbacks for multi-process runs of ``train.py`` (tests/test_ddp_*.py).

They are passed on the command line (``--trainer.callbacks+='{"class_path": "ddp_probe.…"}'``)
with ``tests/`` on ``PYTHONPATH``, so each rank of a real ``fit`` (Lightning's launcher, torchrun
or SLURM) builds its own copy, and they write one JSON-lines file per rank into ``out_dir``.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

# this process's listings of Kinetics video folders (annotations.index_videos calls: one per
# split folder, one more per CVDF replacement folder)
_LISTINGS = [0]


def _count_listings() -> None:
    from a2video.data import annotations

    find = annotations.index_videos
    if getattr(find, "_counted", False):
        return

    def counted(*args: Any, **kwargs: Any) -> Any:
        _LISTINGS[0] += 1
        return find(*args, **kwargs)

    counted._counted = True  # type: ignore[attr-defined]
    annotations.index_videos = counted


def _sampled_index(batch: dict) -> list[int]:
    """The indices the sampler asked for (a replaced unreadable video keeps its own index)."""
    index = torch.as_tensor(batch["index"])
    failed = batch.get("failed")
    if failed is not None:
        index = torch.where(torch.as_tensor(failed).bool(), batch["failed_index"], index)
    return [int(i) for i in index.tolist()]


class RecordRanks(Callback):
    """Append one JSON line per batch and per stage end to ``out_dir/rank<R>.jsonl``.

    Lines: ``{"event": "train_batch", "epoch", "step", "index": [...]}`` after every training
    batch; ``{"event": "<stage>_batch", "index": [...]}`` in validate/test/predict (not in the
    sanity check); ``{"event": "end", "fn", "step", "epoch"}`` at the end of every stage;
    ``{"event": "exception", "type"}`` when a stage ends with an exception. The end line also
    holds the last train epoch's logged ``data/*`` figures (``logged``), this rank's
    BadVideoMonitor count of failed training samples (``monitor_failed``) and the
    ``torch.distributed.broadcast`` calls made while training batches ran
    (``broadcasts_in_training``) and this process's listings of Kinetics video folders
    (``listings``: calls of ``index_videos``). Each line also holds
    ``rank``, ``world``, ``node`` and ``local`` (the trainer's view of this process).

    Args:
        out_dir: directory for the per-rank files.
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.broadcasts = 0  # torch.distributed.broadcast calls while training batches run
        _count_listings()  # built before the DataModule's prepare_data and setup run

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # Count the broadcasts of the training loop (Lightning's per-batch SIGTERM flag was one:
        # on GPUs a blocking read every step); validation's and checkpointing's are not counted.
        broadcast = torch.distributed.broadcast
        if getattr(broadcast, "_counted_by", None) is self:
            return

        def counting(*args: Any, **kwargs: Any) -> Any:
            if trainer.training:
                self.broadcasts += 1
            return broadcast(*args, **kwargs)

        counting._counted_by = self  # type: ignore[attr-defined]
        torch.distributed.broadcast = counting

    def _write(self, trainer: Trainer, **row: Any) -> None:
        row.update(
            rank=trainer.global_rank,
            world=trainer.world_size,
            node=trainer.node_rank,
            local=trainer.local_rank,
            pid=os.getpid(),
        )
        Path(self.out_dir).mkdir(parents=True, exist_ok=True)
        with open(os.path.join(self.out_dir, f"rank{trainer.global_rank}.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._write(
            trainer,
            event="train_batch",
            epoch=trainer.current_epoch,
            step=trainer.global_step,
            index=_sampled_index(batch),
        )

    def _eval_batch(self, trainer: Trainer, batch: Any) -> None:
        if not trainer.sanity_checking:
            self._write(
                trainer, event=f"{trainer.state.stage.value}_batch", index=batch["index"].tolist()
            )

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ):
        self._eval_batch(trainer, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._eval_batch(trainer, batch)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._eval_batch(trainer, batch)

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        self._write(trainer, event="exception", type=type(exception).__name__)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        counters = getattr(trainer.datamodule, "data_counters", None)
        self._write(
            trainer,
            event="end",
            fn=stage,
            step=trainer.global_step,
            epoch=trainer.current_epoch,
            interrupted=trainer.interrupted,
            # The last train epoch's logged data/* figures and this rank's BadVideoMonitor count.
            logged={k: float(v) for k, v in trainer.callback_metrics.items() if k[:5] == "data/"},
            monitor_failed=counters("train")["failed"] if counters else None,
            broadcasts_in_training=self.broadcasts,
            listings=_LISTINGS[0],
        )


class SignalAt(Callback):
    """Send ``signum`` to this process when training batch ``global_step == step`` starts.

    Args:
        step: the optimizer step (``trainer.global_step``) at whose batch start to signal.
        rank: the global rank that signals (the others do nothing).
        signum: the signal number (default SIGTERM).
    """

    def __init__(self, step: int, rank: int = 0, signum: int = int(signal.SIGTERM)) -> None:
        self.step, self.rank, self.signum = step, rank, signum

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class SignalAtEval(Callback):
    """Send ``signum`` to this process when batch ``batch`` of a validate/test/predict run starts.

    Args:
        batch: the evaluation batch index at whose start to signal.
        rank: the global rank that signals (the others do nothing).
        signum: the signal number (default SIGTERM).
    """

    def __init__(self, batch: int, rank: int = 0, signum: int = int(signal.SIGTERM)) -> None:
        self.batch, self.rank, self.signum = batch, rank, signum

    def _maybe_signal(self, trainer: Trainer, batch_idx: int) -> None:
        if trainer.global_rank == self.rank and batch_idx == self.batch:
            os.kill(os.getpid(), self.signum)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._maybe_signal(trainer, batch_idx)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._maybe_signal(trainer, batch_idx)

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._maybe_signal(trainer, batch_idx)


class StallRank(Callback):
    """Make one rank stop responding: it sleeps ``seconds`` when its epoch ``epoch`` ends.

    The other ranks then wait in their next collective: the watchdog test's stuck rank.

    Args:
        rank: the global rank that stalls.
        epoch: the training epoch at whose end it stalls.
        seconds: how long it sleeps.
    """

    def __init__(self, rank: int = 1, epoch: int = 0, seconds: float = 120.0) -> None:
        self.rank, self.epoch, self.seconds = rank, epoch, seconds

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.global_rank == self.rank and trainer.current_epoch == self.epoch:
            time.sleep(self.seconds)
