"""Kill and resume through the CLI: a ``fit`` killed with SIGKILL right after a step checkpoint, or
stopped by SIGTERM (pre-emption), resumes with ``--ckpt_path last`` and ends with the same number
of optimizer steps, each step run exactly once and the LR schedule continuing where it stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from a2video.training.checkpoint import atomic_save, load_checkpoint
from a2video.training.module import WarmupSchedule
from a2video.training.resume import RESUME_KEY

TESTS = Path(__file__).resolve().parent
STEPS_PER_EPOCH, EPOCHS, LR = 4, 2, 0.05

SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    sys.path.insert(0, {tests!r})
    from lightning.pytorch import Callback
    from a2video.training.cli import A2VideoCLI
    from a2video.training.module import VideoClassifier
    from test_module import TinyVideoData

    class Record(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == int(os.environ.get("KILL_AT", -1)):
                os.kill(os.getpid(), getattr(signal, os.environ["SIG"]))
            self.lr = trainer.optimizers[0].param_groups[0]["lr"]

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            with open(os.environ["STEP_LOG"], "a") as f:
                f.write(json.dumps([trainer.global_step, self.lr]) + "\\n")

    A2VideoCLI(VideoClassifier, TinyVideoData, trainer_defaults={{"callbacks": [Record()]}})
    """
)


def _fit(tmp_path: Path, *extra: str, kill_at: int = -1, sig: str = "SIGKILL"):
    script = tmp_path / "fit.py"
    script.write_text(SCRIPT.format(tests=str(TESTS)))
    env = dict(os.environ, KILL_AT=str(kill_at), SIG=sig, STEP_LOG=str(tmp_path / "steps.jsonl"))
    env["PYTHONWARNINGS"] = "ignore"
    cmd = [
        sys.executable, str(script), "fit",
        "--model.arch", "a2net_tiny", "--model.lr", str(LR), "--model.warmup_epochs", "0.5",
        "--data.train_size", "32", "--data.val_size", "8", "--data.batch_size", "8",
        "--trainer.max_epochs", str(EPOCHS), "--trainer.accelerator", "cpu",
        "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--step_checkpoint.every_n_train_steps", "3", *extra,
    ]  # fmt: skip
    return subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)


def _check_steps(tmp_path: Path) -> None:
    total = STEPS_PER_EPOCH * EPOCHS
    log = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    steps = [s for s, _ in log]
    assert steps == list(range(1, total + 1)), steps  # every step exactly once, none lost
    schedule = WarmupSchedule(total_steps=total, warmup_steps=2, kind="cosine")
    assert [lr for _, lr in log] == pytest.approx([LR * schedule(s - 1) for s in steps])
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert last["global_step"] == total and last["epoch"] == EPOCHS - 1


