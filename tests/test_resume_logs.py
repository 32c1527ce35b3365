"""The loggers of a killed and resumed fit read as the uninterrupted run's: one version folder,
every step's rows once (TensorBoard events and metrics.csv), nothing lost; the loggers of one run
share its version folder."""

from __future__ import annotations

import csv
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_resume import _exact_fit, _fit_ok

from a2video.training.checkpoint import load_checkpoint
from a2video.training.logs import (
    LOGS_KEY,
    OWED_KEY,
    ResumeLogs,
    drop_csv_rows,
    drop_tensorboard_events,
    resume_logs,
    share_version,
)


def _scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a TensorBoard folder as a reader sees it: tag -> [(step, value)]."""
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, round(e.value, 5)) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _log(logger, steps) -> None:
    for step in steps:
        logger.log_metrics({"train/loss": float(step), "lr": 0.1 * step}, step=step)
    logger.save()


def _killed_run(tmp_path: Path, checkpointed_at: int) -> dict:
    """A run's CSV and TensorBoard loggers (under ``tmp_path``/csv, /tb) that logged steps 0-5,
    killed after step 5; the ``a2video_logs`` and ``global_step`` of its checkpoint at step
    ``checkpointed_at``."""
    csv_logger, tb_logger = CSVLogger(tmp_path / "csv"), TensorBoardLogger(tmp_path / "tb")
    _log(csv_logger, range(6))
    _log(tb_logger, range(6))
    ResumeLogs().on_save_checkpoint(_fitting(tb_logger, csv_logger), None, checkpoint := {})
    checkpoint["global_step"] = checkpointed_at
    tb_logger.experiment.close()
    _started_earlier(Path(tb_logger.log_dir))
    return checkpoint


def _started_earlier(log_dir: Path) -> None:
    """Date the event files of ``log_dir`` a minute back, as a killed run's are beside its
    resume's: TensorBoard reads a folder's files in name order, events.out.tfevents.<time>.
    <host>.<pid>.<count>, and two writers of one test process in one second differ by the count
    alone, where ".10" sorts before ".9" (the resumed run's rows were read first)."""
    for path in log_dir.glob("events.out.tfevents.*"):
        parts = path.name.split(".")  # (a host name may hold dots: the time is 4th)
        parts[3] = str(int(parts[3]) - 60)
        path.rename(path.with_name(".".join(parts)))


def _fitting(*loggers) -> SimpleNamespace:
    """What ResumeLogs reads of a fitting Trainer on rank 0 (saving outside a batch's or an
    epoch's end)."""
    fit = SimpleNamespace(fn="fit")
    return SimpleNamespace(state=fit, loggers=loggers, is_global_zero=True, training=False)


def test_csv_rows_from_a_step_on_are_dropped(tmp_path):
    logger = CSVLogger(tmp_path)
    _log(logger, range(6))
    logger.log_metrics({"val/top1": 0.5}, step=5)  # a new column
    logger.save()
    path = Path(logger.log_dir) / "metrics.csv"
    dropped, last, kept = drop_csv_rows(str(path), 3)
    header = path.read_text().splitlines()[0].split(",")
    assert (dropped, last, kept) == (4, 5, 3) and "val/top1" in header
    assert [r["step"] for r in _rows(path)] == ["0", "1", "2"]


def test_tensorboard_events_from_a_step_on_are_dropped_and_a_cut_record_too(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    _log(logger, range(6))
    events = next(Path(logger.log_dir).glob("events.out.tfevents.*"))
    with open(events, "ab") as f:
        f.write(b"\x20\x00\x00")  # a record cut short by a kill
    dropped, last = drop_tensorboard_events(str(events), 3)
    assert (dropped, last) == (6, 5)
    assert _scalars(Path(logger.log_dir)) == {
        "train/loss": [(0, 0.0), (1, 1.0), (2, 2.0)],
        "lr": [(0, 0.0), (1, 0.1), (2, 0.2)],
    }


def test_a_checkpoint_puts_the_rows_logged_before_it_on_disk_and_records_the_versions(tmp_path):
    """Lightning's CSVLogger keeps rows in memory until its flush; a checkpoint flushes them."""
    csv_logger, tb_logger = CSVLogger(tmp_path), TensorBoardLogger(tmp_path, version=7)
    for step in range(3):
        csv_logger.log_metrics({"lr": 0.1}, step=step)  # as LearningRateMonitor does: no save
    checkpoint: dict = {}
    ResumeLogs().on_save_checkpoint(_fitting(tb_logger, csv_logger), None, checkpoint)
    assert len(_rows(Path(csv_logger.log_dir) / "metrics.csv")) == 3
    assert checkpoint[LOGS_KEY] == [
        {"logger": "TensorBoardLogger", "name": "lightning_logs", "version": 7},
        {"logger": "CSVLogger", "name": "lightning_logs", "version": 0},
    ]


def test_a_resume_continues_the_version_folder_without_the_rows_after_the_checkpoint(tmp_path):
    """The killed run logged steps 0-5 and was checkpointed at step 3: the resumed run's
    loggers (version unset) write into the same folders, which keep steps 0-2 only, and its own
    steps 3-5 appear once (Lightning's CSVLogger deleted the metrics.csv it found there)."""
    checkpoint = _killed_run(tmp_path, checkpointed_at=3)
    again = [TensorBoardLogger(tmp_path / "tb"), CSVLogger(tmp_path / "csv")]
    callback = ResumeLogs()
    resume_logs(SimpleNamespace(loggers=again, callbacks=[callback]), checkpoint)
    assert [logger.version for logger in again] == [0, 0]
    for logger in again:
        logger.log_hyperparams({"lr": 0.1})
    callback.on_train_start(None, None)
    for logger in again:
        _log(logger, range(3, 6))
        logger.finalize("success")
    steps = [r["step"] for r in _rows(tmp_path / "csv/lightning_logs/version_0/metrics.csv")]
    assert steps == [str(s) for s in range(6)]
    assert _scalars(tmp_path / "tb/lightning_logs/version_0") == {
        "train/loss": [(s, float(s)) for s in range(6)],
        "lr": [(s, round(0.1 * s, 5)) for s in range(6)],
    }


def test_a_resume_that_fails_before_training_drops_no_rows(tmp_path):
    """A resume from an older checkpoint (step 2 of 6) that stops before it trains (a wrong
    data_root, a wrong file: Lightning opens the loggers first) keeps every row the run logged:
    they are dropped when the resumed fit starts training (before: as it started, so steps 2-5
    were gone although nothing logged them again)."""
    checkpoint = _killed_run(tmp_path, checkpointed_at=2)
    again = [TensorBoardLogger(tmp_path / "tb"), CSVLogger(tmp_path / "csv")]
    resume_logs(SimpleNamespace(loggers=again, callbacks=[ResumeLogs()]), checkpoint)
    for logger in again:
        _ = logger.experiment  # Lightning's setup opens them; then the data module fails
        logger.finalize("failed")
    steps = [r["step"] for r in _rows(tmp_path / "csv/lightning_logs/version_0/metrics.csv")]
    assert steps == [str(s) for s in range(6)]
    assert [s for s, _ in _scalars(tmp_path / "tb/lightning_logs/version_0")["lr"]] == [*range(6)]


def test_a_resume_into_the_version_the_user_set_keeps_its_rows(tmp_path):
    """``version: 0`` set in the YAML to resume into the run's folder (Lightning's way): the
    folder's metrics.csv is continued, not deleted by Lightning's CSV writer."""
    _log(logger := CSVLogger(tmp_path), range(4))
    ResumeLogs().on_save_checkpoint(_fitting(logger), None, checkpoint := {})
    checkpoint["global_step"] = 2
    again, callback = CSVLogger(tmp_path, version=0), ResumeLogs()
    resume_logs(SimpleNamespace(loggers=[again], callbacks=[callback]), checkpoint)
    callback.on_train_start(None, None)
    _log(again, range(2, 4))
    assert [r["step"] for r in _rows(Path(again.log_dir) / "metrics.csv")] == list("0123")


@pytest.mark.parametrize("validated_before_checkpoint", [False, True])
def test_a_validation_after_the_checkpoint_is_logged_once(tmp_path, validated_before_checkpoint):
    """Step 5 ends an epoch: its batch row, then ``last.ckpt`` at its end (global_step 6), its
    validation's row, and the epoch's figures, all logged at step 5. Killed between the
    validation's row and ``last.ckpt`` saved again after it, the resumed run validates again:
    the killed run's validation row goes (before: twice). Saved after the validation, the
    resumed run does not validate again: its row stays. The epoch figures are logged once."""
    loggers = (TensorBoardLogger(tmp_path, version=0), CSVLogger(tmp_path, version=0))
    callback = ResumeLogs()
    batch, val, epoch_end = {"train/loss": 1.0}, {"val/top1": 0.5}, {"train/top1": 0.25}

    def log(metrics: dict, loggers=loggers) -> None:  # as Lightning's logger connector does
        for logger in loggers:
            logger.log_metrics({**metrics, "epoch": 1}, step=5)
            logger.save()

    log(batch)
    if validated_before_checkpoint:
        log(val)
    callback.on_save_checkpoint(_fitting(*loggers), None, checkpoint := {"global_step": 6})
    if not validated_before_checkpoint:
        log(val)  # then killed
    again = [TensorBoardLogger(tmp_path), CSVLogger(tmp_path)]
    resume_logs(SimpleNamespace(loggers=again, callbacks=[callback]), checkpoint)
    callback.on_train_start(None, None)
    if not validated_before_checkpoint:
        log(val, again)
    log(epoch_end, again)
    callback.on_train_end(None, None)
    rows = _rows(tmp_path / "lightning_logs/version_0/metrics.csv")
    assert [[k for k in ("train/loss", "val/top1", "train/top1") if r[k]] for r in rows] == [
        ["train/loss"],
        ["val/top1"],
        ["train/top1"],
    ]
    assert _scalars(tmp_path / "lightning_logs/version_0") == {
        "train/loss": [(5, 1.0)],
        "val/top1": [(5, 0.5)],
        "train/top1": [(5, 0.25)],
        "epoch": [(5, 1.0)] * 3,
    }


def test_a_checkpoint_records_the_row_lightning_logs_right_after_it(tmp_path):
    """Saved where ModelCheckpoint saves, at a batch's end and at the epoch's end, a checkpoint
    records the row Lightning logs next at that step (the batch's own, the epoch's figures),
    which a resume from it does not log again: each is the row metrics.csv holds."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import Checkpoint
    from lightning.pytorch.demos.boring_classes import BoringModel

    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            self.log("train/loss", out["loss"])
            self.log("train/mean", out["loss"], on_step=False, on_epoch=True)
            return out

    class Saves(Checkpoint):  # after the other callbacks, as ModelCheckpoint
        def __init__(self) -> None:
            self.owed: list = []

        def _save(self, trainer) -> None:
            self.owed.append(trainer._checkpoint_connector.dump_checkpoint()[OWED_KEY])

        def on_train_batch_end(self, trainer, *args) -> None:
            self._save(trainer)

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self._save(trainer)

    logger = CSVLogger(tmp_path)
    trainer = Trainer(
        max_epochs=2, limit_train_batches=3, limit_val_batches=0, log_every_n_steps=1,
        logger=logger, callbacks=[ResumeLogs(), saves := Saves()], default_root_dir=tmp_path,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(Model())
    rows = [
        {k: float(v) for k, v in r.items() if v and k != "step"} | {"step": int(r["step"])}
        for r in _rows(Path(logger.log_dir) / "metrics.csv")
    ]
    assert [{**o["metrics"], "step": o["step"]} for o in saves.owed] == rows
    assert [o["step"] for o in saves.owed] == [0, 1, 2, 2, 3, 4, 5, 5]


def test_a_resume_logs_the_row_its_checkpoint_owes_once(tmp_path):
    """A checkpoint saved at step 4's batch end records the batch's row (step 3), which
    Lightning logs right after the save. Killed before that row was logged, the resumed run
    logs it (before: lost); killed after, the killed run's copy goes: once either way."""
    owed = {"step": 3, "metrics": {"train/loss": 3.0, "epoch": 1}}
    for logged in (False, True):
        root = tmp_path / str(logged)
        loggers = (TensorBoardLogger(root / "tb"), CSVLogger(root / "csv"))
        for logger in loggers:
            _log(logger, range(3))
        callback = ResumeLogs()
        callback.on_save_checkpoint(_fitting(*loggers), None, checkpoint := {"global_step": 4})
        checkpoint[OWED_KEY] = owed
        for logger in loggers if logged else ():
            logger.log_metrics(owed["metrics"], step=3)
            logger.save()
        again = [TensorBoardLogger(root / "tb"), CSVLogger(root / "csv")]
        resume_logs(SimpleNamespace(loggers=again, callbacks=[callback]), checkpoint)
        callback.on_load_checkpoint(_fitting(), None, checkpoint)
        callback.on_train_start(None, None)
        callback.on_train_end(None, None)
        rows = _rows(Path(again[1].log_dir) / "metrics.csv")
        assert [(r["step"], r["train/loss"]) for r in rows if r["train/loss"]] == [
            ("0", "0.0"), ("1", "1.0"), ("2", "2.0"), ("3", "3.0")
        ], logged  # fmt: skip
        scalars = _scalars(Path(again[0].log_dir))
        assert scalars["train/loss"] == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0)], logged
        assert scalars["epoch"] == [(3, 1.0)], logged


