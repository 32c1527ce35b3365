"""Transfer to UCF-101 (paper Table 6): loading pretrained weights, fine-tuning options, folds.

Specifications:
- a checkpoint written by ``train.py`` loads with every backbone and A²-block tensor matched and
  only the head re-initialised;
- PyTorchVideo ``slow_r50`` weights and a torchvision ResNet-50 load the same way (A²-blocks of
  ``a2net_r50`` stay at their identity initialisation, reported as missing);
- a bad checkpoint (wrong arch, truncated, not a checkpoint) is a one-line error naming the file;
- ``frozen_bn`` keeps BatchNorm running statistics through a training epoch, ``freeze_stages``
  keeps the first stages' weights, ``backbone_lr_mult`` scales the backbone's learning rate;
- ``--folds all`` runs folds 1, 2, 3 and reports the three results and their mean.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback
from torch import nn

from a2video.models import build_model
from a2video.training.checkpoint import CheckpointError
from a2video.training.finetune import (
    Finetune,
    FinetuneError,
    load_pretrained,
    parse_folds,
    run_folds,
)
from a2video.training.module import VideoClassifier, param_groups

CLIP = [
    "--data.frames", "4", "--data.stride", "2", "--data.train_scale", "[40, 48]",
    "--data.crop_size", "32", "--data.test_scale", "40", "--data.num_clips", "3",
    "--data.num_crops", "3", "--data.batch_size", "4", "--data.test_batch_size", "2",
    "--data.num_workers", "0",
]  # fmt: skip
QUIET = [
    "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
    "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
    "--trainer.enable_model_summary", "false", "--checkpoint.monitor", "null",
]  # fmt: skip


@pytest.fixture(scope="module")
def train_ckpt(kinetics_root, tmp_path_factory) -> str:
    """``last.ckpt`` of a 3-step ``train.py fit`` of ``a2net_tiny`` on synthetic Kinetics."""
    from a2video.data import KineticsDataModule
    from a2video.training.cli import A2VideoCLI
    from a2video.training.module import VideoClassifier

    run = tmp_path_factory.mktemp("kinetics_run")
    args = ["fit", "--model.arch", "a2net_tiny", "--data.data_root", kinetics_root]
    args += ["--trainer.default_root_dir", str(run), "--trainer.max_steps", "3"]
    A2VideoCLI(VideoClassifier, KineticsDataModule, args=args + CLIP + QUIET)  # = train.py
    path = run / "checkpoints" / "last.ckpt"
    assert path.is_file()
    return str(path)


def _one_line_naming(err: BaseException, path) -> None:
    msg = str(err)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg


# --------------------------------------------------------------------------- loading
def test_train_checkpoint_loads_every_backbone_and_a2_tensor(train_ckpt):
    ckpt = torch.load(train_ckpt, weights_only=True)
    net = build_model("a2net_tiny", num_classes=7)
    report = load_pretrained(net, train_ckpt)

    non_head = [k for k in net.state_dict() if not k.startswith("fc.")]
    assert sorted(report.loaded) == sorted(non_head)
    assert any(".attn." in k for k in report.loaded)
    assert report.reinitialized == ["fc.weight", "fc.bias"]
    assert report.skipped == [] and report.missing == []
    assert report.kind == "a2video" and report.source_arch == "a2net_tiny"
    assert report.counts()["loaded_attention"] == sum(".attn." in k for k in non_head)
    for key in non_head:
        torch.testing.assert_close(net.state_dict()[key], ckpt["state_dict"][f"net.{key}"])
    assert net.fc.out_features == 7
    assert "reinitialized 2: fc.weight, fc.bias" in report.summary()


def test_same_class_count_still_gets_a_new_head(train_ckpt):
    net = build_model("a2net_tiny", num_classes=4)  # the Kinetics fixture has 4 classes too
    report = load_pretrained(net, train_ckpt)
    assert report.reinitialized == ["fc.weight", "fc.bias"]
    assert float(net.fc.bias.detach().abs().sum()) == 0.0  # freshly initialised


def test_pytorchvideo_state_dict_loads(tmp_path):
    import pytorchvideo.models.hub as hub  # a dev dependency: imported, never skipped

    ptv = hub.slow_r50(pretrained=False)
    path = tmp_path / "SLOW_8x8_R50.pyth"
    torch.save({"model_state": ptv.state_dict()}, path)  # the zoo's .pyth layout

    net = build_model("slow_r50", num_classes=101)
    report = load_pretrained(net, path)
    assert report.kind == "pytorchvideo"
    assert report.reinitialized == ["fc.weight", "fc.bias"]
    assert report.missing == [] and report.skipped == []
    assert len(report.loaded) == len(net.state_dict()) - 2
    torch.testing.assert_close(
        net.state_dict()["layer3.2.conv2.weight"],
        ptv.state_dict()["blocks.3.res_blocks.2.branch2.conv_b.weight"],
    )


def test_imagenet_resnet50_inflates_into_a2net_r50_with_identity_blocks(tmp_path):
    from torchvision.models import resnet50

    path = tmp_path / "resnet50.pth"
    torch.save(resnet50(weights=None).state_dict(), path)
    net = build_model("a2net_r50", num_classes=101)
    report = load_pretrained(net, path)
    assert report.kind == "imagenet"
    assert report.reinitialized == ["fc.weight", "fc.bias"]
    assert report.missing and all(".attn." in k for k in report.missing)
    assert report.counts()["loaded_backbone"] == len(report.loaded)
    assert net.state_dict()["conv1.weight"].shape[2] == 5  # 7×7 kernel inflated over 5 frames


def test_wrong_arch_is_a_one_line_error_naming_the_file(train_ckpt):
    with pytest.raises(FinetuneError, match="wrong arch") as err:
        load_pretrained(build_model("i3d_tiny", num_classes=4), train_ckpt)
    _one_line_naming(err.value, train_ckpt)
    assert "--model.arch a2net_tiny" in str(err.value)


def test_shape_mismatch_outside_the_head_is_an_error_not_a_reinit(train_ckpt, tmp_path):
    ckpt = torch.load(train_ckpt, weights_only=True)
    sd = {k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    sd["layer2.0.attn.qkv.weight"] = sd["layer2.0.attn.qkv.weight"][:-1]  # other attn width
    path = tmp_path / "bare_state_dict.pt"
    torch.save(sd, path)
    with pytest.raises(FinetuneError, match="differ in shape") as err:
        load_pretrained(build_model("a2net_tiny", num_classes=4), path)
    _one_line_naming(err.value, path)
    assert "layer2.0.attn.qkv.weight" in str(err.value)


@pytest.mark.parametrize("kind", ["truncated", "text", "tensor_soup", "empty"])
def test_bad_checkpoint_is_a_one_line_error_naming_the_file(train_ckpt, tmp_path, kind):
    path = tmp_path / f"{kind}.ckpt"
    if kind == "truncated":
        data = Path(train_ckpt).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        path.write_text("<html>404 Not Found</html>\n")
    elif kind == "tensor_soup":
        torch.save({"weights": {"a": torch.zeros(3)}}, path)
    else:
        path.write_bytes(b"")
    with pytest.raises((CheckpointError, FinetuneError)) as err:
        load_pretrained(build_model("a2net_tiny", num_classes=4), path)
    _one_line_naming(err.value, path)


def test_cli_reports_a_bad_checkpoint_in_one_line(ucf_root, tmp_path, capsys):
    from a2video.training.finetune import main

    bad = tmp_path / "not_a_checkpoint.ckpt"
    bad.write_text("hello")
    args = ["fit", "--model.arch", "a2net_tiny", "--data.data_root", ucf_root, "--ckpt", str(bad)]
    args += ["--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.max_steps", "1"]
    with pytest.raises(SystemExit) as exit_info:
        main(args + CLIP + QUIET)
    assert exit_info.value.code == 2
    err_lines = [ln for ln in capsys.readouterr().err.splitlines() if "finetune_ucf" in ln]
    assert len(err_lines) == 1 and str(bad) in err_lines[0]


@pytest.mark.parametrize("subcommand", ["test", "validate", "predict"])
def test_ckpt_in_an_evaluation_is_one_line_naming_ckpt_path(
    subcommand, train_ckpt, ucf_root, tmp_path, capsys
):
    """``finetune_ucf.py test --ckpt FILE``: --ckpt is the weights a fit starts from and was not
    read; the user believed FILE was tested. Before, the line only said that no --ckpt_path was
    given (and beside --ckpt_path, --ckpt went unread without a word)."""
    from a2video.training.finetune import main

    base = [subcommand, "--model.arch", "a2net_tiny", "--data.data_root", ucf_root]
    base += ["--trainer.default_root_dir", str(tmp_path / "run"), *CLIP, *QUIET]
    other = tmp_path / "other.ckpt"
    other.write_bytes(b"never read")
    for extra, said in (
        ([], f"not read by {subcommand}, which evaluates a checkpoint given as --ckpt_path: "
             f"pass --ckpt_path {other}"),
        (["--ckpt_path", train_ckpt],
         f"not read by {subcommand}, which evaluates --ckpt_path {train_ckpt}; leave --ckpt out"),
    ):  # fmt: skip
        capsys.readouterr()
        with pytest.raises(SystemExit) as stop:
            main([*base, "--ckpt", str(other), *extra])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"finetune_ucf.py: error: --ckpt {other}: ") and said in err, err


def test_a_runs_saved_ckpt_does_not_stop_its_test(train_ckpt, ucf_root, tmp_path, capsys):
    """A run's saved config.yaml records the --ckpt its fit started from: ``test --config
    config.yaml --ckpt_path X`` still reads X (here a Kinetics checkpoint, whose classes are then
    refused: X is what was read); without --ckpt_path the line names the config's ckpt."""
    from a2video.training.finetune import main

    config = tmp_path / "config.yaml"
    config.write_text(f"ckpt: {train_ckpt}\n")
    base = ["test", "--config", str(config), "--model.arch", "a2net_tiny"]
    base += ["--data.data_root", ucf_root, *CLIP, *QUIET]
    base += ["--trainer.default_root_dir", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as stop:
        main(base)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"ckpt (from --config) {train_ckpt}: " in err, err
    assert f"pass --ckpt_path {train_ckpt}" in err
    with pytest.raises(SystemExit):
        main([*base, "--ckpt_path", train_ckpt])
    err = capsys.readouterr().err
    assert f"error: {train_ckpt}: the checkpoint's classes are not the data's" in err, err


# --------------------------------------------------------------------------- fine-tuning options
def _bn_stats(net: nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.clone()
        for k, v in net.state_dict().items()
        if k.endswith(("running_mean", "running_var"))
    }


def test_frozen_bn_frozen_stages_and_backbone_lr(train_ckpt, ucf_root, tmp_path, caplog):
    import logging

    import lightning as L

    from a2video.data import UCF101DataModule

    dm = UCF101DataModule(
        ucf_root, frames=4, stride=2, train_scale=(40, 48), crop_size=32, test_scale=40,
        batch_size=4, num_workers=0,
    )  # fmt: skip
    model = VideoClassifier(
        backbone_lr_mult=0.1,
        arch="a2net_tiny",
        num_classes=dm.num_classes,
        lr=0.5,
        scheduler="constant",
    )
    finetune = Finetune(pretrained=train_ckpt, frozen_bn=True, freeze_stages=2)  # stem + res2
    reference = build_model("a2net_tiny", num_classes=dm.num_classes)
    load_pretrained(reference, train_ckpt)
    before_stats, before = _bn_stats(reference), reference.state_dict()

    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, default_root_dir=str(tmp_path), logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[finetune],
    )  # fmt: skip
    with caplog.at_level(logging.INFO):
        trainer.fit(model, dm)
    assert trainer.global_step >= 2  # a whole epoch of training ran

    after = model.net.state_dict()
    for key, value in before_stats.items():  # every running statistic, A²-blocks' included
        torch.testing.assert_close(after[key], value, rtol=0, atol=0, msg=key)
    for key in ("conv1.weight", "layer1.0.conv2.weight", "layer1.0.bn1.weight"):
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=0, msg=key)
    assert not torch.equal(after["layer3.0.conv2.weight"], before["layer3.0.conv2.weight"])
    assert not torch.equal(after["layer4.0.bn1.weight"], before["layer4.0.bn1.weight"])  # affine

    groups = {g["name"]: g for g in trainer.optimizers[0].param_groups}
    assert groups["backbone"]["lr"] == pytest.approx(0.05)
    assert groups["head"]["lr"] == pytest.approx(0.5)
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0
    frozen = {id(p) for n, p in model.net.named_parameters() if n.startswith(("conv1", "layer1"))}
    assert not any(id(p) in frozen for g in groups.values() for p in g["params"])
    report = json.loads((tmp_path / "transfer_report.json").read_text())
    assert report["counts"]["frozen_bn"] == sum(
        isinstance(m, nn.BatchNorm3d) for m in model.net.modules()
    )
    # the fit's one summary line ends with what was frozen (docs/transfer.md); it was said
    # before freezing, without it, though transfer_report.json recorded it
    said = [r.getMessage() for r in caplog.records if "a2video transfer:" in r.getMessage()]
    counts = report["counts"]
    assert len(said) == 1 and counts["frozen"] > 0, said
    assert said[0].endswith(
        f"; frozen {counts['frozen']} params, {counts['frozen_bn']} BN with fixed statistics"
    ), said