def test_sigkill_after_step_checkpoint_then_resume(tmp_path):
    killed = _fit(tmp_path, kill_at=3, sig="SIGKILL")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 3  # the step checkpoint, complete and loadable
    assert not [p for p in os.listdir(tmp_path / "run" / "checkpoints") if p.endswith(".tmp")]
    resumed = _fit(tmp_path, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _check_steps(tmp_path)


def test_checkpoint_of_the_previous_version_resumes_with_one_warning(tmp_path):
    """A ``last.ckpt`` without ``a2video_resume`` (written before it existed) still resumes: one
    warning, then every step exactly once as before."""
    killed = _fit(tmp_path, kill_at=3, sig="SIGKILL")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt = load_checkpoint(path)
    assert ckpt.pop(RESUME_KEY)["world_size"] == 1
    atomic_save(ckpt, path)
    resumed = _fit(tmp_path, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (resumed.stderr + resumed.stdout).count("no data position or RNG state") == 1
    _check_steps(tmp_path)


@pytest.mark.slow
def test_sigterm_saves_then_resume(tmp_path):
    stopped = _fit(tmp_path, kill_at=5, sig="SIGTERM")
    # Lightning turns SIGTERM into SIGTERMException at the end of the batch; we saved first.
    assert "SIGTERM received: saved" in stopped.stderr + stopped.stdout, stopped.stderr[-2000:]
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 6  # the batch running when the signal came was finished
    resumed = _fit(tmp_path, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _check_steps(tmp_path)


def test_sampler_skip_drops_the_consumed_keys_of_one_epoch_once():
    """What a resume asks of ShardedSampler: the rest of that epoch's shuffle, then full epochs."""
    from a2video.data.datasets import ShardedSampler

    sampler = ShardedSampler(10, shuffle=True, seed=3, pad=True, rank=1, world_size=2)
    sampler.set_epoch(4)
    whole = list(sampler)
    sampler.skip(4, 2)
    assert list(sampler) == whole[2:] and len(sampler) == len(whole) == 5
    assert list(sampler) == whole  # one-shot
    sampler.skip(4, 5)  # the epoch had ended: the next one is not shortened
    sampler.set_epoch(5)
    assert len(list(sampler)) == 5


# ---------------------------------------------------------------------------- exactly once
# The real KineticsDataModule on the synthetic fixture (11 train videos), with dropout so that the
# RNG streams matter: every step's loss and video indices are logged per rank, and a run killed at
# step k then resumed with `--ckpt_path last` must log exactly what an uninterrupted run logs.
EXACT_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, subprocess, sys, torch
    torch.set_num_threads(1)
    from lightning.pytorch import Callback
    from lightning.pytorch.callbacks import Checkpoint
    from a2video.data import KineticsDataModule
    from a2video.training.cli import A2VideoCLI
    from a2video.training.module import VideoClassifier

    class Record(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if os.environ.get("KILL_IN", "training") != "training":
                pass
            elif trainer.global_step == int(os.environ.get("KILL_AT", -1)):
                sig = getattr(signal, os.environ.get("SIG", "SIGKILL"))
                if os.environ.get("SIGNAL_FROM") == "outside":  # scancel, a pre-empting host:
                    # every process of the job, loader workers too, from a process not in it
                    subprocess.run(["kill", "-s", sig.name, "--", f"-{os.getpgid(0)}"])
                    return
                if trainer.world_size > 1:  # the whole job dies at once, as on a lost node
                    os.killpg(os.getpgid(0), sig)
                os.kill(os.getpid(), sig)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            row = [trainer.global_rank, trainer.current_epoch, trainer.global_step,
                   float(outputs["loss"]), batch["index"].tolist()]
            with open(os.environ["STEP_LOG"] + f".{trainer.global_rank}", "a") as f:
                f.write(json.dumps(row) + "\\n")

        def _epoch_figures(self, trainer, epoch):  # the epoch's train/top1, top5 as logged
            if epoch < 0 or "train/top1" not in trainer.callback_metrics:
                return
            row = [epoch] + [float(trainer.callback_metrics[f"train/top{k}"]) for k in (1, 5)]
            with open(os.environ["STEP_LOG"] + f".epochs.{trainer.global_rank}", "a") as f:
                f.write(json.dumps(row) + "\\n")

        def on_train_epoch_start(self, trainer, pl_module):
            self._epoch_figures(trainer, trainer.current_epoch - 1)

        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, *args):
            if os.environ.get("KILL_IN") == "validation" and trainer.global_step == int(
                os.environ.get("KILL_AT", -1)
            ):  # killed while validating after step KILL_AT
                if trainer.world_size > 1:
                    os.killpg(os.getpgid(0), signal.SIGKILL)
                os.kill(os.getpid(), signal.SIGKILL)

        def on_train_epoch_end(self, trainer, pl_module):  # before last.ckpt at the epoch end
            if os.environ.get("KILL_IN") == "epoch_end" and trainer.global_step == int(
                os.environ.get("KILL_AT", -1)
            ):
                os.kill(os.getpid(), signal.SIGKILL)

        def on_validation_end(self, trainer, pl_module):  # which epochs were validated, figures
            if os.environ.get("KILL_IN") == "validation_end" and trainer.global_step == int(
                os.environ.get("KILL_AT", -1)
            ):  # killed after the validation logged, before last.ckpt is saved after it
                os.kill(os.getpid(), signal.SIGKILL)
            figures = {k: float(v) for k, v in trainer.callback_metrics.items()
                       if k.startswith("val/")}
            with open(os.environ["STEP_LOG"] + f".val.{trainer.global_rank}", "a") as f:
                f.write(json.dumps([trainer.current_epoch, trainer.global_step, figures]) + "\\n")

        def on_fit_end(self, trainer, pl_module):
            self._epoch_figures(trainer, trainer.current_epoch - 1)

        def on_exception(self, trainer, pl_module, exception):  # a stop after an epoch's end
            self._epoch_figures(trainer, trainer.current_epoch - 1)

    class KillAfterSaves(Checkpoint):  # after the checkpoint callbacks: right after their saves
        def _kill(self, trainer, where):
            if os.environ.get("KILL_IN") == where and trainer.global_step == int(
                os.environ.get("KILL_AT", -1)
            ):
                os.kill(os.getpid(), signal.SIGKILL)

        def on_train_batch_end(self, trainer, *args):  # before Lightning logs the batch's row
            self._kill(trainer, "batch_saved")

        def on_train_epoch_end(self, trainer, pl_module):  # before the epoch's figures
            self._kill(trainer, "epoch_saved")

    A2VideoCLI(VideoClassifier, KineticsDataModule,
               trainer_defaults={"callbacks": [Record(), KillAfterSaves()]})
    """
)
EXACT_ARGS = [
    "--seed_everything", "0",
    "--model.arch", "a2net_tiny", "--model.arch_options", '{"dropout": 0.5}',
    "--model.lr", "0.05", "--model.warmup_epochs", "0.5",
    "--data.frames", "4", "--data.stride", "3", "--data.train_scale", "[40, 48]",
    "--data.crop_size", "32", "--data.test_scale", "40", "--data.num_clips", "1",
    "--data.num_crops", "1", "--data.num_workers", "0", "--data.val_split", "val",
    "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu",
    "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false", "--trainer.num_sanity_val_steps", "0",
    "--step_checkpoint.every_n_train_steps", "1",
]  # fmt: skip


def _exact_fit(
    run: Path,
    data_root: str,
    *extra: str,
    kill_at: int = -1,
    sig: str = "SIGKILL",
    signal_from: str = "inside",
    warnings: str = "ignore",
    kill_in: str = "training",
):
    script = run.parent / "exact_fit.py"
    script.write_text(EXACT_SCRIPT)
    env = dict(os.environ, KILL_AT=str(kill_at), SIG=sig, STEP_LOG=str(run / "steps"))
    env.update(SIGNAL_FROM=signal_from, KILL_IN=kill_in)
    env.update(PYTHONWARNINGS=warnings, OMP_NUM_THREADS="1")
    run.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, str(script), "fit", *EXACT_ARGS, "--data.data_root", data_root,
        "--trainer.default_root_dir", str(run), *extra,
    ]  # fmt: skip
    return subprocess.run(
        cmd, env=env, cwd=run, capture_output=True, text=True, timeout=170, start_new_session=True
    )


def _steps(run: Path, rank: int) -> list[list]:
    return [json.loads(line) for line in (run / f"steps.{rank}").read_text().splitlines()]


def _epoch_figures(run: Path, rank: int) -> dict[int, list[float]]:
    """Each epoch's logged train/top1 and train/top5 (a resumed run: the last one logged)."""
    lines = (run / f"steps.epochs.{rank}").read_text().splitlines()
    return {row[0]: row[1:] for row in map(json.loads, lines)}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, kinetics_root) -> Callable[..., Path]:
    """The uninterrupted run of a configuration, made once per module."""
    runs: dict[tuple[str, ...], Path] = {}

    def get(*extra: str) -> Path:
        if extra not in runs:
            run = tmp_path_factory.mktemp("whole") / "run"
            _fit_ok(_exact_fit(run, kinetics_root, *extra))
            runs[extra] = run
        return runs[extra]

    return get


def _assert_same_steps(whole: Path, resumed: Path, ranks: int) -> None:
    """Each rank's steps, videos and losses (1e-6) of the resumed run are the uninterrupted
    run's, and each epoch's train accuracy covers its batches before the checkpoint too."""
    for rank in range(ranks):
        expected, got = _steps(whole, rank), _steps(resumed, rank)
        assert [r[2] for r in got] == [r[2] for r in expected]  # each step once, none lost
        assert [r[4] for r in got] == [r[4] for r in expected], "other videos after the resume"
        assert [r[3] for r in got] == pytest.approx([r[3] for r in expected], rel=1e-6, abs=0)
        whole_epochs, resumed_epochs = _epoch_figures(whole, rank), _epoch_figures(resumed, rank)
        assert resumed_epochs == whole_epochs and sorted(whole_epochs) == [0, 1]


def _assert_exactly_once(
    tmp_path: Path, data_root: str, whole: Path, kill_at: int, *extra: str
) -> None:
    ranks = 2 if "--trainer.devices" in extra else 1
    killed = _exact_fit(tmp_path / "resumed", data_root, *extra, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    _fit_ok(_exact_fit(tmp_path / "resumed", data_root, *extra, "--ckpt_path", "last"))
    _assert_same_steps(whole, tmp_path / "resumed", ranks)
    # every video (11 listed and present) trained once per epoch over all ranks
    for epoch in (0, 1):
        seen = [
            i for rank in range(ranks) for r in _steps(tmp_path / "resumed", rank) for i in r[4]
            if r[1] == epoch
        ]  # fmt: skip
        assert sorted(set(seen)) == list(range(11)), seen
        assert len(seen) - len(set(seen)) < ranks


def _fit_ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kill_at", [1, 3])  # mid-epoch; right after epoch 0 ended (3 steps)
def test_resume_trains_on_the_same_batches_with_the_same_randomness(
    kinetics_root, tmp_path, uninterrupted, kill_at
):
    """1 process, batch 4, 3 steps per epoch: killed after step 1 (mid-epoch) or after step 3 (at
    the epoch's end, after its validation), the resumed run's per-step losses equal the
    uninterrupted run's within 1e-6 (relative) and it sees the same videos in the same order."""
    extra = ("--data.batch_size", "4")
    whole = uninterrupted(*extra)
    _assert_exactly_once(tmp_path, kinetics_root, whole, kill_at, *extra)
    # each validation once over both runs: last.ckpt is saved again after a validation that
    # followed its save at the batch's end (a resume from that one validates again)
    got, expected = _validations(tmp_path / "resumed"), _validations(whole)
    assert [v[:2] for v in got] == [v[:2] for v in expected] == [[0, 3], [1, 6]]


@pytest.mark.timeout(300)
def test_a_sigterm_in_the_epochs_last_batch_stops_after_its_validation_and_logging(
    kinetics_root, tmp_path, uninterrupted
):
    """1 process, batch 4, 3 steps per epoch, SIGTERM in the last batch of epoch 0: the run
    saves at that batch's end (in case it is killed before the epoch ends), then validates the
    epoch and logs its train accuracy, saves again and stops; the resume starts epoch 1 and
    logs what the uninterrupted run logs. (It used to stop before the epoch's validation and
    end: epoch 0's train accuracy was never logged and its validation never ran.)"""
    extra = ("--data.batch_size", "4")
    whole, run = uninterrupted(*extra), tmp_path / "resumed"
    stopped = _exact_fit(run, kinetics_root, *extra, kill_at=2, sig="SIGTERM")
    assert stopped.returncode == 0, stopped.stderr[-3000:]  # SIGTERMException is SystemExit
    out = stopped.stderr + stopped.stdout
    assert out.count("SIGTERM received: saved") == 2, out[-3000:]
    assert "at step 3; validating and logging the epoch before stopping" in out
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 3
    assert sorted(_epoch_figures(run, 0)) == [0]  # epoch 0's train accuracy, logged
    validated = [json.loads(line)[0] for line in (run / "steps.val.0").read_text().splitlines()]
    assert validated == [0]
    _fit_ok(_exact_fit(run, kinetics_root, *extra, "--ckpt_path", "last"))
    _assert_same_steps(whole, run, 1)
    validated = [json.loads(line)[0] for line in (run / "steps.val.0").read_text().splitlines()]
    assert validated == [0, 1]  # each epoch validated once over the two runs


def _validations(run: Path, rank: int = 0) -> list[list]:
    """Each validation's [epoch, step, val figures], in the order run (over both runs)."""
    return [json.loads(line) for line in (run / f"steps.val.{rank}").read_text().splitlines()]


def _best(run: Path) -> str:
    """The ModelCheckpoint's best file and score, as the last checkpoint records them."""
    last = load_checkpoint(run / "checkpoints" / "last.ckpt")
    states = [
        v
        for k, v in last["callbacks"].items()
        if k.startswith("ModelCheckpoint{'monitor': 'val/top1'")
    ]
    return f"{Path(states[0]['best_model_path']).name} {float(states[0]['best_model_score'])}"


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("extra", "kill_at", "validated"),
    [
        (("--data.batch_size", "4"), 3, [[0, 3], [1, 6]]),
        pytest.param(
            ("--data.batch_size", "4", "--trainer.val_check_interval", "2"), 2,
            [[0, 2], [1, 5]], marks=pytest.mark.slow,
        ),
    ],
    ids=["epoch-end", "val_check_interval"],
)  # fmt: skip
def test_a_kill_during_a_validation_resumes_with_that_validation(
    kinetics_root, tmp_path, uninterrupted, extra, kill_at, validated
):
    """1 process, batch 4, 3 steps per epoch, ``last.ckpt`` at every step: killed while
    validating after step ``kill_at`` (epoch 0's end, or inside it with ``val_check_interval``;
    its last checkpoint: that batch's end), the resumed run runs that validation with the
    uninterrupted run's figures (and logs epoch 0's train accuracy), then trains as that run did;
    the best checkpoint is the same. (Lightning resumed such a checkpoint after the validation:
    it was never run, and at the epoch's end neither was the epoch's train accuracy logged.)"""
    whole, run = uninterrupted(*extra), tmp_path / "resumed"
    killed = _exact_fit(run, kinetics_root, *extra, kill_at=kill_at, kill_in="validation")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == kill_at
    assert not (run / "steps.val.0").exists()  # killed before the validation ended
    _fit_ok(_exact_fit(run, kinetics_root, *extra, "--ckpt_path", "last"))
    _assert_same_steps(whole, run, 1)  # epoch 0's train accuracy too
    expected, got = _validations(whole), _validations(run)
    assert [v[:2] for v in got] == [v[:2] for v in expected] == validated
    for want, have in zip(expected, got, strict=True):
        assert have[2] == pytest.approx(want[2], rel=1e-6), have[:2]
    assert _best(run) == _best(whole)


def test_a_checkpoint_written_before_the_resumed_runs_first_batch_holds_the_restored_rng():
    """A resumed run restores the RNG states at its first training batch; a checkpoint it
    writes before that batch (after a resumed validation or epoch end) records those states,
    not the ones the process started with, so a resume from it draws what the batch drew."""
    from types import SimpleNamespace

    import torch

    from a2video.training.resume import ResumeState, capture_rng

    saved = capture_rng()
    expected = torch.rand(4)  # what the first batch after the resume draws
    trainer = SimpleNamespace(
        state=SimpleNamespace(fn="fit"), world_size=1, global_rank=0, current_epoch=0,
        train_dataloader=None, ckpt_path="last.ckpt",
    )  # fmt: skip
    resumed = ResumeState()
    resumed.on_load_checkpoint(trainer, None, {RESUME_KEY: {"world_size": 1, "rng": [saved]}})
    resumed.on_train_start(trainer, None)
    resumed.on_save_checkpoint(trainer, None, checkpoint := {})
    again = ResumeState()
    again.on_load_checkpoint(trainer, None, checkpoint)
    again.on_train_start(trainer, None)
    again.on_train_batch_start(trainer, None, None, 0)
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_resumed_run_killed_before_its_first_batch_resumes_with_the_same_randomness(
    kinetics_root, tmp_path, uninterrupted
):
    """1 process, batch 4, 3 steps per epoch, ``last.ckpt`` at every step: killed while
    validating after step 3 (its last checkpoint: that batch's end); the resumed run validates,
    saves after the validation and at the epoch's end, and is killed before its first batch;
    resumed from its epoch-end checkpoint, the run's losses and videos are the uninterrupted
    run's. (That checkpoint held the RNG states the resumed process had started with, not the
    restored ones: step 4's dropout differed, and every loss after it.)"""
    extra = ("--data.batch_size", "4")
    whole, run = uninterrupted(*extra), tmp_path / "resumed"
    killed = _exact_fit(run, kinetics_root, *extra, kill_at=3, kill_in="validation")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    again = _exact_fit(run, kinetics_root, *extra, "--ckpt_path", "last", kill_at=3)
    assert again.returncode == -signal.SIGKILL, again.stderr[-3000:]
    assert (run / "steps.val.0").exists()  # validated, saved after it, killed before a batch
    _fit_ok(_exact_fit(run, kinetics_root, *extra, "--ckpt_path", "last"))
    _assert_same_steps(whole, run, 1)


@pytest.mark.timeout(420)
def test_resume_is_exactly_once_under_ddp(kinetics_root, tmp_path, uninterrupted):
    """2 gloo ranks, batch 2 per rank (3 steps per epoch): killed after step 2, each rank's
    resumed losses and videos equal the uninterrupted run's step by step."""
    extra = ("--data.batch_size", "2", "--trainer.devices", "2", "--trainer.strategy", "ddp")
    _assert_exactly_once(tmp_path, kinetics_root, uninterrupted(*extra), 2, *extra)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_kill_during_a_ddp_validation_resumes_with_that_validation(
    kinetics_root, tmp_path, uninterrupted
):
    """2 gloo ranks, batch 2 per rank: every process killed while validating epoch 0 (the last
    checkpoint: step 3's batch end), the resumed run validates epoch 0 on both ranks with the
    uninterrupted run's figures, then trains epoch 1 with its losses and videos."""
    extra = ("--data.batch_size", "2", "--trainer.devices", "2", "--trainer.strategy", "ddp")
    whole, run = uninterrupted(*extra), tmp_path / "resumed"
    killed = _exact_fit(run, kinetics_root, *extra, kill_at=3, kill_in="validation")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (run / "steps.val.0").exists()  # killed before epoch 0's validation ended
    _fit_ok(_exact_fit(run, kinetics_root, *extra, "--ckpt_path", "last"))
    _assert_same_steps(whole, run, 2)
    for rank in (0, 1):
        expected, got = _validations(whole, rank), _validations(run, rank)
        assert [v[:2] for v in got] == [v[:2] for v in expected] == [[0, 3], [1, 6]]
        for want, have in zip(expected, got, strict=True):
            assert have[2] == pytest.approx(want[2], rel=1e-6), have[:2]
    assert _best(run) == _best(whole)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_kill_during_validation_resumed_on_two_processes_validates_that_epoch(
    kinetics_root, tmp_path, uninterrupted
):
    """1 process killed while validating epoch 0, resumed with 2: epoch 0's validation runs
    first with the 1-process run's figures (the same val videos, every one once), and epoch 0's
    train figures are the killed run's counts (saved by its one rank, summed over the new ranks),
    then epoch 1 trains on the 2 processes."""
    extra = ("--data.batch_size", "4")
    whole, run = uninterrupted(*extra), tmp_path / "resumed"
    killed = _exact_fit(run, kinetics_root, *extra, kill_at=3, kill_in="validation")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    two = ("--trainer.devices", "2", "--trainer.strategy", "ddp")
    _fit_ok(_exact_fit(run, kinetics_root, *extra, *two, "--ckpt_path", "last"))
    for rank in (0, 1):
        got, want = _validations(run, rank), _validations(whole)
        assert [v[:2] for v in got] == [[0, 3], [1, 5]]  # epoch 1: 2 steps of 2 × 4 videos
        assert got[0][2] == pytest.approx(want[0][2], rel=1e-6)
        assert _epoch_figures(run, rank)[0] == _epoch_figures(whole, 0)[0]


def test_sigterm_inside_an_accumulation_window_saves_at_its_step(
    kinetics_root, tmp_path, uninterrupted
):
    """``accumulate_grad_batches 2`` (batch 2: 6 batches, 3 optimizer steps per epoch), SIGTERM
    at the first batch of step 2's window: the save waits for that window's optimizer step, and
    the resumed run's per-batch losses and videos equal the uninterrupted run's. (Saved after
    the window's first batch, the checkpoint dropped its gradient, the resumed run stepped on
    half a window, and its later losses differed.)"""
    extra = ("--data.batch_size", "2", "--trainer.accumulate_grad_batches", "2")
    whole, run = uninterrupted(*extra), tmp_path / "resumed"
    stopped = _exact_fit(run, kinetics_root, *extra, kill_at=1, sig="SIGTERM")
    assert stopped.returncode == 0, stopped.stderr[-3000:]  # SIGTERMException is SystemExit
    assert "SIGTERM received: saved" in stopped.stderr + stopped.stdout, stopped.stderr[-3000:]
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 2
    _fit_ok(_exact_fit(run, kinetics_root, *extra, "--ckpt_path", "last"))
    expected, got = _steps(whole, 0), _steps(run, 0)
    assert [r[2] for r in got] == [r[2] for r in expected]  # 2 batches a step, none lost
    assert [r[4] for r in got] == [r[4] for r in expected], "other videos after the resume"
    assert [r[3] for r in got] == pytest.approx([r[3] for r in expected], rel=1e-6, abs=0)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "extra",
    [
        ("--data.batch_size", "2", "--data.num_workers", "2"),
        pytest.param(
            ("--data.batch_size", "2", "--data.num_workers", "1", "--trainer.devices", "2",
             "--trainer.strategy", "ddp"),
            marks=pytest.mark.slow,
        ),
    ],
    ids=["1-process", "ddp"],
)  # fmt: skip
def test_a_sigterm_to_the_whole_job_saves_and_resumes_exactly_once(
    kinetics_root, tmp_path, uninterrupted, extra
):
    """``scancel`` and pre-empting hosts signal every process of the job, the DataLoader
    workers too, from outside it. The workers leave the signal to the training process (a
    worker that died of it ended the run with "DataLoader worker ... is killed by signal" and
    no checkpoint): the run saves, exits 0, and the resumed run's losses and videos equal the
    uninterrupted run's."""
    whole, run = uninterrupted(*extra), tmp_path / "resumed"
    stopped = _exact_fit(
        run, kinetics_root, *extra, kill_at=2, sig="SIGTERM", signal_from="outside"
    )
    assert stopped.returncode == 0, stopped.stderr[-3000:]  # SIGTERMException is SystemExit
    assert "SIGTERM received: saved" in stopped.stderr + stopped.stdout, stopped.stderr[-3000:]
    ranks = 2 if "--trainer.devices" in extra else 1
    # the signal came in step 2's batch; under DDP the ranks agree on it one batch later
    saved = load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"]
    assert saved == 3 if ranks == 1 else saved in (3, 4), saved
    resumed = _fit_ok(
        _exact_fit(run, kinetics_root, *extra, "--ckpt_path", "last", warnings="default")
    )
    # Lightning's "dataloader is not resumable ... unreliable results" is not true here
    assert "not resumable" not in resumed.stdout + resumed.stderr, resumed.stderr[-3000:]
    _assert_same_steps(whole, run, ranks)
