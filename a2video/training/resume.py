"""Exactly-once resume: the data position and every rank's RNG streams travel in the checkpoint.

A ``fit`` killed at any step and resumed with ``--ckpt_path last`` trains on the same batches, in
the same order, with the same augmentation and dropout randomness as an uninterrupted run:

- **Data position.** Each checkpoint records the train sampler's epoch and how many batches of it
  the loop has consumed (``checkpoint["a2video_resume"]``). On resume, before the epoch's iterator
  is made, :meth:`a2video.data.datasets.ShardedSampler.skip` drops those keys, so the rest of the
  epoch follows the same shuffle (augmentation is a pure function of ``(seed, epoch, index)``).
- **RNG streams.** torch (CPU and CUDA), NumPy and Python ``random`` states of every rank, gathered
  to rank 0 when the checkpoint is written and restored, per rank, just before the first training
  batch after the resume, when no draw can come in between (the DataModules' loaders draw their
  worker seeds from their own generator, not torch's global one). A checkpoint the resumed run
  writes before that batch (after a resumed validation or epoch end) records the restored states.

- **What follows the saved batch.** A checkpoint written at a training batch's end (a step
  checkpoint, a SIGTERM save) after which the run was to validate (the epoch's end, a
  ``val_check_interval``), or written during a validation, resumes with that validation, and a
  checkpoint of an epoch's last batch with that epoch's end (its train figures, its epoch-end
  checkpoint): see :func:`_resume_what_followed`.

A checkpoint written before this existed resumes as before (the interrupted epoch continues with
batches from its start) after one warning.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import sys
import warnings
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

__all__ = ["RESUME_KEY", "ResumeState", "capture_rng", "restore_rng"]

RESUME_KEY = "a2video_resume"
VERSION = 1
log = logging.getLogger(__name__)
_LIGHTNING_NOT_RESUMABLE = "You're resuming from a checkpoint that ended before the epoch ended"


@rank_zero_only
def _warn(message: str) -> None:
    # logging, not warnings: a run with warnings filtered (PYTHONWARNINGS=ignore) still says it
    log.warning(message)


def capture_rng() -> dict[str, Any]:
    """This process's RNG states as plain data (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set this process's RNG states from :func:`capture_rng`'s output."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _gather(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (a collective: every rank saves a checkpoint)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _order(trainer: Trainer, sampler: Any) -> dict[str, Any]:
    """What fixes the train batches of an epoch, by the name the user sets it with: skipping
    into a resumed epoch needs the same (older checkpoints record only the first three)."""
    data = getattr(trainer, "datamodule", None)
    order: dict[str, Any] = {
        "data.seed": int(getattr(sampler, "seed", 0)),
        "train videos": int(getattr(sampler, "length", 0)),
        "shuffle": bool(getattr(sampler, "shuffle", False)),
    }
    if getattr(data, "batch_size", None) is not None:
        order["data.batch_size"] = int(data.batch_size)  # clips per batch
        order["data.repeat_clips"] = int(getattr(data, "repeat_clips", 1))
    digest = _train_videos_digest(data)
    if digest is not None:
        order[_VIDEOS_DIGEST] = digest
    return order


# the keys of an older resume state's order -> their names now
_OLD_ORDER_KEYS = {"seed": "data.seed", "videos": "train videos"}
# the order's key for the digest of the train list (named, not printed, when it differs)
_VIDEOS_DIGEST = "the train videos' paths and labels"
# (the train records list, its digest): hashed once per list, not at every checkpoint
_DIGESTED: list[tuple[Any, str]] = []


def _train_videos_digest(data: Any) -> str | None:
    """A digest of the train split as the sampler indexes it: each video's path below the data
    root without its extension (a prepared copy of the same data matches) and its label."""
    dataset = getattr(data, "datasets", {}).get("train")
    records = getattr(dataset, "records", None)
    if records is None:
        return None
    if _DIGESTED and _DIGESTED[0][0] is records:
        return _DIGESTED[0][1]
    root = os.path.abspath(str(getattr(data, "data_root", "") or os.sep))
    below = root.rstrip(os.sep) + os.sep
    h = hashlib.sha1()
    for r in records:
        path = os.path.abspath(r.path)
        # the path below the root by its prefix where it has it (os.path.relpath per record
        # took 1.7 s of a 290k-video split), else relpath's ../ form
        rel = path[len(below) :] if path.startswith(below) else os.path.relpath(path, root)
        h.update(f"{os.path.splitext(rel)[0]}\t{r.label}\n".encode())
    _DIGESTED[:] = [(records, h.hexdigest()[:16])]
    return _DIGESTED[0][1]


