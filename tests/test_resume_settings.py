"""A resumed fit trains with the optimisation settings it is given, not the checkpoint's.

Lightning restores the optimizer's parameter groups and the LR scheduler from the checkpoint,
so a resume with a longer ``max_epochs`` ran the old cosine's final LR (0) for every new step and
a new ``lr`` was ignored, without a word. The settings this run configures now go back over the
restored ones (the momentum buffers and the step count stay the checkpoint's), as in PySlowFast;
an optimizer state that cannot drive this run's optimizer stops in one line.
"""

from __future__ import annotations

import os

import pytest
import torch
from lightning.pytorch import Callback
from test_module import TinyVideoData, tiny_model, tiny_trainer

from a2video.training.optim import WarmupSchedule

STEPS_PER_EPOCH = 4  # 32 training videos, batch 8


def _buffers(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The momentum buffers of the first group (parameters that had a gradient)."""
    state = optimizer.state
    params = optimizer.param_groups[0]["params"]
    return [state[p]["momentum_buffer"].clone() for p in params if "momentum_buffer" in state[p]]


class LrLog(Callback):
    """Each step's LR, and the momentum buffers the resumed run starts from."""

    def __init__(self) -> None:
        self.lrs: list[tuple[int, float]] = []
        self.first_buffers: list[torch.Tensor] | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        optimizer = trainer.optimizers[0]
        self.lrs.append((trainer.global_step, optimizer.param_groups[0]["lr"]))
        if self.first_buffers is None:
            self.first_buffers = _buffers(optimizer)


def _fit_two_epochs(tmp_path):
    torch.manual_seed(0)
    trainer = tiny_trainer(tmp_path / "first", max_epochs=2)
    trainer.fit(tiny_model(lr=0.05), TinyVideoData())
    path = tmp_path / "two_epochs.ckpt"
    trainer.save_checkpoint(path)
    return path, trainer.optimizers[0]


def test_resume_takes_the_new_lr_and_schedule_length(tmp_path, caplog):
    """2 epochs at lr 0.05 (cosine over 8 steps), resumed for 4 epochs at lr 0.1: every new step
    follows the 16-step cosine from 0.1 (before: 0.0 for all of them), the momentum buffers are
    the checkpoint's, and one line says what changed."""
    path, first_optimizer = _fit_two_epochs(tmp_path)
    saved = _buffers(first_optimizer)
    log = LrLog()
    trainer = tiny_trainer(tmp_path / "resumed", max_epochs=4, callbacks=[log])
    with caplog.at_level("INFO"):
        trainer.fit(tiny_model(lr=0.1), TinyVideoData(), ckpt_path=str(path))
    cosine = WarmupSchedule(total_steps=4 * STEPS_PER_EPOCH)
    assert [s for s, _ in log.lrs] == list(range(8, 16))
    for step, lr in log.lrs:
        assert lr == pytest.approx(0.1 * cosine(step), rel=1e-12), (step, lr)
    assert saved and all(torch.equal(a, b) for a, b in zip(log.first_buffers, saved, strict=True))
    said = [r.getMessage() for r in caplog.records if "optimisation settings" in r.getMessage()]
    assert len(said) == 1, said
    assert "lr 0.05 -> 0.1" in said[0] and "schedule total_steps 8 -> 16" in said[0], said[0]


class StopAfterTwoEpochs(Callback):
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 1:
            trainer.should_stop = True


def test_resume_with_the_same_settings_changes_nothing(tmp_path, caplog):
    """A 3-epoch run stopped after 2 and resumed with the same settings: the LRs of epoch 3 are
    the uninterrupted run's, bit for bit, and nothing is said."""
    torch.manual_seed(0)
    full = LrLog()
    tiny_trainer(tmp_path / "full", max_epochs=3, callbacks=[full]).fit(
        tiny_model(lr=0.05), TinyVideoData()
    )
    torch.manual_seed(0)
    stopped = tiny_trainer(tmp_path / "stopped", max_epochs=3, callbacks=[StopAfterTwoEpochs()])
    stopped.fit(tiny_model(lr=0.05), TinyVideoData())
    path = tmp_path / "two_of_three.ckpt"
    stopped.save_checkpoint(path)
    log = LrLog()
    with caplog.at_level("INFO"):
        tiny_trainer(tmp_path / "resumed", max_epochs=3, callbacks=[log]).fit(
            tiny_model(lr=0.05), TinyVideoData(), ckpt_path=str(path)
        )
    assert log.lrs == full.lrs[2 * STEPS_PER_EPOCH :]
    assert not [r for r in caplog.records if "optimisation settings" in r.getMessage()]


def test_resume_with_another_optimizer_stops_in_one_line(tmp_path):
    """SGD's state into AdamW, or a LambdaLR's into a StepLR: one line naming both (before: a
    KeyError at the first step, or training at the finished schedule's LR 0)."""
    path, _ = _fit_two_epochs(tmp_path)

    def adamw(params):
        return torch.optim.AdamW(params, lr=1e-3)

    trainer = tiny_trainer(tmp_path / "resumed", max_epochs=3)
    with pytest.raises(ValueError, match="trained with SGD and this run configures AdamW"):
        trainer.fit(tiny_model(optimizer=adamw), TinyVideoData(), ckpt_path=str(path))

    # Another LR scheduler: one line (a StepLR over the finished cosine's LR 0 trained at 0)
    def step_lr(optimizer):
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)

    trainer = tiny_trainer(tmp_path / "resumed_step", max_epochs=3)
    with pytest.raises(ValueError, match="LR schedule is a LambdaLR and this run's a StepLR"):
        trainer.fit(tiny_model(lr_scheduler=step_lr), TinyVideoData(), ckpt_path=str(path))