def test_without_frozen_bn_the_statistics_move(train_ckpt, ucf_root, tmp_path):
    import lightning as L

    from a2video.data import UCF101DataModule

    dm = UCF101DataModule(
        ucf_root, frames=4, stride=2, train_scale=(40, 48), crop_size=32, batch_size=4,
        num_workers=0,
    )  # fmt: skip
    model = VideoClassifier(arch="a2net_tiny", num_classes=4)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=1, default_root_dir=str(tmp_path), logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[Finetune(pretrained=train_ckpt)],
    )  # fmt: skip
    trainer.fit(model, dm)
    ckpt = torch.load(train_ckpt, weights_only=True)["state_dict"]
    assert not torch.equal(model.net.bn1.running_mean, ckpt["net.bn1.running_mean"])


def test_param_groups_split_head_and_backbone():
    net = build_model("a2net_tiny", num_classes=3)
    groups = param_groups(net, weight_decay=1e-4, backbone_lr_mult=0.1)
    names = [g["name"] for g in groups]
    assert names == ["backbone", "backbone_no_decay", "head", "head_no_decay"]
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    assert [g["lr_mult"] for g in groups] == [0.1, 0.1, 1.0, 1.0]


def test_dropout_before_the_head():
    model = VideoClassifier(arch="a2net_tiny", num_classes=3, arch_options={"dropout": 0.4})
    assert isinstance(model.net.dropout, nn.Dropout) and model.net.dropout.p == 0.4


