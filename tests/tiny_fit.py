"""Arguments of the tests' tiny CLI runs: the clip settings, and a two-epoch fit of the demo net."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Clips of 4 frames of 32², one test view: the clip settings of every tiny CLI run in the tests.
TINY_CLIP = [
    "--data.frames", "4",
    "--data.stride", "3",
    "--data.train_scale", "[40, 40]",
    "--data.crop_size", "32",
    "--data.test_scale", "40",
    "--data.num_clips", "1",
    "--data.num_crops", "1",
]  # fmt: skip


def tiny_fit_args(data_root: str, run_dir: Path, *extra: str) -> list[str]:
    """``fit`` on ``configs/demo_kinetics.yaml`` for 2 epochs of 4×32² clips, batch 4, one
    validation batch at the end, no logger or step checkpoints; ``extra`` is appended."""
    return [
        "fit",
        "--config", str(ROOT / "configs" / "demo_kinetics.yaml"),
        "--data.data_root", data_root,
        "--trainer.default_root_dir", str(run_dir),
        "--trainer.logger", "false",
        "--trainer.max_epochs", "2",
        "--trainer.enable_progress_bar", "false",
        "--trainer.num_sanity_val_steps", "0",
        "--trainer.check_val_every_n_epoch", "2",
        "--trainer.limit_val_batches", "1",
        *TINY_CLIP,
        "--data.batch_size", "4",
        "--step_checkpoint.every_n_train_steps", "0",
        *extra,
    ]  # fmt: skip
