"""The loggers' side of an exactly-once resume: a killed run, resumed, logs every row once.

A ``fit`` killed after a checkpoint and resumed with ``--ckpt_path`` runs again the steps between
that checkpoint and the kill (:mod:`a2video.training.resume`), and logs them again. Lightning gave
the resumed run a new ``version_N`` folder, so TensorBoard showed two runs overlapping over those
steps and a ``metrics.csv`` per piece (pandas over both saw those steps twice); a ``CSVLogger``
told to use the old folder deletes its ``metrics.csv``. :class:`ResumeLogs` (installed by
``A2VideoCLI``) makes the logs read as the uninterrupted run's:

- **At each checkpoint** (on rank 0, the only one that logs) every logger is flushed
  (``logger.save()``) and its files in the run folder are synced to disk, so whatever a
  checkpoint covers is on disk when it is, after a lost node too; the checkpoint records each
  TensorBoard / CSV logger's ``name`` and ``version`` (``checkpoint["a2video_logs"]``).
- **A resumed fit** continues the version folders its checkpoint records (where the logger's
  version is left unset or set to that one: ``A2VideoCLI`` calls :func:`resume_logs`), and
  as it starts training, before it logs a row, drops there the rows logged at the checkpoint's
  step or later (:func:`drop_csv_rows`, :func:`drop_tensorboard_events`): those the resumed run
  logs again, or, from an older checkpoint than the last, those it supersedes. One line says
  how many went. A resume that fails before (a wrong data_root) drops nothing.

**One version folder per run.** Lightning numbers each logger's folder on its own (the next
``version_N`` free under its ``save_dir/name``), so a TensorBoard and a CSV logger sharing a
``save_dir`` split one run over ``version_0`` (TensorBoard's, with ``config.yaml``) and
``version_1`` (``metrics.csv``), and the next run over ``version_2`` and ``version_3``.
:func:`share_version` (``A2VideoCLI`` calls it for every command) gives the loggers whose version
is unset one version: that of the run's loggers whose version is set (a resumed fit's, or one
the user set) where that folder is new to them, or theirs and free of their kind of logs; else
the next after every version in all their folders. No logger is put into another run's existing
folder.

Rows are kept by their logged step: Lightning logs a batch's rows (and an epoch's figures) at the
step of its optimizer step, counted from 0, so a checkpoint of ``global_step`` S covers the rows
of steps below S and none of the later ones. Except at step S-1, the last the checkpoint covers:

- The validation and epoch end after batch S-1 log at step S-1 too, and a checkpoint saved at
  that batch's end (``last.ckpt`` every N steps) resumes with them, so a kill between their rows
  and ``last.ckpt`` saved again after them left those rows twice.
- Lightning logs the rows that follow a save at that point after the save: a batch's own after
  its ``on_train_batch_end`` hooks (where ModelCheckpoint saves), the epoch's figures after the
  ``on_train_epoch_end`` hooks. A resume does not run that batch or epoch end again, so a kill
  between the save and those rows lost them. The checkpoint records them
  (``checkpoint["a2video_logs_owed"]``) and the resumed run logs them as it starts training.

The rows of step S-1 that the resumed run logs again (those, its validation's, its epoch
figures) are dropped from the killed run's once it has (:func:`drop_relogged_csv_rows`,
:func:`drop_relogged_events`); those it does not log again stay (a validation the checkpoint
was saved after). A second kill before that leaves both runs' rows there: the next resume drops
every copy of a row it logs again.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import struct
import warnings
from collections.abc import Iterator
from typing import Any

from lightning.fabric.utilities.apply_func import convert_tensors_to_scalars
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from a2video.atomic_write import replaced_atomically, sync_to_disk

__all__ = [
    "LOGS_KEY",
    "OWED_KEY",
    "ResumeLogs",
    "drop_csv_rows",
    "drop_relogged_csv_rows",
    "drop_relogged_events",
    "drop_tensorboard_events",
    "resume_logs",
    "share_version",
]

LOGS_KEY = "a2video_logs"
OWED_KEY = "a2video_logs_owed"  # the row Lightning logs right after the checkpoint (_owed)
CSV_FILE = "metrics.csv"  # Lightning's CSVLogger's file in its version folder
EVENTS_PREFIX = "events.out.tfevents."  # TensorBoard's event files
# Lightning's CSVLogger deletes the metrics.csv of a version folder it opens, and says so where
# the folder holds any file (a regular expression: the folder's, escaped)
_CSV_DELETES = "Experiment logs directory {} exists and is not empty"


def _versioned(logger: Logger) -> bool:
    """Loggers that write into ``<save_dir>/<name>/version_N`` on this file system."""
    return isinstance(logger, (TensorBoardLogger, CSVLogger))


def _record(logger: Logger) -> dict[str, Any]:
    return {"logger": type(logger).__name__, "name": logger.name, "version": logger.version}


def _own_file(logger: Logger, name: str) -> bool:
    """Whether the file ``name`` holds rows of ``logger``'s kind."""
    return name.startswith(CSV_FILE if isinstance(logger, CSVLogger) else EVENTS_PREFIX)


