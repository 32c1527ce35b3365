"""``train.py test|validate|predict --ckpt_path X``: the command line and YAML win over the
checkpoint's saved hyper-parameters where that is safe (views, ``view_chunk``…), the saved values
fill in what was left at its default, and an architecture option that conflicts with the
checkpoint stops in one line naming both values. ``VideoClassifier.from_checkpoint`` applies the
same overlay (one function, one key list): both restore the same options."""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning.pytorch  # noqa: F401  (its log handler binds stderr now, not a test's capture)
import pytest
import torch
from test_entry_points import _train_main, _user_error

from a2video.data import KineticsDataModule
from a2video.training.cli import A2VideoCLI
from a2video.training.module import SGD_OPTIONS, VideoClassifier

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "configs" / "demo_kinetics.yaml")
TINY = [
    "--config", DEMO,
    "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false", "--trainer.num_sanity_val_steps", "0",
    "--data.frames", "4", "--data.stride", "3", "--data.train_scale", "[40, 40]",
    "--data.crop_size", "32", "--data.test_scale", "40", "--data.num_clips", "1",
    "--data.batch_size", "4", "--data.test_batch_size", "4", "--data.num_workers", "0",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(kinetics_root, tmp_path_factory) -> str:
    """A one-step checkpoint saved with 1 crop per clip and label smoothing 0.1."""
    run = tmp_path_factory.mktemp("override_run")
    A2VideoCLI(
        VideoClassifier,
        KineticsDataModule,
        args=[
            "fit", *TINY, "--data.data_root", kinetics_root,
            "--trainer.default_root_dir", str(run), "--trainer.max_steps", "1",
            "--trainer.limit_val_batches", "1", "--step_checkpoint.every_n_train_steps", "1",
            "--data.num_crops", "1", "--model.label_smoothing", "0.1",
        ],
    )  # fmt: skip
    return str(run / "checkpoints" / "last.ckpt")


@pytest.mark.parametrize("stage", ["test", "predict"])
def test_command_line_wins_over_saved_hparams(stage, trained, kinetics_root, tmp_path):
    cli = A2VideoCLI(
        VideoClassifier,
        KineticsDataModule,
        args=[
            stage, *TINY, "--data.data_root", kinetics_root, "--ckpt_path", trained,
            "--trainer.default_root_dir", str(tmp_path), "--trainer.limit_test_batches", "1",
            "--trainer.limit_predict_batches", "1",
            "--data.num_crops", "3", "--model.view_chunk", "2",
            "--model.write_outputs", "false",
        ],
    )  # fmt: skip
    hp = cli.model.hparams
    assert (hp.view_chunk, hp.write_outputs) == (2, False)  # given: kept
    assert cli.model.clip_spec.num_crops == 3  # the views: the data's, linked, never saved
    assert hp.label_smoothing == pytest.approx(0.1)  # left at its default: the checkpoint's
    assert hp.arch == "a2net_tiny"  # the demo config's, which is also the checkpoint's
    if stage == "test":
        assert cli.trainer.callback_metrics["test/videos"] > 0  # it ran with 3 crops a clip


@pytest.mark.parametrize("stage", ["test", "validate", "predict"])
@pytest.mark.parametrize("flag", ["--data.num_clips", "--data.num_crops", "--data.frames"])
def test_no_test_views_stop_in_one_line_naming_the_option(
    stage, flag, trained, kinetics_root, tmp_path, capsys
):
    """``--data.num_clips 0`` ended the test in "get_frames needs at least one index", naming no
    option, after the checkpoint and the first batch were read: the DataModule refuses it."""
    argv = [stage, *TINY, "--data.data_root", kinetics_root, "--ckpt_path", trained]
    argv += ["--trainer.default_root_dir", str(tmp_path), flag, "0"]
    line = _user_error(capsys, _train_main(), argv)
    assert line.startswith(f"train.py: error: {flag} 0: it must be >= 1"), line


@pytest.mark.parametrize(("views", "said"), [(["--data.num_crops", "3"], True), ([], False)])
def test_test_views_given_to_validate_are_said_not_used(
    views, said, trained, kinetics_root, tmp_path
):
    """``validate --data.num_clips 2 --data.num_crops 3`` scored one centre clip per video
    without a word: the numbers read as a multi-view result. Now one warning says the views are
    test's; ``--data.num_clips 1`` (TINY's, as a shared argument list gives it) says nothing."""
    args = ["validate", *TINY, "--data.data_root", kinetics_root, "--ckpt_path", trained]
    args += ["--trainer.default_root_dir", str(tmp_path), "--trainer.limit_val_batches", "1"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        A2VideoCLI(VideoClassifier, KineticsDataModule, args=[*args, *views])
    lines = [str(w.message) for w in caught if "a2video validate:" in str(w.message)]
    if not said:
        assert not lines, lines
        return
    assert len(lines) == 1 and lines[0].startswith("a2video validate: --data.num_crops 3 not used")
    assert "run test with the same arguments" in lines[0]


@pytest.mark.parametrize(
    ("option", "value", "saved"),
    [("arch", "a2net_r50", "'a2net_tiny'"), ("arch_options", '{"dropout": 0.3}', "{}")],
)
def test_conflicting_architecture_stops_in_one_line(
    option, value, saved, trained, kinetics_root, tmp_path, capsys
):
    argv = ["test", *TINY, "--data.data_root", kinetics_root, "--ckpt_path", trained]
    argv += ["--trainer.default_root_dir", str(tmp_path), f"--model.{option}", value]
    line = _user_error(capsys, _train_main(), argv)
    assert trained in line and f"checkpoint's {option} is {saved}" in line, line
    assert value.replace('"', "'") in line, line


@pytest.fixture(scope="module")
def trained_from_2d(trained, tmp_path_factory) -> str:
    """``trained`` as if its fit had started from 2-D weights at a path this host does not have."""
    ckpt = torch.load(trained, weights_only=True)
    ckpt["hyper_parameters"]["pretrained_2d"] = "/elsewhere/resnet50_imagenet.pth"
    path = tmp_path_factory.mktemp("from_2d") / "last.ckpt"
    torch.save(ckpt, path)
    return str(path)


def test_cli_and_from_checkpoint_restore_the_same_options(trained_from_2d, kinetics_root, tmp_path):
    """``--ckpt_path`` and ``VideoClassifier.from_checkpoint`` take the same saved options, the
    user's value (YAML, command line, keyword) wins in both, and neither restores the 2-D
    weights to inflate (the file holds every weight)."""
    user = tmp_path / "user.yaml"
    user.write_text("model:\n  view_chunk: 2\n")
    cli = A2VideoCLI(
        VideoClassifier,
        KineticsDataModule,
        args=[
            "validate", *TINY, "--config", str(user), "--data.data_root", kinetics_root,
            "--ckpt_path", trained_from_2d, "--trainer.default_root_dir", str(tmp_path),
            "--trainer.limit_val_batches", "1", "--model.write_outputs", "false",
        ],
    )  # fmt: skip
    direct = VideoClassifier.from_checkpoint(trained_from_2d, view_chunk=2, write_outputs=False)
    # (the CLI adds its private `_instantiator`; its --config names AdamW, which replaces the
    # built-in SGD's options by the optimizer used; the config's arch_options null stays as
    # written: it is the saved {})
    skipped = {"optimizer_used", "arch_options", *SGD_OPTIONS}
    from_cli = {k: v for k, v in cli.model.hparams.items() if not k.startswith("_")}
    assert {k: v for k, v in from_cli.items() if k not in skipped} == {
        k: v for k, v in direct.hparams.items() if k not in skipped
    }
    assert cli.model.arch_options == direct.arch_options == {}
    assert (from_cli["view_chunk"], from_cli["write_outputs"]) == (2, False)  # the user's
    assert from_cli["label_smoothing"] == pytest.approx(0.1)  # left unset: the checkpoint's
    assert from_cli["pretrained_2d"] is None  # never restored
    assert cli.model.class_names == direct.class_names == cli.datamodule.class_names
    assert cli.trainer.callback_metrics["val/videos"] > 0


def test_from_checkpoint_refuses_a_conflicting_architecture_in_one_line(trained):
    with pytest.raises(ValueError, match=r"checkpoint's arch is 'a2net_tiny' but 'a2net_r50'"):
        VideoClassifier.from_checkpoint(trained, arch="a2net_r50")
    assert VideoClassifier.from_checkpoint(trained, arch="a2net_tiny").arch == "a2net_tiny"


@pytest.mark.parametrize(
    ("given", "named"),
    [
        (["--model.lr", "0.05"], "set --model.optimizer.init_args.lr 0.05"),
        (["--model.lr", "0.1", "--model.momentum", "0.8"], "error: model.momentum 0.8: not used"),
    ],
)
def test_sgd_options_beside_an_injected_optimizer_stop_in_one_line(
    kinetics_root, tmp_path, capsys, given, named
):
    """The demo configs' AdamW takes its own lr: ``--model.lr 0.05`` (docs/training.md's
    override) was silently unused; a default value (``--model.lr 0.1``, or a run's saved
    config.yaml, which lists them all) is not refused. Without ``model.optimizer`` (the
    built-in SGD, the Kinetics config) it is the LR used."""
    argv = ["fit", *TINY, "--data.data_root", kinetics_root, "--trainer.max_steps", "1"]
    argv += ["--trainer.default_root_dir", str(tmp_path / "run")]
    line = _user_error(capsys, _train_main(), [*argv, *given])
    assert named in line and "model.optimizer torch.optim.AdamW takes its own" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("given", "named"),
    [
        (
            ["--optimizer", "torch.optim.SGD", "--optimizer.lr", "0.5"],
            "error: --optimizer torch.optim.SGD: Lightning's top-level optimizer replaces",
        ),
        (
            ["--lr_scheduler", "torch.optim.lr_scheduler.StepLR", "--lr_scheduler.step_size", "1"],
            "give --model.lr_scheduler torch.optim.lr_scheduler.StepLR (its settings as",
        ),
        (
            ["--model.lr_scheduler", "torch.optim.lr_scheduler.StepLR",
             "--model.lr_scheduler.step_size", "1"],
            "error: model.warmup_epochs 0.5: not used, model.lr_scheduler "
            "torch.optim.lr_scheduler.StepLR replaces the built-in schedule",
        ),
    ],
)  # fmt: skip
def test_optimisation_options_that_would_not_be_used_stop_in_one_line(
    kinetics_root, tmp_path, capsys, given, named
):
    """Lightning's top-level ``--optimizer`` replaced ``configure_optimizers`` whole: the demo
    config's AdamW, its warm-up and cosine, the parameter groups and the LR scaling were dropped
    with only Lightning's "will be overridden" warning. An injected ``model.lr_scheduler``
    silently left the config's ``warmup_epochs: 0.5`` unused."""
    argv = ["fit", *TINY, "--data.data_root", kinetics_root, "--trainer.max_steps", "1"]
    argv += ["--trainer.default_root_dir", str(tmp_path / "run")]
    line = _user_error(capsys, _train_main(), [*argv, *given])
    assert named in line
    assert not (tmp_path / "run").exists()


def test_saved_hparams_record_the_optimizer_used_not_the_unused_sgd_options(trained):
    """An AdamW run's hparams.yaml and checkpoint listed the built-in SGD's ``lr: 0.1`` and
    ``momentum: 0.9``, which it never used (TensorBoard's HPARAMS showed lr 0.1 for a 3e-3 run).
    They now hold the optimizer and the settings the run used; the SGD's stay where it is used."""
    saved = torch.load(trained, weights_only=True, map_location="cpu")["hyper_parameters"]
    assert not {"lr", "momentum", "weight_decay", "nesterov"} & set(saved), sorted(saved)
    used = saved["optimizer_used"]
    assert used["class_path"].endswith("AdamW") and used["init_args"]["lr"] == pytest.approx(3e-3)
    assert used["init_args"]["weight_decay"] == pytest.approx(1e-4)
    # not a constructor option: loading the checkpoint back does not pass it to the model
    assert VideoClassifier.load_from_checkpoint(trained).optimizer_fn is None
    sgd = VideoClassifier(arch="a2net_tiny", num_classes=4, lr=0.05)
    assert sgd.hparams["lr"] == 0.05 and "optimizer_used" not in sgd.hparams


def test_num_classes_given_as_a_model_option_names_where_it_comes_from(
    kinetics_root, tmp_path, capsys
):
    """jsonargparse answered ``--model.num_classes 5`` with "must be given via data.num_classes",
    an option that does not exist; on the command line or in a --config file, one line says
    the data sets it."""
    argv = ["fit", *TINY, "--data.data_root", kinetics_root, "--trainer.max_steps", "1"]
    argv += ["--trainer.default_root_dir", str(tmp_path / "run")]
    line = _user_error(capsys, _train_main(), [*argv, "--model.num_classes", "5"])
    assert "model.num_classes is not an option: the class count comes from the data" in line
    extra = tmp_path / "extra.yaml"
    extra.write_text("model:\n  num_classes: 5\n")
    line = _user_error(capsys, _train_main(), [*argv, "--config", str(extra)])
    assert "model.num_classes is not an option" in line and "data.num_classes" not in line


def test_print_config_with_a_checkpoint_shows_the_options_the_run_uses(
    trained, kinetics_root, tmp_path, capsys
):
    """``test --ckpt_path X --print_config`` printed the parser's defaults (``arch:
    a2net_r50``), not the checkpoint's options the run applies after parsing (a2net_tiny)."""
    import yaml

    argv = ["test", "--data.data_root", kinetics_root, "--ckpt_path", trained]
    argv += ["--trainer.default_root_dir", str(tmp_path), "--print_config"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        _train_main()(argv)
    assert stop.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["arch"] == "a2net_tiny" and printed["ckpt_path"] == trained
    assert printed["model"]["label_smoothing"] == pytest.approx(0.1)