# ------------------------------------------------------------------------- one version a run
def _versions(*loggers) -> list:
    share_version(SimpleNamespace(loggers=loggers))
    return [logger.version for logger in loggers]


def test_the_loggers_of_a_run_share_the_next_version_free_in_all_their_folders(tmp_path):
    """Earlier runs left version_0 and version_1 in the shared folder: TensorBoard and CSV both
    write to version_2 (before, in a fit, TensorBoard made version_2 first and the CSV logger
    took version_3); with other save_dirs, the next after the highest version in any of them,
    a new folder for both."""
    for n in (0, 1):
        (tmp_path / f"shared/lightning_logs/version_{n}").mkdir(parents=True)
    (tmp_path / "csv/lightning_logs/version_4").mkdir(parents=True)
    tb, csv_logger = TensorBoardLogger(tmp_path / "shared"), CSVLogger(tmp_path / "shared")
    assert _versions(tb, csv_logger) == [2, 2]
    _log(tb, range(2))  # TensorBoard makes its folder first, as in a fit's setup
    _log(csv_logger, range(2))
    assert sorted(p.name for p in Path(tb.log_dir).iterdir() if p.suffix != ".yaml") == [
        next(Path(tb.log_dir).glob("events.*")).name,
        "metrics.csv",
    ]
    apart = [TensorBoardLogger(tmp_path / "shared"), CSVLogger(tmp_path / "csv")]
    assert _versions(*apart) == [5, 5]


