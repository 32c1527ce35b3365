"""Training callbacks: a checkpoint on SIGTERM (pre-emption), a collective watchdog, step timing.

``SaveOnSigterm``: SLURM, Kubernetes and torchrun send SIGTERM before killing a job; Lightning
saves nothing unless on SLURM with auto-requeue. This callback saves ``last.ckpt`` at the end of
the current training batch, on every cluster and on every rank together, at exactly the point where
ModelCheckpoint's step checkpoints are taken, so ``--ckpt_path last`` resumes with no step lost or
repeated. During ``validate``, ``test`` and ``predict`` it stops every rank together at the end of
the same batch, with one line (nothing is saved: such a run is repeated whole), instead of
Lightning's handler, which leaves the ranks' collectives mismatched.

``CollectiveWatchdog``: a timeout on the process group, so that a collective one rank waits for in
vain ends the run with a message naming the stage instead of hanging.

``StepTimer``: wall time per optimizer step and the share of it spent waiting for the next batch
(between ``on_train_batch_end`` and the next ``on_train_batch_start``), for throughput reports.
"""

from __future__ import annotations

import copy
import faulthandler
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

__all__ = [
    "DEFAULT_COLLECTIVE_TIMEOUT_S",
    "CollectiveWatchdog",
    "LastCheckpoint",
    "SaveOnSigterm",
    "StepTimer",
    "VersionedRichProgressBar",
]


class VersionedRichProgressBar(RichProgressBar):
    """Lightning's rich progress bar, with the logger's version shown as the integer it is
    (``v_num: 3``; Lightning formats every number with ``.3f``: ``v_num: 3.000``)."""

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        if isinstance(items.get("v_num"), int):
            items["v_num"] = str(items["v_num"])
        return items


def stops_mid_epoch(trainer: Trainer) -> bool:
    """Whether ``fit`` ends before the epoch's last batch (``max_steps``, ``max_time``, a stop).

    Lightning counts such an epoch as finished (a checkpoint written at its end resumes at the
    next epoch, and the rest of this one is never trained), so ``last.ckpt`` is written at the
    batch end instead, where a resume continues the epoch; and it logs the epoch's figures over
    the batches so far, which a2video keeps from the loggers (:func:`log_epoch_figures`).
    """
    if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
        return False
    max_steps = trainer.max_steps
    if max_steps is not None and max_steps >= 0 and trainer.global_step >= max_steps:
        return True
    return bool(trainer.should_stop) and getattr(trainer.fit_loop, "_can_stop_early", True)


def log_epoch_figures(trainer: Trainer) -> bool:
    """Whether the train epoch's figures (``train/top1``, ``data/bad_videos``, ``perf/*``) are
    logged: not at a stop inside the epoch (:func:`stops_mid_epoch`), where they cover part of
    it; a resume logs the whole epoch's at its end, so the logs hold one row per epoch, as an
    uninterrupted run's. Such figures go to :func:`monitor_only` instead."""
    return not stops_mid_epoch(trainer)


def monitor_only(trainer: Trainer, values: dict[str, Any]) -> None:
    """``values`` in ``trainer.callback_metrics`` (monitors, EarlyStopping), not the loggers.

    (Not ``self.log(..., logger=False)``: Lightning refuses a key logged from one hook with
    other arguments than in an earlier epoch.)"""
    trainer.callback_metrics.update({k: torch.as_tensor(v).detach() for k, v in values.items()})