def test_parse_folds():
    assert parse_folds("all") == [1, 2, 3]
    assert parse_folds("1,3") == [1, 3]
    assert parse_folds(None) == []
    with pytest.raises(ValueError):
        parse_folds("4")
    with pytest.raises(ValueError, match="fold 1 is named twice"):  # not after a whole fold
        parse_folds("1,1")


def test_several_folds_outside_fit_is_a_user_error(capsys):
    """``finetune_ucf.py test --folds 1,2``: one line and exit 2 (it exited 1)."""
    from a2video.training.finetune import main

    with pytest.raises(SystemExit) as stop:
        main(["test", "--folds", "1,2"])
    assert stop.value.code == 2
    assert "--folds with several folds runs fit" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--folds", "2", "--data.fold", "1"], "--folds 2 and --data.fold 1"),
        (["--data.fold=3", "--folds=all"], "--folds all and --data.fold 3"),
        (["--folds", "1,3", "--data.init_args.fold", "1"], "--folds 1,3 and --data.fold 1"),
    ],
)
def test_folds_beside_another_data_fold_is_a_user_error(argv, said, capsys):
    """``fit --folds 2 --data.fold 1`` ran fold 2 without a word (--folds set the fold, the
    typed --data.fold was dropped); now one line, before anything is built."""
    from a2video.training.finetune import main

    with pytest.raises(SystemExit) as stop:
        main(["fit", *argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1, err
    assert f"finetune_ucf.py: error: {said} both set the UCF-101 fold" in err


# --------------------------------------------------------------------------- folds
def test_print_config_with_several_folds_says_they_are_not_in_it(ucf_root, tmp_path, capsys):
    """``fit --folds all --print_config`` prints fold 1's run (``folds: null``, ``fold: 1``):
    one line on stderr says so and how to rerun all the folds from the file. Before, the file,
    rerun as ``--config FILE``, fine-tuned fold 1 alone, without a word."""
    args = ["fit", "--model.arch", "a2net_tiny", "--data.data_root", ucf_root, "--folds", "all"]
    args += ["--trainer.default_root_dir", str(tmp_path / "run"), "--print_config"]
    with pytest.raises(SystemExit) as stop:
        run_folds(args)
    out = capsys.readouterr()
    assert stop.value.code in (0, None)
    assert "\nfolds: null\n" in out.out and "  fold: 1\n" in out.out
    assert "--folds all is a command-line option, not in the printed config" in out.err
    assert "rerun it with --config FILE --folds all" in out.err


def test_folds_all_reports_three_results_and_their_mean(train_ckpt, ucf_root, tmp_path):
    root = tmp_path / "ucf_folds"
    args = ["fit", "--model.arch", "a2net_tiny", "--data.data_root", ucf_root, "--ckpt", train_ckpt]
    args += ["--trainer.default_root_dir", str(root), "--trainer.max_steps", "2", "--folds", "all"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_folds(args + CLIP + QUIET)
    # the folds' CLIs get this command line as `args`: Lightning's "not recommended to provide
    # both args and command line arguments" is not for the user
    assert not [w for w in caught if "args parameter" in str(w.message)]

    assert [r["fold"] for r in summary["folds"]] == [1, 2, 3]
    top1 = [r["metrics"]["test/top1"] for r in summary["folds"]]
    assert summary["mean"]["test/top1"] == pytest.approx(sum(top1) / 3)
    for fold in (1, 2, 3):
        run = root / f"fold{fold}"
        assert (run / "predictions.csv").is_file()
        results = json.loads((run / "results.json").read_text())
        assert results["fold"] == fold and results["views"] == [3, 3]  # what it was tested with
        assert (run / "checkpoints" / "last.ckpt").is_file()
        with open(run / "predictions.csv") as f:
            assert len(f.readlines()) == 1 + 4  # header + one test video per class
    saved = json.loads((root / "folds.json").read_text())
    assert saved["num_folds"] == 3 and "test/top1" in saved["mean"]
    assert [r["views"] for r in saved["folds"]] == [[3, 3]] * 3
    ckpt = torch.load(root / "fold1" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["a2video"]["transfer"]["kind"] == "a2video"
    assert os.path.basename(ckpt["a2video"]["transfer"]["source"]) == "last.ckpt"


# --------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name", ["ucf101_finetune", "demo_ucf101"])
def test_config_instantiates(name, ucf_root, tmp_path, monkeypatch):
    import yaml

    from a2video.data import UCF101DataModule
    from a2video.training.finetune import FinetuneCLI

    config = Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml"
    monkeypatch.chdir(tmp_path)
    cli = FinetuneCLI(
        VideoClassifier,
        UCF101DataModule,
        run=False,
        args=["--config", str(config), "--data.data_root", ucf_root, "--ckpt", "k.ckpt"],
    )
    expected = yaml.safe_load(config.read_text())
    assert cli.model.num_classes == cli.datamodule.num_classes == 4  # linked from the data
    assert cli.model.net.arch == expected["model"]["arch"]
    (finetune,) = [c for c in cli.trainer.callbacks if isinstance(c, Finetune)]
    assert finetune.pretrained == "k.ckpt"  # --ckpt
    assert cli.datamodule.fold == 1 and cli.datamodule.spec.num_clips == 10
    if name == "ucf101_finetune":  # the paper: 8 GPUs x 13 = 104 clips, LR dropped three times
        assert cli.trainer.num_devices * cli.datamodule.batch_size == 104
        assert cli.model.hparams.scheduler == "step" and len(cli.model.hparams.milestones) == 3
        assert isinstance(cli.model.net.dropout, nn.Dropout)


def test_finetune_test_keeps_an_explicit_default_and_prints_no_parser_error(
    ucf_root, tmp_path, capfd
):
    """``finetune_ucf.py test --ckpt_path X``: an option the user sets to its default value stays
    set (the saved value fills only what was not given), and the explicit re-parse behind that
    prints no usage or error text (its --ckpt link once made jsonargparse print both)."""
    from a2video.data import UCF101DataModule
    from a2video.training.finetune import FinetuneCLI

    run = tmp_path / "ft"
    base = ["--model.arch", "a2net_tiny", "--data.data_root", ucf_root, *CLIP, *QUIET]
    fit = ["fit", *base, "--trainer.default_root_dir", str(run), "--trainer.max_steps", "1"]
    fit += ["--model.label_smoothing", "0.1", "--test_after_fit", "false"]
    FinetuneCLI(VideoClassifier, UCF101DataModule, args=fit)
    ckpt = run / "checkpoints" / "last.ckpt"
    capfd.readouterr()
    test = ["test", *base, "--ckpt_path", str(ckpt), "--trainer.limit_test_batches", "1"]
    test += ["--trainer.default_root_dir", str(tmp_path / "t"), "--model.label_smoothing", "0.0"]
    cli = FinetuneCLI(VideoClassifier, UCF101DataModule, args=test)
    assert cli.model.hparams.label_smoothing == 0.0  # given (= the default): kept
    err = capfd.readouterr().err
    assert "usage:" not in err and "error:" not in err, err[-2000:]


# --------------------------------------------------------------------------- resuming, folds
def _tiny_2d_weights(path: Path) -> str:
    """An ImageNet-style (2-D, no A²-blocks) state dict of ``a2net_tiny``'s backbone: a source
    whose A²-blocks start new, and stay trainable in frozen stages."""
    net = build_model("a2net_tiny", num_classes=10)
    state = {k: (v.mean(2) if v.dim() == 5 else v) for k, v in net.state_dict().items()}
    torch.save({k: v for k, v in state.items() if ".attn." not in k}, path)
    return str(path)


def test_a_resumed_fine_tune_keeps_its_trainable_blocks_and_source_without_ckpt(
    ucf_root, tmp_path, caplog
):
    """``--ckpt_path last`` without ``--ckpt`` (the SIGTERM line says just that) resumed with the
    A²-blocks of the frozen stages frozen and the run recorded as "from scratch"."""
    import logging

    from a2video.training.finetune import main

    source = _tiny_2d_weights(tmp_path / "tiny2d.pth")
    root = tmp_path / "ft"
    args = ["fit", "--model.arch", "a2net_tiny", "--data.data_root", ucf_root, "--folds", "1"]
    args += ["--trainer.default_root_dir", str(root), "--finetune.freeze_stages", "3"]
    args += ["--test_after_fit", "false", *CLIP, *QUIET]
    main([*args, "--ckpt", source, "--trainer.max_steps", "2"])
    last = root / "checkpoints" / "last.ckpt"
    first = torch.load(last, weights_only=True)
    block = "net.layer2.0.attn.qkv.weight"  # new in the source, in a frozen stage: trainable

    with caplog.at_level(logging.INFO), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main([*args, "--ckpt_path", "last", "--trainer.max_steps", "4"])
    assert not [w for w in caught if "randomly initialised" in str(w.message)]
    said = [r.getMessage() for r in caplog.records if "resuming" in r.getMessage()]
    assert len(said) == 1 and "imagenet weights" in said[0]
    resumed = torch.load(last, weights_only=True)
    assert resumed["global_step"] == 4
    assert not torch.equal(resumed["state_dict"][block], first["state_dict"][block])
    transfer, recorded = resumed["a2video"]["transfer"], first["a2video"]["transfer"]
    assert (transfer["kind"], transfer["source"]) == ("imagenet", source)
    assert transfer["frozen"] == recorded["frozen"] and transfer["missing"] == recorded["missing"]
    assert json.loads((root / "transfer_report.json").read_text())["source"] == source

    other = _tiny_2d_weights(tmp_path / "other.pth")  # named again, but another file: said
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main([*args, "--ckpt", other, "--ckpt_path", "last", "--trainer.max_steps", "5"])
    said = [str(w.message) for w in caught if "is not read" in str(w.message)]
    assert len(said) == 1 and other in said[0] and source in said[0]
    assert torch.load(last, weights_only=True)["a2video"]["transfer"]["source"] == source


def test_a_ckpt_fine_tuned_on_another_fold_is_refused_in_one_line(
    train_ckpt, ucf_root, tmp_path, capsys
):
    """Fine-tuning fold 1 from a fold-2 fine-tune trains on fold 1's test videos (they are in
    trainlist02): refused as ``--ckpt_path`` of another fold is; the same fold is fine."""
    from a2video.training.finetune import main

    ckpt = torch.load(train_ckpt, weights_only=True)
    ckpt["datamodule_hyper_parameters"] = {"fold": 2}  # what finetune_ucf.py's fold 2 records
    fold2 = tmp_path / "fold2_last.ckpt"
    torch.save(ckpt, fold2)
    args = ["fit", "--model.arch", "a2net_tiny", "--data.data_root", ucf_root, "--ckpt", str(fold2)]
    args += ["--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.max_steps", "1"]
    with pytest.raises(SystemExit) as stop:
        main([*args, "--folds", "1", *CLIP, *QUIET])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1
    assert f"{fold2}: it was fine-tuned on UCF-101 fold 2" in err and "--data.fold 2" in err


def test_folds_without_their_test_and_an_earlier_folds_summary(train_ckpt, ucf_root, tmp_path):
    """``--test_after_fit false`` with several folds ends with their summary (it ended in a
    KeyError after training them all), and a rerun of some folds keeps the others' results
    that ``folds.json`` held (it replaced the 3-fold summary by a 2-fold one)."""
    root = tmp_path / "folds"
    root.mkdir()
    earlier = {"fold": 3, "metrics": {"test/top1": 0.5, "test/top5": 1.0}}
    (root / "folds.json").write_text(json.dumps({"folds": [earlier], "num_folds": 1}))
    args = ["fit", "--model.arch", "a2net_tiny", "--data.data_root", ucf_root, "--ckpt", train_ckpt]
    args += ["--trainer.default_root_dir", str(root), "--trainer.max_steps", "1"]
    summary = run_folds([*args, "--folds", "1,2", "--test_after_fit", "false", *CLIP, *QUIET])
    assert [(r["fold"], bool(r.get("earlier"))) for r in summary["folds"]] == [
        (1, False), (2, False), (3, True),
    ]  # fmt: skip
    assert summary["num_tested"] == 1 and summary["mean"] == earlier["metrics"]
    assert json.loads((root / "folds.json").read_text())["num_folds"] == 3


class SigtermAtTest(Callback):
    """Sends this process SIGTERM at the first test batch (a job killed during the test)."""

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0:
            import signal

            os.kill(os.getpid(), signal.SIGTERM)


def test_a_sigterm_during_the_test_after_fit_says_how_to_go_on(
    train_ckpt, ucf_root, tmp_path, caplog
):
    """The test after a fold's fit stopped by SIGTERM said nothing and exited 0 without its
    results: it now names the rerun that tests the saved weights and goes on."""
    import logging

    root = tmp_path / "folds"
    args = ["fit", "--model.arch", "a2net_tiny", "--data.data_root", ucf_root, "--ckpt", train_ckpt]
    args += ["--trainer.default_root_dir", str(root), "--trainer.max_steps", "1", "--folds", "1,2"]
    args += ["--trainer.callbacks+=test_finetune.SigtermAtTest"]
    with caplog.at_level(logging.INFO), pytest.raises(SystemExit) as stop:
        run_folds(args + CLIP + QUIET)
    assert stop.value.code == 143  # 128 + SIGTERM: the test did not finish
    said = [r.getMessage() for r in caplog.records if "SIGTERM" in r.getMessage()]
    assert len(said) == 1 and "test stopped after batch 1 of" in said[0], said
    assert "no results written" in said[0] and "--ckpt_path last --folds" in said[0]
    assert not (root / "fold1" / "results.json").exists() and not (root / "fold2").exists()


def test_a_kinetics_checkpoint_as_ckpt_path_names_ckpt(train_ckpt, ucf_root, tmp_path, capsys):
    """``--ckpt_path`` (resume) where ``--ckpt`` (start from its weights) was meant: the
    class-mismatch line says so, instead of only "pass the dataset it was trained on"."""
    from a2video.training.finetune import main

    args = ["fit", "--model.arch", "a2net_tiny", "--data.data_root", ucf_root]
    args += ["--ckpt_path", train_ckpt, "--trainer.default_root_dir", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as stop:
        main(args + CLIP + QUIET)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1
    assert f"with a new head, pass --ckpt {train_ckpt} (not --ckpt_path)" in err


def test_a_fold_that_starts_in_a_resumed_folds_run_takes_the_runs_source(
    train_ckpt, ucf_root, tmp_path
):
    """``--folds 1,2 --ckpt_path last`` without ``--ckpt`` after a kill in fold 1: fold 2,
    not started yet, fine-tunes from the weights fold 1's checkpoint records (it trained from
    scratch, its stem random and frozen, and counted in the folds' mean)."""
    import shutil

    root = tmp_path / "folds"
    args = ["fit", "--model.arch", "a2net_tiny", "--data.data_root", ucf_root]
    args += ["--trainer.default_root_dir", str(root), "--folds", "1,2"]
    args += ["--test_after_fit", "false", "--finetune.freeze_stages", "1", *CLIP, *QUIET]
    run_folds([*args, "--ckpt", train_ckpt, "--trainer.max_steps", "1"])
    shutil.rmtree(root / "fold2")  # the kill came in fold 1: fold 2 never started
    run_folds([*args, "--ckpt_path", "last", "--trainer.max_steps", "2"])
    ckpt = torch.load(root / "fold2" / "checkpoints" / "last.ckpt", weights_only=True)
    transfer = ckpt["a2video"]["transfer"]
    assert (transfer["kind"], transfer["source"]) == ("a2video", train_ckpt)
    source = torch.load(train_ckpt, weights_only=True)["state_dict"]["net.conv1.weight"]
    torch.testing.assert_close(ckpt["state_dict"]["net.conv1.weight"], source)  # frozen stem


def test_one_fold_of_a_folds_runs_folder_runs_as_its_fold(train_ckpt, ucf_root, tmp_path):
    """``--folds 2 --ckpt_path last`` in the folder of a ``--folds 1,2`` run (the fold that was
    stopped): it resumes ``fold2/``'s checkpoint and joins ``folds.json``. Before, a single
    ``--folds N`` wrote into the folder itself: the fold started again from ``--ckpt`` beside the
    others' folders and the folds' summary never counted it."""
    root = tmp_path / "folds"
    args = ["fit", "--model.arch", "a2net_tiny", "--data.data_root", ucf_root, "--ckpt", train_ckpt]
    args += ["--trainer.default_root_dir", str(root), *CLIP, *QUIET]
    run_folds([*args, "--folds", "1,2", "--trainer.max_steps", "1", "--test_after_fit", "false"])
    summary = run_folds([*args, "--folds", "2", "--ckpt_path", "last", "--trainer.max_steps", "2"])
    assert not (root / "checkpoints").exists()
    last = torch.load(root / "fold2" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2
    assert [r["fold"] for r in summary["folds"]] == [2] and summary["num_tested"] == 1
    saved = json.loads((root / "folds.json").read_text())
    assert [r["fold"] for r in saved["folds"]] == [2] and saved["folds"][0]["metrics"]


def test_test_of_a_fold_in_a_folds_runs_folder(ucf_root, tmp_path, capsys):
    """``test --folds 2 --ckpt_path last`` in a ``--folds`` run's folder tests fold 2's
    ``last.ckpt`` (``fit --folds 2 --ckpt_path last`` resumes it there); it ended in "no last
    checkpoint here" (the run folder has none of its own). Without ``--folds`` the line names it."""
    from a2video.training.finetune import main

    root = tmp_path / "folds"
    root.mkdir()
    summary = {"folds": [{"fold": 1, "metrics": {"test/top1": 0.5}}], "num_folds": 1}
    (root / "folds.json").write_text(json.dumps(summary))
    base = ["--model.arch", "a2net_tiny", "--data.data_root", ucf_root, *CLIP, *QUIET]
    base += ["--trainer.default_root_dir", str(root)]
    main(["fit", *base, "--folds", "2", "--trainer.max_steps", "1", "--test_after_fit", "false"])
    assert (root / "fold2" / "checkpoints" / "last.ckpt").is_file()
    saved = (root / "folds.json").read_text()
    capsys.readouterr()

    main(["test", *base, "--folds", "2", "--ckpt_path", "last"])
    assert (root / "fold2" / "predictions.csv").is_file()
    assert not (root / "predictions.csv").exists()
    assert (root / "folds.json").read_text() == saved  # a test leaves the folds' summary as it is

    with pytest.raises(SystemExit) as stop:
        main(["test", *base, "--ckpt_path", "last"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1, err
    assert f"{root}: a --folds run's folder" in err and "pass --folds N" in err, err