class BatchLog(Callback):
    """Appends ``epoch step [video indices]`` of each training batch to ``path`` (a CLI run's
    ``--trainer.callbacks+=test_resume_settings.BatchLog``)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        with open(self.path, "a") as f:
            f.write(f"{trainer.current_epoch} {trainer.global_step} {batch['index'].tolist()}\n")


def _train(argv: list[str]) -> None:
    import importlib.util
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("a2video_train_entry", root / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    saved, sys.argv = sys.argv, ["train.py", *argv]
    try:
        module.main()
    finally:
        sys.argv = saved


def test_a_max_steps_stop_resumes_inside_its_epoch(kinetics_root, tmp_path):
    """``fit --trainer.max_steps 1`` (of 2 steps per epoch), then ``--ckpt_path last`` for two
    epochs: the batches are those of one uninterrupted two-epoch run. Before, the stop's
    ``last.ckpt`` was written as an epoch end, the resume went on with epoch 1, and the rest of
    epoch 0 was never trained; and the schedule kept its one-step length (LR 0 from then on)."""
    from tiny_fit import tiny_fit_args

    def fit(run: str, log: str, *extra: str) -> list[str]:
        args = ["--data.num_workers", "0", "--trainer.limit_train_batches", "2"]
        args += ["--trainer.callbacks+=test_resume_settings.BatchLog"]
        args += ["--trainer.callbacks.path", str(tmp_path / log), *extra]
        _train(tiny_fit_args(kinetics_root, tmp_path / run, *args))
        return (tmp_path / log).read_text().splitlines()

    full = fit("full", "full.txt")
    assert len(full) == 4
    first = fit("run", "resumed.txt", "--trainer.max_steps", "1")
    resumed = fit("run", "resumed.txt", "--ckpt_path", "last")
    assert resumed == full, (first, resumed)


class StopAtStepOne(Callback):
    """Stops the fit after its first step, inside the epoch, as ``max_time`` does (a stop that
    Lightning validates before ending, unlike ``max_steps``); only once, so a resume goes on."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == 1:
            trainer.should_stop = True