def _files(log_dir: str) -> Iterator[str]:
    """The files of ``log_dir`` that hold logged rows (metrics.csv, TensorBoard events)."""
    with contextlib.suppress(OSError):
        for name in sorted(os.listdir(log_dir)):
            if name == CSV_FILE or name.startswith(EVENTS_PREFIX):
                yield os.path.join(log_dir, name)


# ---------------------------------------------------------------------------------- metrics.csv
def _step(value: str | None) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _read_csv(path: str) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _write_csv(path: str, header: list[str], rows: list[dict[str, str]]) -> None:
    with replaced_atomically(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def drop_csv_rows(path: str, step: int) -> tuple[int, int | None, int]:
    """Rewrite the ``metrics.csv`` at ``path`` (atomically) without its rows logged at ``step``
    or later (its columns kept). Returns how many rows went, the last step among them, and how
    many rows it keeps."""
    header, rows = _read_csv(path)
    steps = [_step(r.get("step")) for r in rows]
    gone = [s for s in steps if s is not None and s >= step]
    kept = [r for r, s in zip(rows, steps, strict=True) if s is None or s < step]
    if gone:
        _write_csv(path, header, kept)
    return len(gone), max(gone, default=None), len(kept)


def _metrics(row: dict[str, str]) -> set[str]:
    """The values a ``metrics.csv`` row holds, less the step and epoch Lightning adds to each."""
    return {k for k, v in row.items() if v not in (None, "") and k not in ("step", "epoch")}


def drop_relogged_csv_rows(path: str, step: int, old: int) -> int:
    """Rewrite the ``metrics.csv`` at ``path`` without those of its first ``old`` rows (a killed
    run's) logged at ``step`` whose values the later rows (the resumed run's) log again at
    ``step``. Returns how many rows went."""
    header, rows = _read_csv(path)
    again = set().union(*(_metrics(r) for r in rows[old:] if _step(r.get("step")) == step))
    gone = {
        i for i, r in enumerate(rows[:old])
        if _step(r.get("step")) == step and _metrics(r) and _metrics(r) <= again
    }  # fmt: skip
    if gone:
        _write_csv(path, header, [r for i, r in enumerate(rows) if i not in gone])
    return len(gone)


def _open_csv(logger: CSVLogger) -> None:
    """Open ``logger``'s writer on its folder's ``metrics.csv`` as it is: Lightning's writer
    deletes the file it finds, so the file is set aside while the writer opens, and the writer
    is told its columns."""
    path = os.path.join(logger.log_dir, CSV_FILE)
    aside = path + ".resuming"
    if os.path.isfile(aside) and not os.path.isfile(path):  # a kill during an earlier resume
        os.replace(aside, path)
    if logger._experiment is not None or not os.path.isfile(path):
        return
    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), [])
    os.replace(path, aside)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_CSV_DELETES.format(".*"))
        writer = logger.experiment
    os.replace(aside, path)
    writer.metrics_keys = [k for k in header if k]  # (the writer's columns so far)


# ------------------------------------------------------------------------------ TensorBoard events
_HEADER = struct.Struct("<QI")  # a TFRecord: length, its masked CRC; the data; the data's CRC


def _records(path: str) -> Iterator[tuple[int, int, Any]]:
    """``(start, end, event)`` of each whole event record of a TensorBoard event file, in file
    order; a record cut short (a kill while it was written) ends the file."""
    from tensorboard.compat.proto.event_pb2 import Event

    with open(path, "rb") as f:
        start = 0
        while True:
            head = f.read(_HEADER.size)
            if len(head) < _HEADER.size:
                return
            length = _HEADER.unpack(head)[0]
            data = f.read(length)
            if len(data) < length or len(f.read(4)) < 4:
                return
            end = start + _HEADER.size + length + 4
            yield start, end, Event.FromString(data)
            start = end