def test_a_logger_joins_the_version_of_the_run_where_that_folder_is_free_of_its_logs(tmp_path):
    """A resumed fit (or a user's ``version``) sets TensorBoard's version 0: a CSV logger added
    beside it writes to version_0 too; where that folder holds a metrics.csv already (another
    run's), the CSV logger gets a new version, never that file."""
    tb = TensorBoardLogger(tmp_path, version=0)
    _log(tb, range(2))
    assert _versions(tb, CSVLogger(tmp_path)) == [0, 0]
    _log(CSVLogger(tmp_path, version=0), range(2))  # another run's CSV rows there
    assert _versions(tb, CSVLogger(tmp_path)) == [0, 1]


def test_the_cli_runs_loggers_share_one_version_and_csv_opens_it_quietly(
    kinetics_root, tmp_path, recwarn
):
    """Through ``train.py``'s CLI: TensorBoard opens its folder first (Lightning's setup), then
    the CSV logger writes into the same one, without Lightning's warning that earlier logs
    there will be deleted (there is no metrics.csv there to delete)."""
    from a2video.data import KineticsDataModule
    from a2video.training.cli import A2VideoCLI
    from a2video.training.module import VideoClassifier

    (tmp_path / "lightning_logs/version_0").mkdir(parents=True)  # an earlier run's
    (tmp_path / "loggers.yaml").write_text(LOGGERS.replace("RUN", str(tmp_path)))
    args = ["--config", str(tmp_path / "loggers.yaml"), "--model.arch", "a2net_tiny"]
    args += ["--data.data_root", kinetics_root, "--trainer.default_root_dir", str(tmp_path)]
    cli = A2VideoCLI(VideoClassifier, KineticsDataModule, run=False, args=args)
    for logger in cli.trainer.loggers:
        _ = logger.experiment
    assert [logger.log_dir for logger in cli.trainer.loggers] == [
        str(tmp_path / "lightning_logs/version_1")
    ] * 2
    assert not [w for w in recwarn if "exists and is not empty" in str(w.message)]