def test_a_stop_validated_inside_its_epoch_keeps_its_best_checkpoint(kinetics_root, tmp_path):
    """A stop inside an epoch that validates (``max_time``), then ``--ckpt_path last``: the best
    checkpoint of that validation is in ``last.ckpt``'s record, so the resumed run keeps
    ``save_top_k 1``. Before, ``last.ckpt`` was written before the best one was recorded: the
    resume forgot it and kept writing best files beside it (two ``best-*.ckpt`` after one
    stop)."""
    from tiny_fit import tiny_fit_args

    from a2video.training.checkpoint import load_checkpoint

    run = tmp_path / "run"
    args = ["--data.num_workers", "0", "--trainer.limit_train_batches", "2"]
    args += ["--trainer.check_val_every_n_epoch", "1"]
    stop = "--trainer.callbacks+=test_resume_settings.StopAtStepOne"
    _train(tiny_fit_args(kinetics_root, run, *args, stop))
    best = [p.name for p in (run / "checkpoints").glob("best-*.ckpt")]
    assert best == ["best-epoch000-step0000001.ckpt"], best
    states = load_checkpoint(run / "checkpoints" / "last.ckpt")["callbacks"]
    recorded = [s["best_model_path"] for k, s in states.items() if "val/top1" in k]
    assert [os.path.basename(p) for p in recorded] == best, states
    _train(tiny_fit_args(kinetics_root, run, *args, "--ckpt_path", "last"))
    assert len(list((run / "checkpoints").glob("best-*.ckpt"))) == 1


