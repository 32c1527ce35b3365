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
from pathlib import Path

import pytest

from a2video.training.checkpoint import load_checkpoint
from a2video.training.module import WarmupSchedule

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