# ----------------------------------------------------------------------- end to end, with kills
LOGGERS = """
trainer:
  logger:
    - class_path: lightning.pytorch.loggers.TensorBoardLogger
      init_args: {save_dir: RUN}
    - class_path: lightning.pytorch.loggers.CSVLogger
      init_args: {save_dir: RUN}
"""


def _logged_fit(run: Path, data_root: str, *extra: str, **kw):
    """``test_resume``'s exact fit with a TensorBoard and a CSV logger, a row every step and
    ``last.ckpt`` every 2 steps (batch 4: 3 steps per epoch, 2 epochs)."""
    run.mkdir(parents=True, exist_ok=True)
    loggers = run.parent / f"{run.name}-loggers.yaml"
    loggers.write_text(LOGGERS.replace("RUN", str(run)))
    args = ("--config", str(loggers), "--trainer.log_every_n_steps", "1", "--data.batch_size", "4")
    args += ("--step_checkpoint.every_n_train_steps", "2", *extra)
    return _exact_fit(run, data_root, *args, **kw)


def _logs(run: Path) -> tuple[dict, list[dict[str, str]]]:
    """The run's TensorBoard scalars and metrics.csv rows (CSV values rounded)."""
    folders = sorted((run / "lightning_logs").iterdir())
    assert [f.name for f in folders] == ["version_0"]  # TensorBoard's and CSV's (before: two)
    rows = [
        {k: v and str(round(float(v), 5)) for k, v in r.items()}
        for r in _rows(folders[0] / "metrics.csv")
    ]
    return _scalars(folders[0]), rows