class EarlyStoppingLog(Callback):
    """Appends ``when step wait_count best_score`` of the run's EarlyStopping to ``path`` at the
    train start (after a resume's restore) and end (a CLI run's
    ``--trainer.callbacks+=test_resume_settings.EarlyStoppingLog``)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _write(self, trainer, when: str) -> None:
        (stopping,) = trainer.early_stopping_callbacks
        with open(self.path, "a") as f:
            f.write(f"{when} {trainer.global_step} {stopping.wait_count} {stopping.best_score}\n")

    def on_train_start(self, trainer, pl_module) -> None:
        self._write(trainer, "start")

    def on_train_end(self, trainer, pl_module) -> None:
        self._write(trainer, "end")


def test_a_stop_validated_inside_its_epoch_keeps_its_early_stopping_count(kinetics_root, tmp_path):
    """EarlyStopping on ``val/loss`` (checked at the train epoch's end) and a stop inside an epoch
    that validates (``max_time``), then ``--ckpt_path last``: the resumed run starts from the
    stopped run's EarlyStopping as it ended, which counted the stop's validation once, and counts
    each later validation once. ``min_delta`` 1e6: only the first validation is a best, every
    later one adds 1 to ``wait_count``. Before, ``last.ckpt`` was written before EarlyStopping
    counted the stop's validation: the resume started from ``best_score inf``, took the next
    validation as its best and ended one wait short (1 of 2)."""
    from tiny_fit import tiny_fit_args

    from a2video.training.checkpoint import load_checkpoint

    run, log = tmp_path / "run", tmp_path / "early_stopping.txt"
    args = ["--data.num_workers", "0", "--trainer.limit_train_batches", "2"]
    args += ["--trainer.check_val_every_n_epoch", "1"]
    args += ["--trainer.callbacks+=EarlyStopping", "--trainer.callbacks.monitor", "val/loss"]
    args += ["--trainer.callbacks.min_delta", "1e6", "--trainer.callbacks.patience", "10"]
    args += ["--trainer.callbacks+=test_resume_settings.EarlyStoppingLog"]
    args += ["--trainer.callbacks.path", str(log)]
    stop = "--trainer.callbacks+=test_resume_settings.StopAtStepOne"
    _train(tiny_fit_args(kinetics_root, run, *args, stop))

    def states(ckpt: str) -> list[tuple[int, float]]:
        saved = load_checkpoint(run / "checkpoints" / ckpt)["callbacks"]
        found = [s for k, s in saved.items() if k.startswith("EarlyStopping")]
        return [(s["wait_count"], float(s["best_score"])) for s in found]

    stopped = states("last.ckpt")
    _train(tiny_fit_args(kinetics_root, run, *args, "--ckpt_path", "last"))
    rows = [line.split() for line in log.read_text().splitlines()]
    got = [(when, int(step), int(wait), float(best)) for when, step, wait, best in rows]
    (_, _, _, first_best), (_, _, wait, stop_best), resumed, end = got
    assert first_best == float("inf") and wait == 0 and stop_best < float("inf"), got
    assert stopped == [(0, stop_best)], stopped  # the stop's validation, counted once
    assert resumed == ("start", 1, 0, stop_best), got  # before: ("start", 1, 0, inf)
    # validations at steps 1 (the stop), 2 and 4: the first the best, two waits
    assert end == ("end", 4, 2, stop_best), got
    assert states("last.ckpt") == [(2, stop_best)]  # an epoch end's save: as the run ended


def test_a_resume_with_another_data_order_says_so(kinetics_root, tmp_path, caplog):
    """A mid-epoch checkpoint resumed with another ``--data.seed``: skipping the first batches of
    a different shuffle would train some videos twice and others never in that epoch, so the
    epoch continues from its start, and one warning says why (before: silence)."""
    from tiny_fit import tiny_fit_args

    args = ["--data.num_workers", "0", "--trainer.limit_train_batches", "2"]
    _train(tiny_fit_args(kinetics_root, tmp_path / "run", *args, "--trainer.max_steps", "1"))
    with caplog.at_level("WARNING"):
        _train(tiny_fit_args(kinetics_root, tmp_path / "run", *args, "--ckpt_path", "last",
                             "--data.seed", "12345"))  # fmt: skip
    said = [r.getMessage() for r in caplog.records if "the train data changed" in r.getMessage()]
    assert len(said) == 1 and "-> 12345" in said[0], said


def _reordered_annotations(kinetics_root: str, out) -> str:
    """A copy of the fixture's annotations with the train rows in reverse order: the same
    videos and classes, other videos at each sampler index."""
    import shutil
    from pathlib import Path

    shutil.copytree(Path(kinetics_root) / "annotations", out)
    header, *rows = (out / "train.csv").read_text().splitlines()
    (out / "train.csv").write_text("\n".join([header, *reversed(rows)]) + "\n")
    return str(out)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (["--data.repeat_clips", "2"], "(data.repeat_clips 1 -> 2)"),
        (["--data.batch_size", "2"], "(data.batch_size 4 -> 2)"),
        (["--data.annotation_dir", "REORDERED"], "(the train videos' paths and labels differ)"),
    ],
)
def test_a_resume_with_other_batches_names_the_setting(
    change, said, kinetics_root, tmp_path, caplog
):
    """A mid-epoch checkpoint resumed with another clips-per-batch, ``repeat_clips`` or train
    list (the same count of videos in another order, or another dataset): the warning names the
    setting. Before, ``repeat_clips`` showed as "batch size 2 -> 1" (videos per batch), and a
    new list of as many videos, or a batch size that kept the videos per batch, was silent."""
    from tiny_fit import tiny_fit_args

    if "REORDERED" in change:
        change = [change[0], _reordered_annotations(kinetics_root, tmp_path / "annotations")]
    args = ["--data.num_workers", "0", "--trainer.limit_train_batches", "2"]
    _train(tiny_fit_args(kinetics_root, tmp_path / "run", *args, "--trainer.max_steps", "1"))
    with caplog.at_level("WARNING"):
        _train(tiny_fit_args(kinetics_root, tmp_path / "run", *args, "--ckpt_path", "last",
                             *change))  # fmt: skip
    warned = [r.getMessage() for r in caplog.records if "the train data changed" in r.getMessage()]
    assert len(warned) == 1 and f"the train data changed {said}; " in warned[0], warned


@pytest.mark.parametrize("change", [["--data.batch_size", "2"], ["--data.seed", "12345"]])
def test_a_resumed_epoch_with_other_batches_trains_every_video(kinetics_root, tmp_path, change):
    """Stopped after 1 of its 3 batches and resumed with another batch size or order, the
    epoch starts again from its first batch and trains every train video. Before, Lightning went
    on counting from batch 1 with the new loader from its start: with batch 2, steps 1-5 of 6
    took the first 10 videos of the order and the last one was never trained in epoch 0."""
    from tiny_fit import tiny_fit_args

    log = tmp_path / "batches.txt"
    args = ["--data.num_workers", "0", "--trainer.max_epochs", "1"]
    args += ["--trainer.callbacks+=test_resume_settings.BatchLog", "--trainer.callbacks.path"]
    _train(
        tiny_fit_args(kinetics_root, tmp_path / "run", *args, str(log), "--trainer.max_steps", "1")
    )
    log.write_text("")
    _train(tiny_fit_args(kinetics_root, tmp_path / "run", *args, str(log), "--ckpt_path", "last",
                         *change))  # fmt: skip
    seen = [i for line in log.read_text().splitlines() for i in eval(line.split(" ", 2)[2])]
    assert sorted(set(seen)) == list(range(11)), seen  # the fixture's 11 train videos
    # the schedule spans the step it runs again: its last step is the run's (its end LR had
    # come that many steps early, 0 for cosine: 5 steps at LR 0 in a 2-process audit run)
    import torch

    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["lr_schedulers"][0]["lr_lambdas"][0]["total_steps"] == ckpt["global_step"]


def test_a_finished_epoch_resumed_with_other_batches_says_nothing_of_it(
    kinetics_root, tmp_path, caplog
):
    """A run that ended with its epoch, resumed for one more with ``repeat_clips 2`` (twice the
    batches per epoch): nothing was interrupted, so no warning. Before, the saved 3 batches
    were compared with the new run's 6 per epoch ("the rest of epoch 0 is not trained") and
    the changed setting was said to restart an "interrupted epoch"."""
    from tiny_fit import tiny_fit_args

    def fit(log: str, *extra: str) -> list[str]:
        args = ["--data.num_workers", "0", "--trainer.callbacks+=test_resume_settings.BatchLog"]
        args += ["--trainer.callbacks.path", str(tmp_path / log), *extra]
        _train(tiny_fit_args(kinetics_root, tmp_path / "run", *args))
        return (tmp_path / log).read_text().splitlines()

    first = fit("first.txt", "--trainer.max_epochs", "1")
    assert len(first) == 3  # 11 videos, 4 per batch
    with caplog.at_level("WARNING"):
        second = fit("second.txt", "--trainer.max_epochs", "2", "--data.repeat_clips", "2",
                     "--ckpt_path", "last")  # fmt: skip
    assert [line.split()[0] for line in second] == ["1"] * 6  # epoch 1, 2 videos per batch
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("a2video: ")]
    assert not [m for m in said if "not trained" in m or "interrupted" in m], said


class LrLogCli(Callback):
    """Appends ``epoch step lr`` at each training batch's start to ``path`` (a CLI run's
    ``--trainer.callbacks+=test_resume_settings.LrLogCli``)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        with open(self.path, "a") as f:
            f.write(f"{trainer.current_epoch} {trainer.global_step} {lr!r}\n")