def early_stopping_ahead(trainer: Trainer) -> dict[str, dict[str, Any]]:
    """The states the EarlyStoppings that check at the train epoch's end will have after they
    count the validation that just ended, by callback state key; the callbacks are untouched.

    Only those monitoring a figure this validation logged: one logged in the train epoch (its
    end comes later) is counted there. Called at the end of a validation inside ``fit``.
    """
    logged = {m.meta.name for m in trainer.fit_loop.epoch_loop.val_loop._results.result_metrics}
    states = {}
    for callback in trainer.early_stopping_callbacks:
        current = trainer.callback_metrics.get(callback.monitor)
        # (_check_on_train_epoch_end False: it counted this validation already, at its end)
        if not callback._check_on_train_epoch_end or current is None:
            continue
        if callback.monitor not in logged or trainer.fast_dev_run:
            continue
        ahead = copy.copy(callback)  # its figures are rebound, never changed in place
        stop, reason = ahead._evaluate_stopping_criteria(current.squeeze())
        if stop:  # as EarlyStopping._run_early_stopping_check records a stop
            ahead.stopped_epoch, ahead.stopping_reason_message = trainer.current_epoch, reason
        states[callback.state_key] = ahead.state_dict()
    return states


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
        # callback state key -> state written instead of the callback's own (a stop's saves)
        self._states_ahead: dict[str, dict[str, Any]] = {}

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        n = self._every_n_train_steps
        due = bool(n) and trainer.global_step % n == 0
        if due or stops_mid_epoch(trainer):
            self._save_last(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if stops_mid_epoch(trainer) and self._last_global_step_saved == trainer.global_step:
            return  # saved mid-epoch: as an epoch end, a resume would skip the epoch's rest
        # again where the step's batch end was saved: that checkpoint resumes with the epoch's
        # validation and end (a2video.training.resume), which ran since
        self._save_last(trainer, again=True)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # A validation inside the epoch (val_check_interval) whose EarlyStopping ends the fit:
        # the stop is known only now, after this batch's end. A validation after a batch whose
        # end was saved: saved again, or a resume from that batch's end validates once more.
        stopping = stops_mid_epoch(trainer)
        try:
            if stopping:
                # The validation of a stop (max_time), which a resume does not run again: the
                # EarlyStoppings that count it at the train epoch's end, after this save, are
                # saved as they will be then (and count it once, then); the other
                # ModelCheckpoints (best-*.ckpt) record it now, so last.ckpt holds their top-k;
                # at the epoch's end their hook finds this step saved and does nothing.
                self._states_ahead = early_stopping_ahead(trainer)
                for callback in trainer.checkpoint_callbacks:
                    if isinstance(callback, ModelCheckpoint) and not isinstance(
                        callback, LastCheckpoint
                    ):
                        callback.on_train_epoch_end(trainer, pl_module)
            if stopping or self._last_global_step_saved == trainer.global_step:
                self._save_last(trainer, again=True)
        finally:
            self._states_ahead = {}

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._states_ahead and "callbacks" in checkpoint:
            checkpoint["callbacks"].update(self._states_ahead)

    def _save_last(self, trainer: Trainer, again: bool = False) -> None:
        """Write ``last.ckpt`` now, unless Lightning would not (dry run, sanity check, not fit)
        or it already holds this step (``again``: even then, a later point of the step)."""
        if again and self._last_global_step_saved == trainer.global_step > 0:
            self._last_global_step_saved = -1  # (the skip's only test of what was saved)
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            self._last_global_step_saved = trainer.global_step

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Lightning's ModelCheckpoint saves `last` here even under fast_dev_run, which would
        # write a dry run's weights over a real run's last.ckpt in the same folder.
        if not trainer.fast_dev_run:
            super().on_train_end(trainer, pl_module)


class SaveOnSigterm(Callback):
    """Save ``<checkpoint dir>/last.ckpt`` when SIGTERM arrives during ``fit``, then stop.

    Lightning 2.6's own SIGTERM handler runs a ``broadcast`` inside the signal handler of the rank
    that got the signal: a collective at a random point of one rank's program. When the signal
    reaches a rank other than 0 (a node-local ``kill``, SLURM signalling tasks one by one) the
    ranks' collectives no longer match and gloo aborts the run without a checkpoint. So during
    ``fit`` this callback replaces that handler by one that only sets its own flag
    (:attr:`received`). With several processes the ranks agree on the flags with one all-reduce
    per training batch, started at the batch start and read at the batch end, on a gloo group of
    its own over a host tensor: it runs in the background while the batch computes, and never
    waits for the GPU. When any rank had the signal at a batch start, every rank saves
    ``last.ckpt`` together at that batch end and raises Lightning's ``SIGTERMException`` after it
    (before a validation that would follow it): every rank stops after the same step and
    ``--ckpt_path last`` resumes right after it. At the epoch's last batch the stop waits for the
    epoch's validation and end (its train accuracy is logged there), where ``last.ckpt`` is saved
    again; the first save covers a kill in between. A signal that comes while a batch runs is acted
    on after the next one; one that comes during validation, after the next training batch (not
    at all if the fit ends there). One process acts at the end of the batch the signal came in.
    With ``accumulate_grad_batches`` > 1 the save waits for the batch that ends the window (its
    optimizer step): a checkpoint inside one would drop the gradients gathered so far.

    In ``validate``, ``test`` and ``predict`` runs (not the validation inside a fit) the same
    handler and per-batch agreement stop every rank at the end of the same batch: one line says
    no results were written and how to go on (:attr:`eval_hint`), and the run exits with status
    143 (128 + SIGTERM: not done). The ranks agree over the batches every rank runs (their
    shards may differ by one video); a signal after those, or in a single process at its last
    batch, lets the run finish and write its results.

    Args:
        filename: checkpoint file name inside the ModelCheckpoint directory.
    """

    EXIT_STATUS = 128 + int(signal.SIGTERM)  # an evaluation stopped before its results

    def __init__(self, filename: str = "last.ckpt") -> None:
        self.filename = filename
        # What the one line of a stopped validate/test/predict run tells the user to do.
        self.eval_hint = "run the same command again"
        self._eval_agreed_batches = 0  # batches of an evaluation run on which the ranks agree
        self._eval_batches = 0  # this rank's batches in that run (its first dataloader)
        self.saved_path: str | None = None
        self.received = False  # this process got SIGTERM (set by the handler only)
        self._trainer: Trainer | None = None
        self._group: Any = None  # the ranks' gloo group for the flags (several processes)
        self._pending: tuple[Any, torch.Tensor] | None = None  # (async all-reduce, its tensor)
        self._stop_due = False  # the ranks agreed to stop: at the next optimizer step
        self._stop_at_epoch_end = False  # saved at the epoch's last batch: stop at its end

    def _path(self, trainer: Trainer) -> str:
        ckpt = trainer.checkpoint_callback
        dirpath = getattr(ckpt, "dirpath", None) if isinstance(ckpt, ModelCheckpoint) else None
        dirpath = dirpath or os.path.join(trainer.default_root_dir, "checkpoints")
        return os.path.join(dirpath, self.filename)

    def _save(self, trainer: Trainer, then: str = "resume with --ckpt_path last") -> None:
        path = self._path(trainer)
        # On every rank: rank 0 writes, then all meet in a barrier.
        trainer.save_checkpoint(path, weights_only=False)
        self.saved_path = path
        rank_zero_info(
            f"a2video: SIGTERM received: saved {path} at step {trainer.global_step}; {then}"
        )

    # ------------------------------------------------------------------ the handler
    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # No collective and no I/O here: the main thread may be anywhere, even inside one.
        self.received = True
        trainer = self._trainer
        if (
            trainer is not None
            and trainer.world_size == 1
            and not trainer.training
            and trainer.state.fn == "fit"
        ):
            # One process: Lightning's own flag interrupts a running validation. Not while
            # training: Lightning would stop after this batch, maybe inside an accumulation
            # window; on_train_batch_end stops at the window's end.
            trainer._signal_connector.received_sigterm = True

    def _install(self, trainer: Trainer) -> None:
        # Lightning registers its handlers just before the fit loop and restores the previous
        # ones at teardown; this replaces its SIGTERM handler for the rest of the fit.
        if threading.current_thread() is threading.main_thread():
            self._trainer = trainer
            signal.signal(signal.SIGTERM, self._handle)

    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._install(trainer)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._install(trainer)
        if trainer.world_size > 1:
            # Lightning's epoch loop broadcasts its SIGTERM flag from rank 0 before every batch
            # and reads it with .item(): on GPUs a device-to-host copy that waits for the step
            # queued before it, every step. This callback's flags replace it (an asynchronous
            # host all-reduce; it sets Lightning's flag on every rank after the save).
            loop = trainer.fit_loop.epoch_loop
            if hasattr(loop, "_broadcast_sigterm_tensor"):
                loop._broadcast_sigterm_tensor = _no_broadcast
        self._join_group(trainer)

    def _join_group(self, trainer: Trainer) -> None:
        if trainer.world_size > 1 and self._group is None and dist.is_initialized():
            # On every rank (new_group is a collective). Host tensors over gloo: the flags never
            # wait for a GPU stream, whatever the training backend.
            watchdog = [c for c in trainer.callbacks if isinstance(c, CollectiveWatchdog)]
            timeout = timedelta(seconds=watchdog[0].timeout) if watchdog else None
            self._group = dist.new_group(backend="gloo", timeout=timeout)

    def _start_agreeing(self) -> None:
        """Start this batch's all-reduce of the ranks' flags (read at the batch end)."""
        if self._group is not None and self._pending is None:
            flag = torch.tensor([int(self.received)], dtype=torch.int32)
            work = dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group, async_op=True)
            self._pending = (work, flag)

    def _agreed(self) -> bool:
        """Whether any rank had the signal at the batch start (the pending reduce's result)."""
        work, flag = self._pending  # type: ignore[misc]
        self._pending = None
        work.wait()
        return bool(flag.item())

    # ------------------------------------------------------------------ acting on it
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._start_agreeing()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        got = self.received
        if self._pending is not None:
            # On every rank at every batch: a signal any rank had at the batch start stops all of
            # them here, together. The reduce ran during the batch; this wait is normally instant.
            got = self._agreed()
        elif trainer.world_size > 1:  # no process group of torch.distributed (not DDP)
            got = trainer.strategy.reduce_boolean_decision(got, all=False)
        self._stop_due = self._stop_due or got  # the same on every rank: the reduce's result
        if self._stop_due and self.saved_path is None and _ends_window(trainer, batch_idx):
            if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
                # The epoch's last batch: its validation and epoch-end logging come next, and a
                # stop here would lose them (the epoch's train accuracy is never logged: its
                # metric states are not in the checkpoint). This save covers a kill during
                # them; on_train_epoch_end saves the epoch's end and stops.
                self._save(trainer, then="validating and logging the epoch before stopping")
                self._stop_at_epoch_end = True
            else:
                self._save(trainer)
                # Lightning raises SIGTERMException on every rank after this batch's remaining
                # hooks.
                trainer._signal_connector.received_sigterm = True

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._stop_at_epoch_end:
            return
        self._stop_at_epoch_end = False
        loop = trainer.fit_loop
        last_epoch = (
            loop.max_epochs not in (None, -1) and trainer.current_epoch + 1 >= loop.max_epochs
        )
        if last_epoch or 0 <= trainer.max_steps <= trainer.global_step:
            return  # the fit ends here anyway, with its own last save
        self._save(trainer)  # the epoch's end: a resume starts the next epoch
        # Lightning raises SIGTERMException on every rank after the epoch-end logging.
        trainer._signal_connector.received_sigterm = True

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._group, self._pending = None, None  # a later fit may have a new process group
        self._stop_due = self._stop_at_epoch_end = False
        self._eval_agreed_batches = 0

    # ------------------------------------------------------------------ validate/test/predict
    def _eval_start(self, trainer: Trainer) -> None:
        if trainer.state.fn == "fit":
            return  # the validation inside a fit: the training hooks above act
        self._install(trainer)
        counts = getattr(trainer, _EVAL_BATCHES[trainer.state.fn.value], None) or [0]
        own = float(counts[0])  # the first dataloader's batches on this rank (inf: no length)
        self._eval_batches = int(own) if own != float("inf") else 0
        agreed = torch.tensor([self._eval_batches], dtype=torch.int64)
        if trainer.world_size > 1:
            self._join_group(trainer)
            if self._group is None:
                agreed.zero_()  # no torch.distributed group to agree over: run to the end
            else:  # every rank is here: one blocking reduce, before the first batch
                dist.all_reduce(agreed, op=dist.ReduceOp.MIN, group=self._group)
        # The last batch is not stopped after: the run is about to write its results.
        self._eval_agreed_batches = max(0, int(agreed) - 1)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # An epoch-end validation would start first, and Lightning's evaluation loop leaves on
        # the ranks with batches left only: stop here, where every rank is.
        if (
            self.saved_path is not None
            and trainer.state.fn == "fit"
            and not self._stop_at_epoch_end
        ):
            raise SIGTERMException()
        self._eval_start(trainer)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_start(trainer)

    on_predict_start = on_test_start

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        agreeing = dataloader_idx == 0 and batch_idx < self._eval_agreed_batches
        if agreeing and self._group is not None:
            self._start_agreeing()

    on_test_batch_start = on_predict_batch_start = on_validation_batch_start

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        # (a fit's validation: _eval_agreed_batches is 0 there, so this returns at once)
        if dataloader_idx != 0 or batch_idx >= self._eval_agreed_batches:
            return
        if self._agreed() if self._pending is not None else self.received:
            rank_zero_info(
                f"a2video: SIGTERM received: {trainer.state.fn.value} stopped after batch "
                f"{batch_idx + 1} of {self._eval_batches}; no results written; {self.eval_hint}"
            )
            raise SIGTERMException(self.EXIT_STATUS)

    on_test_batch_end = on_predict_batch_end = on_validation_batch_end

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