def _keep_records(path: str, records: list[tuple[int, int, Any]], keep: list[bool]) -> None:
    """Rewrite the event file at ``path`` with its ``records`` marked in ``keep`` (and without
    a record cut short at its end). Where those are the file's start, it is cut after them in
    place; else they are copied to a new file that replaces it."""
    kept = [(a, b) for (a, b, _), k in zip(records, keep, strict=True) if k]
    end = kept[-1][1] if kept else 0
    if len(kept) == len(records) and end == os.path.getsize(path):
        return
    if kept == [(a, b) for a, b, _ in records[: len(kept)]]:
        os.truncate(path, end)
    else:
        with open(path, "rb") as src, replaced_atomically(path) as tmp, open(tmp, "wb") as out:
            for a, b in kept:
                src.seek(a)
                out.write(src.read(b - a))


def drop_tensorboard_events(path: str, step: int) -> tuple[int, int | None]:
    """Rewrite the TensorBoard event file at ``path`` without its events of ``step`` or later
    (and a record cut short at its end). Returns how many events went (one per logged value)
    and the last step among them."""
    records = list(_records(path))
    _keep_records(path, records, [event.step < step for _, _, event in records])
    gone = [int(event.step) for _, _, event in records if event.step >= step]
    return len(gone), max(gone, default=None)


def _tags(event: Any) -> set[str]:
    return {value.tag for value in event.summary.value}


def drop_relogged_events(path: str, step: int, again: set[str]) -> int:
    """Rewrite the TensorBoard event file at ``path`` (a killed run's) without its values
    logged at ``step`` whose tags are in ``again`` (those the resumed run logs again at
    ``step``), each with the ``epoch`` value Lightning logs after a row's values. Returns how
    many events went."""
    records = list(_records(path))
    keep, gone = [], False
    for _, _, event in records:
        tags = _tags(event) if event.step == step else set()
        gone = bool(tags) and (gone if tags == {"epoch"} else tags <= again)
        keep.append(not gone)
    _keep_records(path, records, keep)
    return keep.count(False)


def _drop_events(paths: list[str], step: int) -> tuple[int, int | None]:
    """:func:`drop_tensorboard_events` over the event files ``paths``."""
    dropped, last = 0, None
    for path in paths:
        n, s = drop_tensorboard_events(path, step)
        dropped += n
        last = s if last is None or (s is not None and s > last) else last
    return dropped, last


# ---------------------------------------------------------------------------- one version a run
def _folder(logger: Logger, version: int | str) -> str:
    """``logger``'s folder were its version ``version`` (Lightning's naming)."""
    name = version if isinstance(version, str) else f"version_{version}"
    return os.path.abspath(os.path.join(logger.root_dir, name))


def share_version(trainer: Trainer) -> None:
    """Give the TensorBoard / CSV loggers of ``trainer`` whose version is unset one version, the
    run's: that of its first logger whose version is set (by :func:`resume_logs` or the user)
    where, for each of them, that folder does not exist yet or is a set logger's holding none
    of its kind of logs (a CSV logger's ``metrics.csv``, TensorBoard's events); else the next
    version after all those under their ``save_dir/name`` folders. Before the command runs:
    Lightning reads the versions as it sets up. (Lightning's CSV writer opening such a shared
    folder warns that the earlier logs there will be deleted: where it has no metrics.csv, the
    only file the writer deletes, that warning is left out.)"""
    loggers = [logger for logger in trainer.loggers if _versioned(logger)]
    unset = [logger for logger in loggers if logger._version is None]
    given = [logger for logger in loggers if logger._version is not None]
    own = {os.path.abspath(logger.log_dir) for logger in given}

    def joins(logger: Logger, version: int | str) -> bool:
        folder = _folder(logger, version)
        if not os.path.exists(folder):
            return True
        return folder in own and not any(_own_file(logger, n) for n in os.listdir(folder))

    version = given[0]._version if given else None
    if unset and (version is None or not all(joins(logger, version) for logger in unset)):
        version = max(logger._get_next_version() for logger in unset)
    for logger in unset:
        logger._version = version
    for logger in loggers:  # opening the folder a TensorBoard logger made, Lightning's CSV
        # writer says it will delete the earlier logs there: it deletes only a metrics.csv
        if isinstance(logger, CSVLogger) and not os.path.isfile(
            os.path.join(logger.log_dir, CSV_FILE)
        ):
            message = _CSV_DELETES.format(re.escape(logger.log_dir))
            warnings.filterwarnings("ignore", message=message)