@pytest.fixture(scope="module")
def logged_whole(tmp_path_factory, kinetics_root) -> Path:
    run = tmp_path_factory.mktemp("whole") / "run"
    _fit_ok(_logged_fit(run, kinetics_root))
    return run


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_killed_and_resumed_fit_logs_what_the_uninterrupted_run_logs(
    kinetics_root, tmp_path, logged_whole
):
    """Killed (SIGKILL) at step 5, after the step-4 checkpoint: rows of step 4 were logged
    after it. Resumed, the run's one TensorBoard folder and one metrics.csv hold the
    uninterrupted run's rows, each step's once (before: a second version folder pair, with
    step 4 in both)."""
    run = tmp_path / "run"
    killed = _logged_fit(run, kinetics_root, kill_at=5)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 4
    resumed = _fit_ok(_logged_fit(run, kinetics_root, "--ckpt_path", "last"))
    assert "a2video: resuming at step 4:" in resumed.stdout + resumed.stderr
    scalars, rows = _logs(run)
    whole_scalars, whole_rows = _logs(logged_whole)
    assert [s for s, _ in scalars["train/loss"]] == list(range(6))
    assert scalars == whole_scalars
    assert rows == whole_rows


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("kill_in", "validates_again"), [("validation_end", True), ("epoch_end", False)]
)
def test_a_fit_killed_about_a_validation_logs_it_once(
    kinetics_root, tmp_path, logged_whole, kill_in, validates_again
):
    """Step 6 ends the last epoch and is a step checkpoint's (every 2 steps): ``last.ckpt`` is
    saved at its batch end, again after its validation, and at the epoch end. Killed (SIGKILL)
    after the validation logged its rows and before ``last.ckpt`` was saved after them, the
    resumed run validates again and the killed run's rows of it go (before: each val/* value
    twice at step 5); killed after that save, before the epoch end's, it does not validate
    again and they stay. Either way the logs are the uninterrupted run's."""
    run = tmp_path / "run"
    killed = _logged_fit(run, kinetics_root, kill_at=6, kill_in=kill_in)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = _fit_ok(_logged_fit(run, kinetics_root, "--ckpt_path", "last"))
    scalars, rows = _logs(run)
    whole_scalars, whole_rows = _logs(logged_whole)
    assert [s for s, _ in scalars["val/top1"]] == [2, 5]
    assert scalars == whole_scalars
    assert rows == whole_rows
    said = "after the checkpoint (its batch's own, its validation or epoch end), which this run"
    assert (said in resumed.stdout + resumed.stderr) == validates_again


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("kill_in", "kill_at", "lost"),
    [("batch_saved", 4, "train/loss"), ("epoch_saved", 3, "train/top1")],
)
def test_a_fit_killed_right_after_a_save_logs_the_rows_that_followed_it(
    kinetics_root, tmp_path, logged_whole, kill_in, kill_at, lost
):
    """Killed (SIGKILL) right after ``last.ckpt`` was saved and before Lightning logged the rows
    that follow that save at its step: the batch's own (saved at its end, step 4: its
    ``train/loss`` of step 3) or the epoch's figures (saved at epoch 0's end: step 2). The
    resume does not run that batch or epoch end again: the checkpoint records those rows and the
    resumed run logs them (before: lost). Its logs are the uninterrupted run's."""
    run = tmp_path / "run"
    killed = _logged_fit(run, kinetics_root, kill_at=kill_at, kill_in=kill_in)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == kill_at
    assert kill_at - 1 not in [s for s, _ in _logs(run)[0].get(lost, [])]  # not logged yet
    _fit_ok(_logged_fit(run, kinetics_root, "--ckpt_path", "last"))
    scalars, rows = _logs(run)
    whole_scalars, whole_rows = _logs(logged_whole)
    assert kill_at - 1 in [s for s, _ in scalars[lost]]
    assert scalars == whole_scalars
    assert rows == whole_rows


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "kills",
    [[("validation_end", 6)] * 2, [("epoch_saved", 3), ("training", 3)]],
    ids=["after-its-validation-twice", "before-its-first-batch"],
)
def test_a_fit_killed_twice_logs_what_the_uninterrupted_run_logs(
    kinetics_root, tmp_path, logged_whole, kills
):
    """Killed, resumed and killed again before the resumed run dropped the first run's rows of
    the checkpoint's last step (that happens at its next batch or save): after it validated
    again (step 6's validation: three runs' val rows at step 5), or after it logged the epoch
    figures its checkpoint owed (epoch 0's, step 2) and before its first batch. The last resume
    drops every earlier copy of the rows it logs again: the logs are the uninterrupted run's."""
    run = tmp_path / "run"
    for n, (kill_in, kill_at) in enumerate(kills):
        resume = ("--ckpt_path", "last") if n else ()
        killed = _logged_fit(run, kinetics_root, *resume, kill_at=kill_at, kill_in=kill_in)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    _fit_ok(_logged_fit(run, kinetics_root, "--ckpt_path", "last"))
    scalars, rows = _logs(run)
    whole_scalars, whole_rows = _logs(logged_whole)
    assert scalars == whole_scalars
    assert rows == whole_rows