# The evaluation run's batch count on this rank, by trainer function
_EVAL_BATCHES = {"validate": "num_val_batches", "test": "num_test_batches",
                 "predict": "num_predict_batches"}  # fmt: skip


def _no_broadcast() -> None:
    """Lightning's per-batch SIGTERM broadcast, replaced (see SaveOnSigterm.on_train_start)."""


def _ends_window(trainer: Trainer, batch_idx: int) -> bool:
    """Whether training batch ``batch_idx`` ended with an optimizer step: the last batch of an
    accumulation window or of the epoch (Lightning's own test, where it has one)."""
    loop = trainer.fit_loop.epoch_loop
    accumulates = getattr(loop, "_should_accumulate", None)
    if callable(accumulates):
        return not accumulates()
    n = max(1, int(trainer.accumulate_grad_batches))
    return (batch_idx + 1) % n == 0 or bool(loop.batch_progress.is_last_batch)


DEFAULT_COLLECTIVE_TIMEOUT_S = 1800.0  # seconds; `--collective_timeout` of the CLI


class CollectiveWatchdog(Callback):
    """Turn a collective that waits forever into an error that names the stage.

    Every rank must call the same collectives (broadcast, barrier, all-reduce, gather) in the same
    order; when one rank is stuck, has died or skips one (a collective behind a rank condition),
    the others wait. From its ``setup`` hook on (the first callback hook, once every rank has
    joined), this sets ``timeout`` on the default process group (``torch.distributed.set_timeout``),
    so such a wait ends after ``timeout`` seconds: gloo raises in the waiting rank, and this
    callback puts the stage (fit/validate/test/predict, epoch, step, last hook entered) in front of
    the error and stops Lightning's child processes. NCCL's own watchdog aborts the process after
    the same timeout; ``faulthandler`` then prints each rank's Python stack. Joining the group (and
    the few collectives before the callbacks' ``setup``) keep the strategy's own timeout (torch's
    30 minutes unless ``DDPStrategy(timeout=…)``), so a slow cluster start is not cut short.

    Args:
        timeout: seconds a collective may wait for the other ranks.
    """

    def __init__(self, timeout: float = DEFAULT_COLLECTIVE_TIMEOUT_S) -> None:
        if timeout <= 0:
            raise ValueError(f"collective_timeout must be > 0 seconds, got {timeout}")
        self.timeout = float(timeout)
        self.last_hook = "(none yet: start-up)"

    def where(self, trainer: Trainer) -> str:
        """The stage of ``trainer`` in words, e.g. ``fit (train), epoch 1, global step 7, …``."""
        state = trainer.state
        fn = state.fn.value if state.fn else "?"
        stage = f" ({state.stage.value})" if state.stage else ""
        return (
            f"{fn}{stage}, epoch {trainer.current_epoch}, global step {trainer.global_step}, "
            f"last hook entered: {self.last_hook}"
        )

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.last_hook = "setup"
        if dist.is_available() and dist.is_initialized():
            dist.set_timeout(timedelta(seconds=self.timeout))  # on every rank: a local setting
            if not faulthandler.is_enabled():
                faulthandler.enable(all_threads=True)  # a NCCL-timeout abort prints the stacks

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        text, kill = str(exception), True
        if _TIMED_OUT.search(text):
            cause = (
                f"a collective waited longer than collective_timeout={self.timeout:g} s; another "
                "rank is stuck, has died, or skipped a collective (one behind a rank condition). "
                "See the other ranks' output; raise --collective_timeout if this stage can "
                "legitimately take longer"
            )
        elif _PEER_GONE.search(text):
            cause = "another rank ended (see its output for the first error)"
        elif _NOT_JOINED.search(text):
            cause = (
                "not every rank joined the process group: start every rank, with "
                "--trainer.devices x --trainer.num_nodes equal to the number of processes"
            )
        elif _SYNC_BN_CPU.search(text):
            kill = False  # every rank raises it by itself
            cause = (
                "sync_batchnorm needs GPUs (torch's SyncBatchNorm has no CPU implementation); "
                "use --trainer.sync_batchnorm false on the CPU"
            )
        else:
            return
        message = f"a2video: rank {trainer.global_rank}: {cause}; during {self.where(trainer)}"
        if exception.args and isinstance(exception.args[0], str):  # the traceback's last line
            exception.args = (f"{message}\n{exception.args[0]}", *exception.args[1:])
        else:
            sys.stderr.write(message + "\n")
        launcher = trainer.strategy.launcher
        if kill and getattr(launcher, "procs", None):
            # The process group is broken: Lightning's child processes cannot finish; a stuck
            # one would otherwise outlive this (launching) process.
            launcher.kill(signal.SIGKILL)