def test_a_resume_with_fewer_steps_per_epoch_keeps_training_on_the_schedule(
    kinetics_root, tmp_path, caplog
):
    """One epoch of 6 steps (batch 2), resumed for a second epoch with batch 4 (3 steps per
    epoch, as with twice the processes): the schedule ends with the run, at step 9, and the
    second epoch trains on the cosine's second half. Before, its length was this run's
    2 x 3 = 6 steps, already passed: every step of the second epoch ran at LR 0 (a 1 -> 2
    process resume too), with only "schedule total_steps 12 -> 6" said."""
    from tiny_fit import tiny_fit_args

    log = tmp_path / "lrs.txt"
    args = ["--data.num_workers", "0", "--trainer.callbacks+=test_resume_settings.LrLogCli"]
    args += ["--trainer.callbacks.path", str(log)]
    _train(tiny_fit_args(kinetics_root, tmp_path / "run", *args, "--trainer.max_epochs", "1",
                         "--data.batch_size", "2"))  # fmt: skip
    with caplog.at_level("WARNING"):
        _train(tiny_fit_args(kinetics_root, tmp_path / "run", *args, "--ckpt_path", "last",
                             "--data.batch_size", "4"))  # fmt: skip
    rows = [line.split() for line in log.read_text().splitlines()]
    assert [(int(e), int(s)) for e, s, _ in rows] == [(0, s) for s in range(6)] + [
        (1, s) for s in range(6, 9)
    ]
    second = [float(lr) for e, _, lr in rows if e == "1"]
    assert all(lr > 0 for lr in second) and second == sorted(second, reverse=True), second
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 9
    assert ckpt["lr_schedulers"][0]["lr_lambdas"][0]["total_steps"] == 9
    said = [r.getMessage() for r in caplog.records if "the LR schedule's" in r.getMessage()]
    assert len(said) == 1 and "move by +3 steps" in said[0], said


class StopAtValidation(Callback):
    """Sets ``should_stop`` at a validation from step 6 on, as EarlyStopping does."""

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.global_step >= 6:
            trainer.should_stop = True