# ------------------------------------------------------------------------ the rows after a save
def _owed(trainer: Trainer) -> dict[str, Any] | None:
    """The row Lightning logs right after a checkpoint written now that a resume from it does
    not log: a training batch's own (a save at its end: ``_TrainingEpochLoop.advance`` logs
    the batch after its ``on_train_batch_end`` hooks, where ModelCheckpoint saves) or the
    epoch's figures (a save at its end: ``_FitLoop.on_advance_end`` logs them after the
    ``on_train_epoch_end`` hooks). ``{"step": ..., "metrics": ...}`` as Lightning's logger
    connector will log them (``_LoggerConnector.update_train_step_metrics``,
    ``update_train_epoch_metrics``), or None. On every rank: an epoch figure not computed yet
    is computed here (a collective), as Lightning computes it next."""
    if not trainer.training or trainer.validating or trainer.sanity_checking:
        return None
    fit = trainer.fit_loop
    loop, connector = fit.epoch_loop, trainer._logger_connector
    epoch, batch = fit.epoch_progress.current, loop.batch_progress.current
    if epoch.processed == epoch.completed + 1:  # inside on_train_epoch_end
        step = loop._batches_that_stepped - 1
    elif batch.processed == batch.completed + 1:  # inside on_train_batch_end
        if fit._should_accumulate() and trainer.lightning_module.automatic_optimization:
            return None
        if not (connector.should_update_logs or trainer.fast_dev_run):
            return None
        step = loop._batches_that_stepped
    else:
        return None
    metrics = convert_tensors_to_scalars(connector.metrics["log"])
    if not metrics:
        return None
    if "step" in metrics:  # (Lightning's log_metrics: a logged "step" is the row's step)
        step = int(metrics.pop("step"))
    else:
        metrics.setdefault("epoch", trainer.current_epoch)
    return {"step": int(step), "metrics": metrics}


def _log_owed(logger: Logger, owed: dict[str, Any]) -> None:
    """Log the row :func:`_owed` recorded (the killed run may have logged it too: that copy
    goes as a row this run logged again, :func:`_drop_relogged`)."""
    logger.log_metrics(dict(owed["metrics"]), step=int(owed["step"]))
    logger.save()


# ---------------------------------------------------------------------------------- at a resume
# A resumed logger's rows to drop when its fit starts training: (logger, the checkpoint's step,
# the TensorBoard event files its folder held before the logger's writer opened)
Drop = tuple[Logger, int, list[str]]


def resume_logs(trainer: Trainer, checkpoint: dict[str, Any]) -> None:
    """Continue the version folders ``checkpoint`` records in ``trainer``'s loggers of the same
    kind and name whose version is unset (or set to the recorded one). Before ``fit``: Lightning
    opens the loggers' writers first thing. The rows logged there at the checkpoint's step or
    later are dropped (on rank 0) by ``trainer``'s :class:`ResumeLogs` when the fit starts
    training, not here: a resume that fails before (a wrong data_root) leaves them as they were.

    Args:
        trainer: the resumed fit's Trainer.
        checkpoint: the resumed checkpoint's ``a2video_logs`` and ``global_step`` entries.
    """
    records = list(checkpoint.get(LOGS_KEY) or [])
    step = int(checkpoint.get("global_step", 0))
    drops = []
    for logger in (logger for logger in trainer.loggers if _versioned(logger)):
        kind, name = type(logger).__name__, logger.name
        match = next((r for r in records if (r.get("logger"), r.get("name")) == (kind, name)), None)
        # (Lightning's version: unset till first read)
        if match is None or logger._version not in (None, match["version"]):
            continue  # not this run's logger (an earlier a2video's checkpoint), or another version
        records.remove(match)
        logger._version = match["version"]
        if isinstance(logger, TensorBoardLogger):  # its hparams and hp_metric are there already
            logger._default_hp_metric = False
        drops.append(_continue(logger, step))
    for callback in getattr(trainer, "callbacks", ()):
        if isinstance(callback, ResumeLogs):
            callback.drops = [d for d in drops if d is not None]


@rank_zero_only
def _continue(logger: Logger, step: int) -> Drop:
    """Open ``logger`` on its folder's rows as they are (Lightning's CSV writer deleted them);
    what to drop there once the fit trains."""
    if isinstance(logger, CSVLogger):
        _open_csv(logger)
        return logger, step, []
    events = [p for p in _files(logger.log_dir) if _own_file(logger, os.path.basename(p))]
    return logger, step, events  # (before its writer opens its own file)