# gloo's wait, NCCL's watchdog (when it raises instead of aborting), the store's barriers.
_TIMED_OUT = re.compile(
    r"Timed out waiting \d+ ?ms|collective operation timeout|Timed out initializing process group"
    r"|wait timeout after \d+ ?ms|Socket Timeout"
)
_PEER_GONE = re.compile(r"Connection (closed|reset) by peer|Broken pipe")
_NOT_JOINED = re.compile(r"waiting for clients|clients joined")
_SYNC_BN_CPU = re.compile(r"SyncBatchNorm layers only work with GPU modules")


def _mark(hook: str) -> Callable[..., None]:
    def mark(self: CollectiveWatchdog, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        self.last_hook = hook

    mark.__name__ = hook
    return mark


for _hook in (
    "on_fit_start",
    "on_sanity_check_start",
    "on_sanity_check_end",
    "on_train_start",
    "on_train_epoch_start",
    "on_train_batch_start",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_train_batch_end",
    "on_train_epoch_end",
    "on_validation_start",
    "on_validation_batch_start",
    "on_validation_batch_end",
    "on_validation_epoch_end",
    "on_validation_end",
    "on_test_start",
    "on_test_batch_start",
    "on_test_batch_end",
    "on_test_epoch_end",
    "on_predict_start",
    "on_predict_batch_start",
    "on_predict_batch_end",
    "on_predict_epoch_end",
    "on_save_checkpoint",
    "on_train_end",
    "teardown",
):
    setattr(CollectiveWatchdog, _hook, _mark(_hook))


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
        if not s["steps"]:
            return
        figures = {f"perf/{key}": s[key] for key in ("clips_per_s", "data_wait_share")}
        if not log_epoch_figures(trainer):
            monitor_only(trainer, figures)
            return
        for key, value in figures.items():
            pl_module.log(key, value, rank_zero_only=True)


def _sync(pl_module: LightningModule) -> None:
    device = pl_module.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
