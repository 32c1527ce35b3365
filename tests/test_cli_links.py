"""Settings given once and linked, through the config a user writes (``train.py`` /
``finetune_ucf.py``): the injected optimizer, and the test views (``data.spec`` → the model).

Specifications:
- an injected AdamW keeps its own ``weight_decay`` on conv/linear weights; only BatchNorm and
  bias groups get 0;
- ``lr_base_batch_size`` scales the LR the injected optimizer actually uses; an injected
  ``lr_scheduler`` (Lightning's ``LRSchedulerCallable``) drives that optimizer;
- fine-tuning's ``backbone_lr_mult`` is a group option: the backbone groups get the scaled LR and
  keep the optimizer's decay;
- the single-clip accuracy reads the centre clip's centre crop for any ``num_clips × num_crops``
  of the data (6×1 → view 3, not the old ``6 % 3 == 0`` guess's view 4);
- the views travel once in the checkpoint, typed, and older checkpoints (a dict with ``size``)
  still load.
"""

from __future__ import annotations

import pytest
import torch
import yaml

from a2video.data import KineticsDataModule, UCF101DataModule
from a2video.training.cli import A2VideoCLI
from a2video.training.finetune import FinetuneCLI
from a2video.training.module import VideoClassifier

DATA = {
    "frames": 4, "stride": 2, "train_scale": [40, 48], "crop_size": 32, "test_scale": 40,
    "num_clips": 1, "num_crops": 1, "batch_size": 4, "test_batch_size": 2, "num_workers": 0,
}  # fmt: skip
ONE_STEP = [
    "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0",
    "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
    "--trainer.logger", "false", "--trainer.enable_model_summary", "false",
    "--checkpoint.monitor", "null", "--step_checkpoint.every_n_train_steps", "0",
]  # fmt: skip
ADAMW = {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.003, "weight_decay": 0.05}}