def test_a_fit_stopped_inside_an_epoch_and_resumed_logs_each_epoch_figure_once(
    kinetics_root, tmp_path, caplog
):
    """``--trainer.max_steps 3`` stops inside epoch 1 (2 batches an epoch): Lightning logged
    the epoch's figures over its first batch at step 2, after ``last.ckpt``, and the resume with
    a larger limit logged the whole epoch's at step 3, so epoch 1 had two ``train/top1`` rows
    of different values. Now the stop keeps them from the loggers (one line says so; they reach
    ``callback_metrics``) and the resumed run's logs equal the uninterrupted run's: one row per
    epoch."""
    from test_resume_settings import _train
    from tiny_fit import tiny_fit_args

    def fit(run: Path, *extra: str) -> tuple[dict, list[dict[str, str]]]:
        run.mkdir(parents=True, exist_ok=True)
        (run.parent / "loggers.yaml").write_text(LOGGERS.replace("RUN", str(run)))
        args = ["--config", str(run.parent / "loggers.yaml"), "--trainer.log_every_n_steps", "1"]
        args += ["--data.num_workers", "0", "--trainer.limit_train_batches", "2", *extra]
        _train(tiny_fit_args(kinetics_root, run, *args))
        return _logs(run)

    whole = fit(tmp_path / "whole" / "run")
    with caplog.at_level("INFO"):
        stopped = fit(tmp_path / "run", "--trainer.max_steps", "3")
    assert [step for step, _ in stopped[0]["train/top1"]] == [1]  # epoch 0's alone
    assert "a2video: the fit stopped inside epoch 1 (step 3)" in caplog.text
    scalars, rows = fit(tmp_path / "run", "--ckpt_path", "last")
    assert [step for step, _ in scalars["train/top1"]] == [1, 3]
    # the same tags at the same steps, rows of the same columns (the values after step 1
    # differ: the stopped run's LR schedule was 3 steps long)
    assert {tag: [s for s, _ in v] for tag, v in scalars.items()} == {
        tag: [s for s, _ in v] for tag, v in whole[0].items()
    }
    assert [sorted(k for k, v in r.items() if v) for r in rows] == [
        sorted(k for k, v in r.items() if v) for r in whole[1]
    ]


@pytest.mark.parametrize(
    ("logger", "monitored"), [([], True), (["--trainer.logger", "false"], False)]
)
def test_the_default_logger_gets_the_learning_rate_too(kinetics_root, tmp_path, logger, monitored):
    """Without ``trainer.logger`` Lightning logs to TensorBoard, and the LR is logged there
    (before, LearningRateMonitor was added only for a logger given in the YAML: no lr rows)."""
    from lightning.pytorch.callbacks import LearningRateMonitor

    from a2video.data import KineticsDataModule
    from a2video.training.cli import A2VideoCLI
    from a2video.training.module import VideoClassifier

    args = ["--model.arch", "a2net_tiny", "--data.data_root", kinetics_root, *logger]
    args += ["--trainer.default_root_dir", str(tmp_path)]
    cli = A2VideoCLI(VideoClassifier, KineticsDataModule, run=False, args=args)
    found = any(isinstance(c, LearningRateMonitor) for c in cli.trainer.callbacks)
    assert found == monitored
