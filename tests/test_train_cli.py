"""``train.py fit`` through the CLI: the demo config learns the synthetic Kinetics fixture, and a
W&B logger works offline without network.

Both runs use 1 intra-op thread: on two cores shared with other processes, 2 OpenMP threads make
the tiny nets ~10× slower (measured: 0.65 s against 0.055 s per step under a load of 7).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback
from tiny_fit import TINY_CLIP

from a2video.data import KineticsDataModule
from a2video.training.cli import A2VideoCLI
from a2video.training.module import VideoClassifier

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo_kinetics.yaml"

# configs/demo_kinetics.yaml at test size: 4 frames of 32², a single val view, no flip; Adam
# instead of the demo's SGD (which needs more steps than a test can afford).
TINY = [
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--trainer.num_sanity_val_steps", "0",
    *TINY_CLIP,
    "--data.flip", "false",
    "--data.batch_size", "4",
    "--data.num_workers", "0",
    "--step_checkpoint.every_n_train_steps", "0",
]  # fmt: skip
ADAM = [
    "--model.optimizer", '{"class_path": "torch.optim.Adam", "init_args": {"lr": 0.003}}',
    "--model.scheduler", "constant",
    "--model.warmup_epochs", "0",
]  # fmt: skip


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class EpochLoss(Callback):
    """Mean training loss of each epoch."""

    def __init__(self) -> None:
        self.epochs: list[list[float]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epochs.append([])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.epochs[-1].append(float(outputs["loss"]))

    @property
    def means(self) -> list[float]:
        return [sum(e) / len(e) for e in self.epochs if e]


def test_train_py_fit_learns_the_synthetic_kinetics(kinetics_root, tmp_path, one_thread) -> None:
    """32 epochs of 3 steps (11 training videos, 4 classes): validated on the training videos'
    centre clips (``val_split train``: the fixture's 4 held-out videos are too few to generalise
    to from 11), the net fits them far above chance (measured 0.82-0.91 over seeds; chance 0.25),
    and the epoch loss falls to under half its first value. A broken label path, optimizer or
    schedule stays near chance and fails."""
    epochs = 32
    recorder = EpochLoss()
    cli = A2VideoCLI(
        VideoClassifier,
        KineticsDataModule,
        trainer_defaults={"callbacks": [recorder]},
        args=[
            "fit",
            "--config", str(DEMO),
            "--data.data_root", kinetics_root,
            "--data.val_split", "train",
            "--trainer.default_root_dir", str(tmp_path / "run"),
            "--trainer.logger", "false",
            "--trainer.max_epochs", str(epochs),
            "--trainer.check_val_every_n_epoch", str(epochs),
            *TINY,
            *ADAM,
        ],
    )  # fmt: skip
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    assert cli.model.num_classes == 4
    assert metrics["val/videos"] == 11
    assert metrics["val/top1"] >= 0.7, metrics  # chance: 0.25
    losses = recorder.means
    assert len(losses) == epochs
    assert sum(losses[-4:]) / 4 < 0.5 * losses[0], losses
    best = list((tmp_path / "run" / "checkpoints").glob("best-*.ckpt"))
    assert len(best) == 1 and (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_wandb_logger_writes_an_offline_run(kinetics_root, tmp_path) -> None:
    """``python train.py fit`` with a WandbLogger and ``WANDB_MODE=offline``: no network, and the
    run directory ``offline-run-*`` is written under the logger's save_dir with its files."""
    import wandb  # noqa: F401  (a dev dependency: imported, never skipped)

    env = dict(os.environ, WANDB_MODE="offline", WANDB_DIR=str(tmp_path / "wandb_dir"))
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", WANDB_SILENT="true")
    env.pop("WANDB_API_KEY", None)
    (tmp_path / "wandb_dir").mkdir()
    cmd = [
        sys.executable, str(ROOT / "train.py"), "fit",
        "--config", str(DEMO),
        "--data.data_root", kinetics_root,
        "--trainer.default_root_dir", str(tmp_path / "run"),
        "--trainer.logger", "lightning.pytorch.loggers.WandbLogger",
        "--trainer.logger.project", "a2video-test",
        "--trainer.logger.save_dir", str(tmp_path / "wandb_logs"),
        "--trainer.max_steps", "3",
        "--trainer.log_every_n_steps", "1",
        "--trainer.limit_val_batches", "1",
        *TINY,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = sorted(tmp_path.rglob("offline-run-*"))
    assert runs, f"no offline-run-* under {tmp_path}: {sorted(tmp_path.rglob('*'))[:50]}"
    run = runs[0]
    assert run.is_relative_to(tmp_path / "wandb_logs"), run  # the logger's save_dir
    files = [p for p in run.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" and p.stat().st_size > 0 for p in files), files
    assert any(p.name == "config.yaml" for p in files) or len(files) >= 2, files


def test_the_progress_bar_shows_the_run_version_as_an_integer(tmp_path) -> None:
    """Lightning's rich bar formats every number with ``.3f``: ``v_num: 0.000`` on every run's
    bar. The CLI's bar shows the logger's version as it is."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.loggers import CSVLogger

    from a2video.training.callbacks import VersionedRichProgressBar

    bar = VersionedRichProgressBar()
    trainer = Trainer(logger=CSVLogger(tmp_path), callbacks=[bar], accelerator="cpu")
    assert bar.get_metrics(trainer, None)["v_num"] == "0"