def _drop_rows(logger: Logger, step: int, events: list[str]) -> int:
    """Drop the rows of ``logger``'s folder logged at ``step`` or later, in one line. Returns
    how many rows its metrics.csv keeps (0 for TensorBoard)."""
    rows = 0
    if isinstance(logger, CSVLogger):
        path = os.path.join(logger.log_dir, CSV_FILE)
        dropped, last, rows = drop_csv_rows(path, step) if os.path.isfile(path) else (0, None, 0)
        what = f"rows of {path}"
    else:
        dropped, last = _drop_events(events, step)
        what = f"TensorBoard values in {logger.log_dir}"
    if dropped:
        rank_zero_info(
            f"a2video: resuming at step {step}: the {dropped} {what} logged at steps "
            f"{step}-{last}, after the checkpoint, are dropped; this run logs its own from "
            f"step {step} on"
        )
    return rows


def _drop_relogged(logger: Logger, step: int, events: list[str], old: int) -> int:
    """Drop the killed run's values of ``logger`` logged at ``step``, the resumed checkpoint's
    last step, that this run logged there again (``old``: the killed run's metrics.csv rows,
    ``events``: its event files), in one line. Returns how many of those rows are left."""
    logger.save()
    if isinstance(logger, CSVLogger):
        path = os.path.join(logger.log_dir, CSV_FILE)
        dropped = drop_relogged_csv_rows(path, step, old) if os.path.isfile(path) else 0
        old, what = old - dropped, f"rows of {path}"
    else:
        mine = [p for p in _files(logger.log_dir) if _own_file(logger, os.path.basename(p))]
        again = [
            _tags(e) for p in mine if p not in events for *_, e in _records(p) if e.step == step
        ]
        tags = set().union(*again) - {"epoch"}
        dropped = sum(drop_relogged_events(path, step, tags) for path in events) if tags else 0
        what = f"TensorBoard values in {logger.log_dir}"
    if dropped:
        rank_zero_info(
            f"a2video: resuming at step {step + 1}: the {dropped} {what} logged at step {step} "
            "after the checkpoint (its batch's own, its validation or epoch end), which this run "
            "logged again, are dropped"
        )
    return old


# ---------------------------------------------------------------------------------- the callback
class ResumeLogs(Callback):
    """At each checkpoint of a fit: the loggers flushed, their files synced to disk (rank 0),
    and their names and versions recorded for :func:`resume_logs`; in a resumed fit, as it
    starts training, the rows logged after its checkpoint dropped (rank 0).

    A checkpoint saved at a batch's end, before the validation or epoch end that follows it,
    resumes with them, and they log at the batch's step (the checkpoint's ``global_step`` less
    one), where the killed run may have logged them too (killed between their rows and the
    next checkpoint). A checkpoint records the row Lightning logs right after it (a batch's own,
    an epoch's figures), which the resumed run logs as it starts (:func:`_owed`). The killed
    run's rows of that step that the resumed run logs again are dropped, as the resumed run's
    next batch starts (at its checkpoints and end too). The rows of that step that it does not
    log again stay: a validation's or epoch end's that the checkpoint was saved after.
    """

    def __init__(self) -> None:
        self.drops: list[Drop] = []  # set by resume_logs, on rank 0
        # (logger, the checkpoint's last step, the killed run's event files / metrics.csv rows)
        self.relogs: list[list[Any]] = []
        self.owed: dict[str, Any] | None = None  # the resumed checkpoint's (_owed)

    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self.owed = checkpoint.get(OWED_KEY) if trainer.state.fn == "fit" else None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        drops, self.drops = self.drops, []
        owed, self.owed = self.owed, None
        for logger, step, events in drops:
            rows = _drop_rows(logger, step, events)
            if step > 0:
                self.relogs.append([logger, step - 1, events, rows])
                if owed and int(owed["step"]) == step - 1:
                    _log_owed(logger, owed)

    def _drop_relogged(self, done: bool) -> None:
        for relog in self.relogs:
            relog[3] = _drop_relogged(*relog)
        if done:
            self.relogs = []

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._drop_relogged(done=True)  # (a validation and epoch end resumed have logged)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._drop_relogged(done=True)

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        loggers = [logger for logger in trainer.loggers if _versioned(logger)]
        if trainer.state.fn != "fit" or not loggers:
            return
        checkpoint[LOGS_KEY] = [_record(logger) for logger in loggers]
        owed = _owed(trainer)
        if owed is not None:
            checkpoint[OWED_KEY] = owed
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.save()
            self._drop_relogged(done=False)
            for logger in loggers:
                for path in _files(logger.log_dir):
                    sync_to_disk(path)
