"""Training callbacks: a checkpoint on SIGTERM (pre-emption) and step timing.

``SaveOnSigterm``: SLURM, Kubernetes and torchrun send SIGTERM before killing a job. Lightning's
signal connector records it (``trainer.received_sigterm``) and raises ``SIGTERMException`` at the
end of the current batch; only on SLURM with auto-requeue does it save anything. This callback
saves ``last.ckpt`` at the end of that batch, on every cluster, at exactly the point where
ModelCheckpoint's step checkpoints are taken, so ``--ckpt_path last`` resumes with no step lost or
repeated.

``StepTimer``: wall time per optimizer step and the share of it spent waiting for the next batch
(between ``on_train_batch_end`` and the next ``on_train_batch_start``), for throughput reports.
"""

from __future__ import annotations

import os
import time
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

__all__ = ["LastCheckpoint", "SaveOnSigterm", "StepTimer"]


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt`` every ``every_n_train_steps`` optimizer steps and at every epoch end.

    Lightning's ModelCheckpoint takes one trigger (steps or epochs) and, since 2.5, refreshes
    ``last`` only when it saved a top-k file; this one refreshes ``last.ckpt`` on both triggers
    (after the epoch's validation), which is what ``--ckpt_path last`` resumes from. Writes are
    atomic through :class:`a2video.training.checkpoint.AtomicCheckpointIO`.

    Args:
        every_n_train_steps: steps between saves (0: only at epoch ends).
        **kwargs: other ModelCheckpoint arguments (``dirpath``…); ``save_last`` is forced on.
    """

    def __init__(self, every_n_train_steps: int = 500, **kwargs: Any) -> None:
        kwargs.update(save_top_k=0, monitor=None, save_last=True, enable_version_counter=False)
        super().__init__(every_n_train_steps=every_n_train_steps or None, **kwargs)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        n = self._every_n_train_steps
        if n and trainer.global_step % n == 0 and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            self._last_global_step_saved = trainer.global_step

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            self._last_global_step_saved = trainer.global_step

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        return None


class SaveOnSigterm(Callback):
    """Save ``<checkpoint dir>/last.ckpt`` when SIGTERM arrives during ``fit``, then stop.

    Args:
        filename: checkpoint file name inside the ModelCheckpoint directory.
    """

    def __init__(self, filename: str = "last.ckpt") -> None:
        self.filename = filename
        self.saved_path: str | None = None

    def _path(self, trainer: Trainer) -> str:
        ckpt = trainer.checkpoint_callback
        dirpath = getattr(ckpt, "dirpath", None) if isinstance(ckpt, ModelCheckpoint) else None
        dirpath = dirpath or os.path.join(trainer.default_root_dir, "checkpoints")
        return os.path.join(dirpath, self.filename)

    def _save(self, trainer: Trainer) -> None:
        path = self._path(trainer)
        trainer.save_checkpoint(path)
        self.saved_path = path
        rank_zero_info(
            f"a2video: SIGTERM received: saved {path} at step {trainer.global_step}; "
            "resume with --ckpt_path last"
        )

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        got = bool(trainer.received_sigterm)
        if trainer.world_size > 1:  # a signal seen by any rank stops all of them together
            got = trainer.strategy.reduce_boolean_decision(got, all=False)
        if got and self.saved_path is None:
            # Lightning raises SIGTERMException after the remaining batch-end hooks.
            self._save(trainer)

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        # SIGTERM during validation: Lightning raises from the evaluation loop. A save needs all
        # ranks, which only a single process can guarantee here.
        if (
            isinstance(exception, SIGTERMException)
            and self.saved_path is None
            and trainer.world_size == 1
            and trainer.state.fn == "fit"
        ):
            self._save(trainer)


class StepTimer(Callback):
    """Measure training throughput and the share of step time spent waiting for data.

    After ``skip`` warm-up steps, accumulates per step: the data wait (previous batch end →
    this batch start) and the whole step (previous batch end → this batch end). Logs
    ``perf/clips_per_s`` and ``perf/data_wait_share`` at epoch end; :meth:`summary` returns them.

    Args:
        skip: warm-up steps excluded (compilation, worker start-up).
    """

    def __init__(self, skip: int = 2) -> None:
        self.skip = skip
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.clips = 0
        self.wait_s = 0.0
        self.total_s = 0.0
        self._last_end: float | None = None
        self._start: float | None = None
        self._seen = 0

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last_end = time.perf_counter()

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        _sync(pl_module)
        end = time.perf_counter()
        self._seen += 1
        if self._seen > self.skip and self._last_end is not None and self._start is not None:
            self.steps += 1
            self.clips += int(batch["video"].shape[0]) if isinstance(batch, dict) else 0
            self.wait_s += self._start - self._last_end
            self.total_s += end - self._last_end
        self._last_end = end

    def summary(self) -> dict[str, float]:
        """``steps``, ``clips_per_s``, ``step_ms`` and ``data_wait_share`` over measured steps."""
        if not self.steps or self.total_s <= 0:
            return {"steps": 0, "clips_per_s": 0.0, "step_ms": 0.0, "data_wait_share": 0.0}
        return {
            "steps": self.steps,
            "clips_per_s": self.clips / self.total_s,
            "step_ms": 1000.0 * self.total_s / self.steps,
            "data_wait_share": self.wait_s / self.total_s,
        }

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        s = self.summary()
        if s["steps"]:
            pl_module.log("perf/clips_per_s", s["clips_per_s"], rank_zero_only=True)
            pl_module.log("perf/data_wait_share", s["data_wait_share"], rank_zero_only=True)


def _sync(pl_module: LightningModule) -> None:
    device = pl_module.device
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)