def test_an_early_stop_at_a_mid_epoch_validation_saves_its_last_step(tmp_path):
    """``val_check_interval`` 2 of 4 batches and an early stop at step 6 (mid-epoch): last.ckpt
    holds step 6, not the state of two steps before."""
    from a2video.training.callbacks import LastCheckpoint

    torch.manual_seed(0)
    last = LastCheckpoint(every_n_train_steps=0, dirpath=str(tmp_path / "ck"))
    trainer = tiny_trainer(
        tmp_path, max_epochs=3, val_check_interval=2, num_sanity_val_steps=0,
        limit_val_batches=1, enable_checkpointing=True, callbacks=[last, StopAtValidation()],
    )  # fmt: skip
    trainer.fit(tiny_model(), TinyVideoData())
    assert trainer.global_step == 6
    saved = torch.load(tmp_path / "ck" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 6


def test_an_injected_schedulers_cycled_momentum_stands():
    """OneCycleLR cycles SGD's momentum: putting the configured settings back after a resume
    leaves the scheduler's momentum (and LR) as restored, and says so only for the LR."""
    from a2video.training.optim import apply_settings, group_settings

    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    configured = group_settings(optimizer)
    cycle = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=10)
    for _ in range(3):
        optimizer.step()
        cycle.step()
    momentum, lr = optimizer.param_groups[0]["momentum"], optimizer.param_groups[0]["lr"]
    assert momentum != 0.9
    changes = apply_settings(optimizer, cycle, configured, None)
    assert optimizer.param_groups[0]["momentum"] == momentum
    assert optimizer.param_groups[0]["lr"] == lr
    assert not [c for c in changes if c.startswith("momentum")], changes


def test_a_resume_keeps_the_bad_videos_it_met(broken_kinetics_root, tmp_path):
    """Unusable training videos met before a mid-epoch stop still count after the resume: the
    epoch's ``data/bad_videos`` equals the uninterrupted run's (it lost those met before the
    stop), and the run-wide list behind ``max_bad_fraction`` keeps them."""
    import csv

    from tiny_fit import tiny_fit_args

    def fit(run: str, *extra: str) -> None:
        # data seed 1: an always-unusable video (audio-only, no index) comes in the first 4
        # steps (a truncated one is used where its clip ends before the cut)
        args = ["--data.num_workers", "0", "--trainer.max_epochs", "1", "--data.seed", "1"]
        args += ["--data.max_bad_fraction", "1.0", "--trainer.check_val_every_n_epoch", "1"]
        args += ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger"]
        args += ["--trainer.logger.save_dir", str(tmp_path / run / "logs"), *extra]
        _train(tiny_fit_args(broken_kinetics_root, tmp_path / run, *args))

    def bad_videos(run: str, version: int) -> list[float]:
        path = next((tmp_path / run / "logs").rglob(f"version_{version}/metrics.csv"))
        with open(path) as f:
            return [float(r["data/bad_videos"]) for r in csv.DictReader(f) if r["data/bad_videos"]]

    fit("full")
    fit("run", "--trainer.max_steps", "4")
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    met = state["a2video_resume"]["bad_videos"][0]
    assert met["epoch_sum"] > 0 and met["files"], met  # the test needs a bad video before the stop
    fit("run", "--ckpt_path", "last")  # goes on logging in version_0 (a2video.training.logs)
    # the epoch's figure at its end; before it, the stopped run's figure of the epoch so far,
    # logged by Lightning at the max_steps stop (step 3), stays
    assert bad_videos("full", 0) and bad_videos("run", 0)[-1:] == bad_videos("full", 0)


def test_restored_train_counts_compute_without_a_before_update_warning():
    """A resume at an epoch's last batch computes that epoch's ``train/top1`` from the counts
    the checkpoint holds, with no batch trained: torchmetrics warned "compute ... was called
    before the update method" over the right figure."""
    import warnings

    from torch import nn

    from a2video.training.metrics import ClipAccuracy
    from a2video.training.resume import _restore_train_acc_sums

    module = nn.Module()
    module.train_acc = ClipAccuracy(k=5)
    _restore_train_acc_sums(module, [{"correct": [3.0, 4.0], "total": 4.0}], 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        acc = module.train_acc.compute()
    assert (float(acc["top1"]), float(acc["top5"])) == (0.75, 1.0)
