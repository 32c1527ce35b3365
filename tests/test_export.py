"""Export: the ONNX and TorchScript files give PyTorch's logits for the fixed clip shape."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from a2video.explore.export import export_model, load_exported, parity_check
from a2video.models import DoubleAttention

CLIP = (2, 3, 4, 32, 32)  # (N, 3, T, H, W)


class _A2Net(nn.Module):
    """Stem, BN, an A²-block with non-zero output scale, pooled linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv3d(3, 16, 3, stride=(1, 2, 2), padding=1)
        self.bn = nn.BatchNorm3d(16)
        self.attn = DoubleAttention(16, zero_init=False)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(torch.relu(self.bn(self.stem(x))))
        return self.fc(x.mean((2, 3, 4)))


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    model = _A2Net()
    model.bn.running_mean.uniform_(-0.5, 0.5)  # eval-mode BN with non-trivial statistics
    model.bn.running_var.uniform_(0.5, 2.0)
    nn.init.normal_(model.attn.bn.weight, std=0.5)
    return model


def test_onnx_export_matches_pytorch_logits_with_onnxruntime(net, tmp_path):
    path = export_model(net, tmp_path / "net.onnx", CLIP, fmt="onnx")
    x = torch.randn(CLIP)
    parity = parity_check(net, path, "onnx", x)
    assert parity.max_abs_diff < 1e-3, parity.summary()
    assert parity.top1_agree == 1.0 and parity.ok
    assert "parity OK" in parity.summary()
    import onnx

    graph = onnx.load(str(path)).graph
    shape = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert graph.input[0].name == "video" and shape == list(CLIP)  # the fixed clip shape
    assert graph.output[0].name == "logits"


def test_torchscript_export_matches_pytorch_logits(net, tmp_path):
    path = export_model(net, tmp_path / "net.pt", CLIP, fmt="torchscript")
    x = torch.randn(CLIP)
    run = load_exported(path, "torchscript")
    torch.testing.assert_close(run(x), net.eval()(x), atol=1e-5, rtol=1e-5)
    assert parity_check(net, path, "torchscript", x).ok


def test_export_leaves_the_model_untouched_and_rejects_unknown_formats(net, tmp_path):
    net.train()
    export_model(net, tmp_path / "net.pt", CLIP, fmt="torchscript")
    assert net.training  # exported from an eval copy
    with pytest.raises(ValueError, match="format"):
        export_model(net, tmp_path / "net.tflite", CLIP, fmt="tflite")  # type: ignore[arg-type]


def test_parity_reports_a_mismatch(net, tmp_path):
    path = export_model(net, tmp_path / "net.pt", CLIP, fmt="torchscript")
    other = _A2Net()
    parity = parity_check(other, path, "torchscript", torch.randn(CLIP))
    assert not parity.ok and "FAILED" in parity.summary()


# ---------------------------------------------------------------- from a trained checkpoint


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, kinetics_root) -> dict[str, str]:
    from tiny_checkpoint import train_tiny_run

    return train_tiny_run(tmp_path_factory.getbasetemp(), kinetics_root)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_command_writes_the_checkpoint_network_and_prints_parity(
    tiny_run, tmp_path, capsys, fmt
):
    from a2video.cli import main

    out = tmp_path / f"tiny.{fmt}"
    code = main(["export", "--ckpt", tiny_run["ckpt"], "--format", fmt, "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert out.is_file()
    assert "input [1, 3, 4, 32, 32]" in printed  # the checkpoint's clip shape
    diff = float(re.search(r"max \|logit diff\| = (\S+)", printed).group(1))
    assert diff < 1e-3 and "parity OK" in printed


@pytest.mark.parametrize("option", ["--batch", "--frames", "--size"])
def test_export_refuses_a_non_positive_shape_in_one_line(tmp_path, capsys, option):
    from a2video.cli import main

    ckpt = str(tmp_path / "model.ckpt")  # checked before the checkpoint is read
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--ckpt", ckpt, "--format", "onnx", option, "0"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert f"{option} 0: must be a positive integer" in err


def test_export_refuses_a_clip_too_small_for_the_arch_in_one_line(tiny_run, tmp_path, capsys):
    """``--frames 1`` through a2net_tiny's temporal pooling ended in torch's traceback."""
    from a2video.cli import main

    out = tmp_path / "tiny.pt"
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--ckpt", tiny_run["ckpt"], "--format", "torchscript", "--out", str(out),
              "--frames", "1"])  # fmt: skip
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    assert "--frames 1, --size 32: a clip of 1 frames at 32x32 is too small for a2net_tiny" in err
    assert "pass --frames 2 --size 32 or more" in err and not out.exists()


