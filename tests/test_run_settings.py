"""What a run recorded reaches the next command, or the command says why not:

- ``train.py test --ckpt_path`` with other clip settings than the checkpoint was trained on
  runs as configured and warns, naming each setting and the flags that restore it;
- a checkpoint whose class list is the data's in another order (same count) stops in one line
  naming the first class that differs;
- ``finetune_ucf.py test --ckpt_path`` of a fold-2 fine-tune on fold 1 stops in one line (fold
  1's test list holds fold 2's training videos) naming ``--data.fold 2``; with it, it runs;
- ``--seed_everything N`` seeds the data (order, clips, augmentation) unless ``--data.seed`` is
  given, and the saved config records the value used;
- a run's saved ``config.yaml`` reproduces it from any folder: a resumed fit's has no
  ``ckpt_path`` (reused, it would resume the old run's last.ckpt, at its end by then), and the
  data and weights it names by a relative path are absolute there; rerun with another
  ``--trainer.default_root_dir``, its logs go there with its checkpoints;
- the ``Finetune`` callback inflates ImageNet kernels as the model's ``arch_options.inflate``
  says (the one setting of ``train.py``'s ``pretrained_2d`` and of ``--ckpt``).
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from test_entry_points import DEMO, DEMO_UCF, _finetune_main, _train_main, _user_error
from tiny_fit import TINY_CLIP, tiny_fit_args

ONE_STEP = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
            "--trainer.limit_val_batches", "0", "--data.num_workers", "0"]  # fmt: skip
QUIET = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
         "--data.num_workers", "0", "--trainer.limit_test_batches", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def kinetics_ckpt(kinetics_root, tmp_path_factory) -> Path:
    """``last.ckpt`` of a one-step tiny ``train.py fit`` (4 frames, stride 3, 32² crops)."""
    run = tmp_path_factory.mktemp("settings_run")
    _train_main()(tiny_fit_args(kinetics_root, run, *ONE_STEP))
    return run / "checkpoints" / "last.ckpt"


def _test_args(data_root: str, run: Path, ckpt: Path, *extra: str) -> list[str]:
    return ["test", "--config", DEMO, "--data.data_root", data_root,
            "--trainer.default_root_dir", str(run), *QUIET, *TINY_CLIP,
            "--ckpt_path", str(ckpt), *extra]  # fmt: skip


def _clip_warnings(run) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    return [str(w.message) for w in caught if "was trained on clips with" in str(w.message)]


def test_testing_on_other_clips_than_trained_warns_with_the_flags(
    kinetics_ckpt, kinetics_root, tmp_path
):
    other = _test_args(kinetics_root, tmp_path / "a", kinetics_ckpt,
                       "--data.stride", "2", "--data.crop_size", "24")  # fmt: skip
    (said,) = _clip_warnings(lambda: _train_main()(other))
    assert f"{kinetics_ckpt} was trained on clips with stride=3, crop_size=32; " in said, said
    assert "this test uses stride=2, crop_size=24 (as configured); " in said, said
    assert "--data.stride 3 --data.crop_size 32 gives it the clips it was trained on" in said

    same = _test_args(kinetics_root, tmp_path / "b", kinetics_ckpt)
    assert _clip_warnings(lambda: _train_main()(same)) == []


def test_a_clip_too_small_for_the_arch_stops_in_one_line(
    kinetics_ckpt, kinetics_root, tmp_path, capsys
):
    """``--data.frames 1`` through a2net_tiny's temporal pooling: torch's traceback at the first
    batch, after the run folder was made; now one line before the run."""
    run = tmp_path / "r"
    argv = _test_args(kinetics_root, run, kinetics_ckpt, "--data.frames", "1")
    line = _user_error(capsys, _train_main(), argv)
    assert line.startswith("train.py: error: --data.frames 1, --data.crop_size 32: a clip of 1")
    assert "too small for a2net_tiny" in line
    assert line.endswith("pass --data.frames 2 --data.crop_size 32 or more")
    assert not run.exists()


def test_a_class_list_in_another_order_stops_in_one_line(
    kinetics_ckpt, kinetics_root, tmp_path, capsys
):
    ckpt = torch.load(kinetics_ckpt, weights_only=True)
    names = list(ckpt["a2video"]["class_names"])
    swapped = [names[1], names[0], *names[2:]]
    ckpt["a2video"]["class_names"] = ckpt["hyper_parameters"]["class_names"] = swapped
    path = tmp_path / "swapped.ckpt"
    torch.save(ckpt, path)
    line = _user_error(capsys, _train_main(), _test_args(kinetics_root, tmp_path / "r", path))
    assert line.startswith(f"train.py: error: {path}: the checkpoint's classes are not the data's")
    assert f"(2 of {len(names)} differ, e.g. class 0 is {names[1]!r} there and {names[0]!r}" in line


def test_a_fold_2_finetune_tested_on_fold_1_stops_naming_the_fold(ucf_root, tmp_path, capsys):
    run = tmp_path / "fold2"
    ucf = ["--config", DEMO_UCF, "--data.data_root", ucf_root, *TINY_CLIP,
           "--trainer.default_root_dir", str(run)]  # fmt: skip
    fit = ["fit", *ucf, *ONE_STEP, "--data.fold", "2", "--test_after_fit", "false",
           "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]  # fmt: skip
    _finetune_main(fit)
    last = run / "checkpoints" / "last.ckpt"
    test = ["test", *ucf, *QUIET, "--ckpt_path", str(last)]  # the config says fold 1
    line = _user_error(capsys, _finetune_main, test)
    assert line.startswith(f"finetune_ucf.py: error: {last}: it was fine-tuned on UCF-101 fold 2")
    assert line.endswith(
        "whose test list holds videos of fold 2's training list; pass --data.fold 2."
    )
    _finetune_main([*test, "--data.fold", "2"])  # runs
    assert any(run.rglob("predictions.csv"))


@pytest.mark.parametrize(
    ("extra", "seed"),
    [([], 0), (["--seed_everything", "7"], 7), (["--seed_everything", "7", "--data.seed", "3"], 3)],
)
def test_seed_everything_seeds_the_data_unless_data_seed_is_given(
    extra, seed, kinetics_root, tmp_path
):
    from a2video.data import KineticsDataModule
    from a2video.training.cli import A2VideoCLI
    from a2video.training.module import VideoClassifier

    args = ["--config", DEMO, "--data.data_root", kinetics_root, *extra]
    args += ["--trainer.default_root_dir", str(tmp_path)]
    cli = A2VideoCLI(VideoClassifier, KineticsDataModule, run=False, args=args)
    assert cli.datamodule.seed == seed
    assert cli.config.data.seed == seed  # what the saved config.yaml records


def test_the_finetune_callback_inflates_as_the_models_arch_options_say(tmp_path):
    from torchvision.models import resnet50

    from a2video.training.finetune import Finetune
    from a2video.training.module import VideoClassifier

    path = tmp_path / "resnet50.pth"
    torch.save(resnet50(weights=None).state_dict(), path)
    stem = {}
    for how in ("mean", "center"):
        module = VideoClassifier(arch="i3d_r50", num_classes=3, arch_options={"inflate": how})
        Finetune(pretrained=str(path)).freeze_before_training(module)
        stem[how] = module.net.conv1.weight.detach()  # (64, 3, 5, 7, 7) from a 7×7 kernel
    centre = stem["center"].shape[2] // 2
    assert stem["center"].sum(dim=(0, 1, 3, 4)).count_nonzero() == 1  # the centre frame only
    assert stem["center"][:, :, centre].abs().sum() > 0
    torch.testing.assert_close(stem["mean"][:, :, 0], stem["center"][:, :, centre] / 5)


def test_a_resumed_fits_saved_config_starts_the_run_from_any_folder(
    kinetics_ckpt, kinetics_root, tmp_path, monkeypatch
):
    """``fit --ckpt_path last`` wrote ``ckpt_path: <run>/checkpoints/last.ckpt`` into the run's
    config.yaml: ``fit --config config.yaml --trainer.default_root_dir NEW`` then resumed the
    old run's final checkpoint (training nothing) instead of training the run; and the relative
    ``--data.data_root`` it was given stopped it in any other working directory. The settings
    the run started with (``max_epochs`` 1) are kept beside it: the resume wrote over them."""
    run = tmp_path / "run"
    shutil.copytree(kinetics_ckpt.parent.parent, run)  # the fixture's one-step run, resumed
    earlier = (run / "config.yaml").read_bytes()
    monkeypatch.chdir(tmp_path)
    data_root = os.path.relpath(kinetics_root)
    _train_main()(
        tiny_fit_args(data_root, Path("run"), *ONE_STEP, "--trainer.max_epochs", "2",
                      "--ckpt_path", "last")
    )  # fmt: skip
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["ckpt_path"] is None
    assert saved["data"]["data_root"] == os.path.abspath(kinetics_root)
    assert saved["trainer"]["max_epochs"] == 2
    assert (run / "config-before-resume.yaml").read_bytes() == earlier


def test_a_resume_with_the_runs_own_settings_keeps_its_config_as_it_was(kinetics_root, tmp_path):
    """``fit --ckpt_path last`` with the very arguments the run started with: its config.yaml
    stays byte for byte and no config-before-resume.yaml appears. Before, the checkpoint's
    ``arch_options: {}`` was written over the config's ``null``, so every resume said its
    settings differed and kept a copy of identical ones."""
    args = tiny_fit_args(kinetics_root, tmp_path, *ONE_STEP)
    _train_main()(args)
    earlier = (tmp_path / "config.yaml").read_bytes()
    _train_main()([*args, "--ckpt_path", "last"])
    assert sorted(p.name for p in tmp_path.glob("config*.yaml")) == ["config.yaml"]
    assert (tmp_path / "config.yaml").read_bytes() == earlier


def test_a_saved_config_rerun_in_another_folder_logs_there(kinetics_root, tmp_path, caplog):
    """``fit --config runs/a/.../config.yaml --trainer.default_root_dir runs/b``: the saved
    config names its TensorBoard logger with ``save_dir runs/a``, which followed the new folder
    only for the checkpoints: run b logged into ``runs/a/lightning_logs/version_1``, beside run
    a's logs. Now the logs go to ``runs/b/lightning_logs/version_0`` too, one line says so, and a
    ``save_dir`` typed on the command line is kept."""
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    tensorboard = ["--trainer.logger", "lightning.pytorch.loggers.TensorBoardLogger"]
    _train_main()(tiny_fit_args(kinetics_root, a, *ONE_STEP, *tensorboard,
                                "--trainer.logger.save_dir", str(a)))  # fmt: skip

    def save_dir(run: Path) -> str:
        saved = yaml.safe_load((run / "lightning_logs" / "version_0" / "config.yaml").read_text())
        return saved["trainer"]["logger"]["init_args"]["save_dir"]

    config = a / "lightning_logs" / "version_0" / "config.yaml"
    assert save_dir(a) == str(a)
    with caplog.at_level("INFO"):
        _train_main()(["fit", "--config", str(config), "--trainer.default_root_dir", str(b)])
    assert sorted(p.name for p in (a / "lightning_logs").iterdir()) == ["version_0"]
    assert any((b / "lightning_logs" / "version_0").glob("events.out.tfevents.*"))
    assert (b / "checkpoints" / "last.ckpt").is_file()
    said = [r.getMessage() for r in caplog.records if "the logs follow" in r.getMessage()]
    assert said == [
        f"a2video: the logs follow trainer.default_root_dir {b} (the config file's is {a}): "
        f"logger save_dir {a} -> {b}; give --trainer.logger.save_dir {a} on the command line "
        "to log there instead"
    ], said
    assert save_dir(b) == str(b)  # what a rerun of run b's config uses

    _train_main()(["fit", "--config", str(config), "--trainer.default_root_dir", str(c),
                   "--trainer.logger.save_dir", str(a)])  # fmt: skip
    assert sorted(p.name for p in (a / "lightning_logs").iterdir()) == ["version_0", "version_1"]
    assert (c / "checkpoints" / "last.ckpt").is_file() and not (c / "lightning_logs").exists()


def test_the_finetune_callback_refuses_an_inflate_that_disagrees_with_the_models(tmp_path):
    """``finetune.inflate center`` beside ``arch_options.inflate: mean`` inflated the kernels by
    the centre frame while the model (hparams, checkpoint) recorded mean: two settings, one
    concept; both given and different now stops before the weights are read."""
    from a2video.training.finetune import Finetune, FinetuneError
    from a2video.training.module import VideoClassifier

    module = VideoClassifier(arch="a2net_tiny", num_classes=3, arch_options={"inflate": "mean"})
    finetune = Finetune(pretrained=str(tmp_path / "never_read.pth"), inflate="center")
    with pytest.raises(FinetuneError, match=r"finetune\.inflate center and model\.arch_options"):
        finetune.freeze_before_training(module)