def _bad_video_counts(trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
    """This rank's bad-video counts: the train videos found unusable so far (the limit's
    count) and this epoch's ``data/bad_videos`` partial sum."""
    monitor = getattr(getattr(trainer, "datamodule", None), "monitor", None)
    stage = getattr(monitor, "stages", {}).get("train")
    metric = getattr(pl_module, "bad_videos", None)
    epoch_sum = getattr(metric, "sum_value", None)
    return {
        "files": {int(k): str(v) for k, v in (stage.bad_files if stage else {}).items()},
        "epoch_sum": float(epoch_sum) if epoch_sum is not None else 0.0,
        # whether the epoch's sum is logged at its end even where it is 0 (a resume after the
        # epoch's last batch has no batch left to update it)
        "epoch_updated": bool(getattr(metric, "update_called", False)),
    }


def _restore_bad_video_counts(
    trainer: Trainer, pl_module: LightningModule, saved: Any, rank: int, same_epoch: bool
) -> None:
    """Put this rank's bad-video counts back: the files always (the limit counts the run),
    the epoch's partial sum only when the resume continues that epoch."""
    if not saved or rank >= len(saved) or not saved[rank]:
        return
    counts = saved[rank]
    monitor = getattr(getattr(trainer, "datamodule", None), "monitor", None)
    if monitor is not None and hasattr(monitor, "restore_bad_files"):
        monitor.restore_bad_files("train", counts.get("files") or {})
    metric = getattr(pl_module, "bad_videos", None)
    if (
        same_epoch
        and metric is not None
        and (counts.get("epoch_sum") or counts.get("epoch_updated"))
    ):
        metric.update(torch.tensor(float(counts["epoch_sum"])))


def _restart_epoch(trainer: Trainer) -> str:
    """Run the interrupted epoch again from its first batch; say so.

    Its batches before the checkpoint cannot be skipped where the batches or their order
    changed (another batch size, seed, video list, process count). Lightning would go on
    counting from the saved batch with the new loader, from its start: the epoch would end
    before its last videos were trained. From the first batch, every video is trained in it,
    those of the batches already done twice.
    """
    loop = trainer.fit_loop.epoch_loop
    progress = loop.batch_progress
    done = int(progress.current.processed)
    progress.current.reset()
    progress.is_last_batch = False
    # else its reset (after this hook) counts the saved batch as completed once more
    loop.reset_restart_stage()
    return (
        f"epoch {trainer.current_epoch} starts again from its first batch (the videos of its "
        f"{done} batches before the checkpoint are trained twice in it, none is left out)"
    )


def _align_schedule(trainer: Trainer, done: int) -> None:
    """Place the built-in LR schedule's epochs at this run's steps after a resume.

    The schedule counts optimizer steps: this run's steps per epoch times its epochs. The steps
    already taken were not that many where the checkpoint's run had other steps per epoch
    (another process count, batch size or accumulation) or an epoch is trained again: its warm-up,
    milestones and end move by the difference (the module applies it after this hook and says
    the new values), or the LR stayed at the schedule's end (0 for cosine) for the whole rest of
    a run resumed with fewer steps per epoch.

    Args:
        trainer: the resumed trainer (its ``global_step`` restored).
        done: this run's batches of the current epoch that the resume does not train again.
    """
    shift = getattr(trainer.lightning_module, "shift_schedule", None)
    batches = _epoch_batches(trainer)
    if not callable(shift) or batches is None:
        return
    steps = math.ceil(batches / trainer.accumulate_grad_batches)
    expected = trainer.current_epoch * steps + math.ceil(done / trainer.accumulate_grad_batches)
    offset = trainer.global_step - expected
    if offset and shift(offset):
        _warn(
            f"a2video: {trainer.ckpt_path}: {trainer.global_step} optimizer steps so far, this "
            f"run's batches put {expected} there: the LR schedule's warm-up, milestones and end "
            f"move by {offset:+d} steps, so it follows this run's epochs."
        )


def _train_acc_sums(pl_module: LightningModule) -> dict[str, Any] | None:
    """This rank's ``train_acc`` counts of the epoch so far (its epoch-end ``train/top1`` and
    ``train/top5``), or None for a module without one."""
    metric = getattr(pl_module, "train_acc", None)
    if metric is None or not hasattr(metric, "correct"):
        return None
    return {"correct": metric.correct.tolist(), "total": float(metric.total)}


def _restore_train_acc_sums(pl_module: LightningModule, saved: Any, rank: int) -> None:
    """Add this rank's saved counts back when the resume continues their epoch, so its
    ``train/top1`` covers the batches before the checkpoint too."""
    metric = getattr(pl_module, "train_acc", None)
    if not saved or rank >= len(saved) or not saved[rank] or metric is None:
        return
    counts = saved[rank]
    metric.correct += torch.tensor(counts["correct"], dtype=metric.correct.dtype,
                                   device=metric.correct.device)  # fmt: skip
    metric.total += float(counts["total"])
    # the restored counts are the epoch's updates so far: torchmetrics' "compute before update"
    # warning was said at a resumed epoch's end with no batch left to train
    metric._update_count += 1


def _summed(saved: Any) -> dict[str, Any] | None:
    """The ranks' saved ``train_acc`` counts added up (None where there are none)."""
    counts = [c for c in saved or [] if c]
    if not counts:
        return None
    correct = [sum(c["correct"][i] for c in counts) for i in range(len(counts[0]["correct"]))]
    return {"correct": correct, "total": sum(float(c["total"]) for c in counts)}


def _epoch_batches(trainer: Trainer) -> int | None:
    """The train loader's batches per epoch (None for a loader without a length)."""
    batches = trainer.num_training_batches
    return int(batches) if batches != float("inf") else None


def _train_sampler(trainer: Trainer) -> tuple[Any, int | None]:
    """The train loader's sampler if it can skip (ShardedSampler), and the loader's batch size."""
    loader = trainer.train_dataloader
    if isinstance(loader, (list, tuple)) and len(loader) == 1:
        loader = loader[0]
    sampler = getattr(loader, "sampler", None)
    if not callable(getattr(sampler, "skip", None)):
        return None, None
    return sampler, getattr(loader, "batch_size", None)


def _changes(state: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``name a -> b`` for each setting of the saved order that differs now (the video list's
    digest: named only)."""
    saved = {_OLD_ORDER_KEYS.get(k, k): v for k, v in (state.get("order") or {}).items()}
    out = []
    for key, value in saved.items():
        if key in now and now[key] != value:
            out.append(f"{key} differ" if key == _VIDEOS_DIGEST else f"{key} {value} -> {now[key]}")
    return out


def _what_follows(trainer: Trainer) -> str | None:
    """What the run does after the point this checkpoint is written at, that a resume from it
    must do too: ``"validation"`` (written at a training batch's end with a validation due
    after it, or during a fit's validation), ``"epoch_end"`` (at the epoch's last training
    batch, no validation due), or None."""
    fit, loop = trainer.fit_loop, trainer.fit_loop.epoch_loop
    if trainer.validating and not trainer.sanity_checking:
        # a save inside it (SIGTERM) before its last batch: nothing of it is logged yet (a
        # save at its end, by ModelCheckpoint or an early stop, comes after its figures)
        return None if loop.val_loop.batch_progress.is_last_batch else "validation"
    current = loop.batch_progress.current
    if not trainer.training or current.processed != current.completed + 1:
        return None  # not inside on_train_batch_end
    check = getattr(loop, "_should_check_val_fx", None)
    try:
        due = bool(check(fit._data_fetcher)) and not getattr(loop, "_skip_next_val", False)
    except Exception:  # another Lightning: leave its resume as it is
        return None
    if due:
        return "validation"
    return "epoch_end" if loop.batch_progress.is_last_batch else None


def _resume_what_followed(checkpoint: dict[str, Any], follows: str) -> bool:
    """Rewrite the checkpoint's loop state so that Lightning's resume runs what came after the
    saved point (:func:`_what_follows`) instead of skipping it.

    Lightning 2.6 resumes a checkpoint written at a training batch's end (its progress says the
    batch was processed, not completed) as if everything after the batch had run: inside the
    epoch it fast-forwards the validation that was due after the batch
    (``_TrainingEpochLoop.advance``), and at the epoch's last batch it starts the next epoch
    (``_TrainingEpochLoop.reset`` and ``_FitLoop.reset``): the epoch's validation, its
    ``on_train_epoch_end`` (train figures, epoch-end checkpoints) are never run, though the run
    that wrote the checkpoint was killed before them. A checkpoint written during a validation
    (SIGTERM) resumes after it: the rest of it is skipped and nothing of it is logged.

    Lightning resumes one state the way we need: a checkpoint written inside a validation,
    before its first batch ran (``restarted_mid_evaluation``): the epoch loop runs that
    validation, from its first batch, then goes on with the next training batch or the epoch's
    end. So the training batch is marked completed (as after its ``on_train_batch_end``) and, for
    a validation, the validation loop as started and not processed at its first batch. An
    epoch's last batch without a validation only needs the first: the resumed epoch loop finds
    its data used up (:meth:`ResumeState.on_train_start` skips all of it) and ends the epoch.
    This edits the checkpoint's plain progress counters before Lightning reads them, with no
    patch of Lightning's code; counters in another layout are left alone (False).
    """
    try:
        epoch_loop = checkpoint["loops"]["fit_loop"]
        batches = epoch_loop["epoch_loop.batch_progress"]
        val = epoch_loop["epoch_loop.val_loop.batch_progress"]
        loop_state = epoch_loop["epoch_loop.state_dict"]
        cur, tot = batches["current"], batches["total"]
        vcur, vtot = val["current"], val["total"]
        if follows == "validation" and cur["processed"] == cur["completed"]:
            # written during the validation: its train batch is completed already
            done_before = vtot["completed"] - vcur["completed"]  # validations of this epoch
        elif cur["processed"] == cur["completed"] + 1 and tot["processed"] == tot["completed"] + 1:
            cur["completed"], tot["completed"] = cur["processed"], tot["processed"]
            done_before = vtot["completed"]
            if follows == "epoch_end":
                # Lightning's own resume counts this batch's step here (it runs no
                # on_advance_end for it, where the count of the logger's steps would grow)
                loop_state["_batches_that_stepped"] = loop_state["_batches_that_stepped"] + 1
                return True
        else:
            return False
    except (KeyError, TypeError):
        return False
    for progress in (vcur, vtot):
        base = done_before if progress is vtot else 0
        progress.update(ready=base + 1, started=base + 1, processed=base, completed=base)
    val["is_last_batch"] = False
    return True


def _at_epoch_end(trainer: Trainer) -> None:
    """Count the resumed epoch's batches as this run's, all done, where the checkpoint was
    written at its last batch with other batches per epoch (another process count or batch
    size): Lightning decides that the epoch's validation and end are due from its batch counter
    (``_TrainingEpochLoop._should_check_val_fx``, ``_num_ready_batches_reached``), which held
    the old run's count, so the epoch ended with neither (:func:`_resume_what_followed`).
    """
    batches = _epoch_batches(trainer)
    progress = trainer.fit_loop.epoch_loop.batch_progress
    shift = batches - progress.current.completed if batches is not None else 0
    for tracker in (progress.current, progress.total) if shift else ():
        for name in ("ready", "started", "processed", "completed"):
            setattr(tracker, name, getattr(tracker, name) + shift)


class ResumeState(Callback):
    """Saves and restores the data position and the RNG streams (installed by ``A2VideoCLI``)."""

    def __init__(self) -> None:
        self._loaded: dict[str, Any] | None = None
        self._rng_pending: dict[str, Any] | None = None

    # ------------------------------------------------------------------ save
    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.state.fn != "fit":
            return
        # a resumed run saving before its first training batch (a resumed validation or epoch
        # end) saves the RNG states that batch starts from, not those the process began with
        rng = _gather(self._rng_pending if self._rng_pending is not None else capture_rng())
        state: dict[str, Any] = {"version": VERSION, "world_size": len(rng), "rng": rng}
        state["bad_videos"] = _gather(_bad_video_counts(trainer, pl_module))
        state["train_acc"] = _gather(_train_acc_sums(pl_module))
        sampler, batch_size = _train_sampler(trainer)
        if sampler is not None and batch_size:
            state.update(
                epoch=int(sampler.epoch),
                batches=int(trainer.fit_loop.epoch_loop.batch_progress.current.processed),
                epoch_batches=_epoch_batches(trainer),  # did this epoch end: with these batches
                batch_size=int(batch_size),
                order=_order(trainer, sampler),
                follows=_what_follows(trainer),
            )
        checkpoint[RESUME_KEY] = state

    # ------------------------------------------------------------------ load
    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.state.fn != "fit":
            return
        self._loaded = checkpoint.get(RESUME_KEY)
        if self._loaded is None:
            _warn(
                f"a2video: {trainer.ckpt_path}: no data position or RNG state in this checkpoint "
                "(written by an earlier a2video); the interrupted epoch continues with batches "
                "from its start, so some videos are seen twice in it and others not at all."
            )
        elif self._loaded.get("follows"):
            _resume_what_followed(checkpoint, self._loaded["follows"])

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        state, self._loaded = self._loaded, None
        if state is None:
            return
        world, rank = trainer.world_size, trainer.global_rank
        same_epoch = state.get("epoch") == trainer.current_epoch  # a mid-epoch checkpoint
        sampler, batch_size = _train_sampler(trainer)
        # every batch of the epoch trained: only its validation or end is left to run
        # (_resume_what_followed), whatever this run's data or processes
        ended = same_epoch and state["batches"] >= (state.get("epoch_batches") or math.inf)
        if ended:
            if sampler is not None:
                sampler.skip(state["epoch"], sys.maxsize)
            _at_epoch_end(trainer)
            _align_schedule(trainer, _epoch_batches(trainer) or 0)
        if state.get("world_size") != world:
            said = "the RNG streams start afresh."
            if ended:  # its train figures: every rank's counts, summed on one rank
                _restore_train_acc_sums(pl_module, [_summed(state.get("train_acc"))], rank)
            elif state.get("epoch", trainer.current_epoch) >= trainer.current_epoch:  # mid-epoch
                said = f"{_restart_epoch(trainer)}, and {said}"
            _warn(
                f"a2video: {trainer.ckpt_path} was written by {state.get('world_size')} "
                f"processes, this run has {world}: {said}"
            )
            if not ended:
                _align_schedule(trainer, 0)
            return
        self._rng_pending = state["rng"][rank]
        restarted = False
        if same_epoch and not ended:
            changed = _changes(state, _order(trainer, sampler) if sampler is not None else {})
            if sampler is None or (not changed and batch_size != state["batch_size"]):
                changed.append(f"videos per batch {state['batch_size']} -> {batch_size}")
            if changed:
                _warn(
                    f"a2video: {trainer.ckpt_path}: the train data changed "
                    f"({', '.join(changed)}); {_restart_epoch(trainer)}."
                )
                restarted = True
        # the epoch's partial sums only where it goes on from the checkpoint
        going_on = same_epoch and not restarted
        _restore_bad_video_counts(trainer, pl_module, state.get("bad_videos"), rank, going_on)
        if going_on:
            _restore_train_acc_sums(pl_module, state.get("train_acc"), rank)
        if "epoch" not in state or ended:
            return
        _align_schedule(trainer, state["batches"] if going_on else 0)
        if restarted:
            return
        if state["epoch"] < trainer.current_epoch:  # Lightning starts the next epoch: no skip
            # the epoch's length as saved (this run's batches per epoch may differ: other
            # batch_size or repeat_clips); checkpoints before it had only this run's to compare
            per_epoch = state.get("epoch_batches") or _epoch_batches(trainer)
            if per_epoch is not None and state["batches"] < per_epoch:
                _warn(
                    f"a2video: {trainer.ckpt_path} was written when epoch {state['epoch']} "
                    f"stopped after {state['batches']} of its {per_epoch} batches, and Lightning "
                    f"resumes at epoch {trainer.current_epoch}: the rest of epoch "
                    f"{state['epoch']} is not trained (checkpoints of this version save such a "
                    "stop mid-epoch)."
                )
            return
        sampler.skip(state["epoch"], state["batches"] * batch_size)
        # Lightning's "your dataloader is not resumable ... unreliable results" (printed next,
        # for any loader without its own state_dict) is not so here: the skip above resumes it.
        warnings.filterwarnings("ignore", message=_LIGHTNING_NOT_RESUMABLE)

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._rng_pending is not None:
            restore_rng(self._rng_pending)
            self._rng_pending = None