def test_export_out_naming_a_folder_is_one_line_before_exporting(tmp_path, capsys):
    """It exported, then failed renaming its temp file onto the folder ("[Errno 21] Is a
    directory: '.../.out.1234.tmp' -> '.../out'")."""
    from a2video.cli import main

    folder = tmp_path / "out"
    folder.mkdir()
    ckpt = str(tmp_path / "last.ckpt")  # checked before the checkpoint is read
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--ckpt", ckpt, "--format", "onnx", "--out", str(folder)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    assert f"{folder}: a folder; --out takes the file to write, e.g. {folder / 'last.onnx'}" in err
    assert list(tmp_path.iterdir()) == [folder] and list(folder.iterdir()) == []


@pytest.mark.parametrize("opset", ["13", "99"])
def test_an_opset_the_exporter_cannot_give_is_one_line_and_no_file(
    tiny_run, tmp_path, capsys, opset
):
    """The exporter fell back to opset 18 (a logged traceback) and the command said "parity OK":
    the file was not the opset asked for."""
    from a2video.cli import main

    out = tmp_path / "tiny.onnx"
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--ckpt", tiny_run["ckpt"], "--format", "onnx", "--out", str(out),
              "--opset", opset])  # fmt: skip
    captured = capsys.readouterr()
    assert exit_.value.code == 2 and captured.err.count("\n") == 1, captured.err
    assert f"opset {opset}: the ONNX exporter wrote opset 18 instead" in captured.err
    assert "--opset" in captured.err and "Traceback" not in captured.err
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_an_opset_with_torchscript_in_one_line(tmp_path, capsys):
    """``--opset`` was ignored by ``--format torchscript`` without a word."""
    from a2video.cli import main

    ckpt = str(tmp_path / "last.ckpt")  # checked before the checkpoint is read
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--ckpt", ckpt, "--format", "torchscript", "--opset", "17"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    assert "--opset 17: ONNX only; drop it with --format torchscript" in err


def test_export_refuses_to_write_over_the_checkpoint_it_reads(tiny_run, tmp_path, capsys):
    """A checkpoint named ``.pt`` exported to TorchScript (default ``--out``: the same name) or
    an ``--out`` naming the checkpoint: one line, and the trained file is left as it was."""
    import shutil

    from a2video.cli import main

    ckpt = tmp_path / "model.pt"
    shutil.copy(tiny_run["ckpt"], ckpt)
    before = ckpt.read_bytes()
    for extra in ([], ["--out", str(ckpt)]):
        with pytest.raises(SystemExit) as exit_:
            main(["export", "--ckpt", str(ckpt), "--format", "torchscript", *extra])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1
        assert "would write over the checkpoint it reads (--ckpt); pass --out" in err
    assert ckpt.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_export_refuses_to_write_over_another_checkpoint_and_replaces_an_earlier_export(
    tiny_run, tmp_path, capsys
):
    """``--out runs/x/checkpoints/best.ckpt`` (or a state dict's ``.pt``) replaced the trained
    file with the export without a word; an earlier export at ``--out`` is still replaced."""
    import shutil

    from a2video.cli import main

    best = tmp_path / "best.ckpt"
    shutil.copy(tiny_run["ckpt"], best)
    weights = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(2, 3).state_dict(), weights)
    for target in (best, weights):
        before = target.read_bytes()
        with pytest.raises(SystemExit) as exit_:
            main(["export", "--ckpt", tiny_run["ckpt"], "--format", "torchscript",
                  "--out", str(target)])  # fmt: skip
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1, err
        assert f"{target}: a file of trained weights (a checkpoint or state dict)" in err
        assert "pass --out with another file" in err and "Traceback" not in err
        assert target.read_bytes() == before
    out = tmp_path / "model.pt"
    for _ in range(2):  # the second run replaces the first's TorchScript file
        assert main(["export", "--ckpt", tiny_run["ckpt"], "--format", "torchscript",
                     "--out", str(out)]) == 0  # fmt: skip
    assert "parity OK" in capsys.readouterr().out