def _config(tmp_path, root: str, **model) -> str:
    cfg = {
        "model": {"arch": "a2net_tiny", "optimizer": ADAMW, "scheduler": "constant", **model},
        "data": {"data_root": root, **DATA},
        "trainer": {"default_root_dir": str(tmp_path / "run"), "accelerator": "cpu"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _groups(cli) -> dict[str, dict]:
    return {g["name"]: g for g in cli.trainer.optimizers[0].param_groups}


@pytest.mark.timeout(120)
def test_adamw_keeps_its_decay_and_uses_the_scaled_lr(kinetics_root, tmp_path):
    config = _config(tmp_path, kinetics_root, lr_base_batch_size=8)
    cli = A2VideoCLI(
        VideoClassifier, KineticsDataModule, args=["fit", "--config", config, *ONE_STEP]
    )
    groups = _groups(cli)
    assert type(cli.trainer.optimizers[0]).__name__ == "AdamW"
    assert groups["decay"]["weight_decay"] == 0.05  # AdamW's, not the module's default 1e-4
    # (a model.weight_decay set beside it stops the fit: tests/test_overrides.py)
    assert groups["no_decay"]["weight_decay"] == 0.0
    # global batch 4 = half the base batch 8: the optimizer's 0.003 becomes 0.0015
    assert groups["decay"]["lr"] == pytest.approx(0.0015)
    assert groups["no_decay"]["lr"] == pytest.approx(0.0015)


@pytest.mark.timeout(120)
def test_an_injected_scheduler_drives_the_optimizer(kinetics_root, tmp_path):
    step_lr = {"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 1}}
    config = _config(tmp_path, kinetics_root, lr_scheduler=step_lr, scheduler="cosine")
    args = ["fit", "--config", config, *ONE_STEP]
    cli = A2VideoCLI(VideoClassifier, KineticsDataModule, args=args)
    (scheduler,) = cli.trainer.lr_scheduler_configs
    assert type(scheduler.scheduler).__name__ == "StepLR" and scheduler.interval == "epoch"
    assert scheduler.scheduler.optimizer is cli.trainer.optimizers[0]
    assert _groups(cli)["decay"]["weight_decay"] == 0.05


@pytest.mark.timeout(120)
def test_backbone_lr_mult_groups_keep_the_optimizer_decay(ucf_root, tmp_path):
    config = _config(tmp_path, ucf_root, backbone_lr_mult=0.1, lr_base_batch_size=8)
    args = ["fit", "--config", config, "--test_after_fit", "false", *ONE_STEP]
    cli = FinetuneCLI(VideoClassifier, UCF101DataModule, args=args)
    groups = _groups(cli)
    assert list(groups) == ["backbone", "backbone_no_decay", "head", "head_no_decay"]
    assert groups["backbone"]["weight_decay"] == groups["head"]["weight_decay"] == 0.05
    assert (
        groups["backbone_no_decay"]["weight_decay"] == groups["head_no_decay"]["weight_decay"] == 0
    )
    assert groups["head"]["lr"] == pytest.approx(0.0015)  # 0.003 × 4/8
    assert groups["backbone"]["lr"] == pytest.approx(0.00015)  # × 0.1


@pytest.mark.parametrize(
    ("clips", "crops", "centre"), [(6, 1, 3), (5, 3, 7), (10, 3, 16), (1, 1, 0)]
)
def test_single_clip_accuracy_reads_the_centre_view(kinetics_root, tmp_path, clips, crops, centre):
    config = _config(tmp_path, kinetics_root)
    args = ["--config", config, "--data.num_clips", str(clips), "--data.num_crops", str(crops)]
    cli = A2VideoCLI(VideoClassifier, KineticsDataModule, run=False, args=args)
    model = cli.model.eval()
    assert model.clip_spec is cli.datamodule.spec  # linked, not restated
    views = clips * crops
    video = torch.randn(2, views, 3, 4, 32, 32)  # (B, V, 3, T, H, W), clip-major views
    mean, single = model._view_probs(video)
    with torch.no_grad():
        expected = model(video[:, centre]).softmax(1)
    torch.testing.assert_close(single, expected, atol=1e-5, rtol=1e-5)
    assert mean.shape == single.shape == (2, cli.datamodule.num_classes)


def test_views_travel_once_in_the_checkpoint_and_old_dicts_still_load(tmp_path):
    from lightning.pytorch import Trainer

    from a2video.data import ClipSpec

    spec = ClipSpec(frames=4, stride=2, train_scale=(40, 48), crop_size=32, test_scale=40,
                    num_clips=6, num_crops=1)  # fmt: skip
    model = VideoClassifier(arch="a2net_tiny", num_classes=3, clip_spec=spec)
    trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    trainer.strategy.connect(model)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["a2video"]["clip_spec"] == spec.as_dict()
    assert "clip_spec" not in ckpt["hyper_parameters"] and "size" not in spec.as_dict()
    assert VideoClassifier.from_checkpoint(path).clip_spec == spec

    old = dict(spec.as_dict(), size=32)  # an older checkpoint: a dict with a duplicate size
    del old["crop_size"]
    ckpt["a2video"]["clip_spec"] = old
    torch.save(ckpt, path)
    restored = VideoClassifier.from_checkpoint(path)
    assert restored.clip_spec == spec and restored._view_layout(6) == (1, 3)


@pytest.mark.timeout(120)
def test_an_older_checkpoint_still_evaluates_through_the_cli(kinetics_root, tmp_path):
    """Written before the link: ``test_crops`` in its hyper-parameters, a dict with ``size``."""
    from lightning.pytorch import Trainer

    model = VideoClassifier(arch="a2net_tiny", num_classes=4)
    trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    trainer.strategy.connect(model)
    path = tmp_path / "old.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"]["test_crops"] = 3
    ckpt["a2video"]["clip_spec"] = {"frames": 4, "stride": 2, "size": 32, "num_clips": 1}
    torch.save(ckpt, path)

    config = _config(tmp_path, kinetics_root)
    args = ["test", "--config", config, "--ckpt_path", str(path), *ONE_STEP]
    args += ["--trainer.limit_test_batches", "1"]
    cli = A2VideoCLI(VideoClassifier, KineticsDataModule, args=args)
    assert cli.model.clip_spec is cli.datamodule.spec  # the data's views, not the old dict
    assert cli.trainer.callback_metrics["test/videos"] > 0
