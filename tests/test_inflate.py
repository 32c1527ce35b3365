"""Specification of ImageNet inflation: a constant clip gives the 2-D network's logits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import resnet50

from a2video.models import build_model, filter_imagenet, inflate_weight, load_weights


@pytest.fixture(scope="module")
def resnet2d() -> torch.nn.Module:
    """torchvision ResNet-50 with random weights and non-trivial BN parameters and statistics."""
    torch.manual_seed(1)
    net = resnet50()
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0.0, 0.2)
                mod.running_mean.normal_(0.0, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
        net.fc.weight.normal_(0.0, 0.05)
    return net.eval()


@pytest.mark.parametrize("arch", ["i3d_r50", "a2net_r50", "nl_r50"])
def test_center_inflation_reproduces_the_2d_logits_on_a_constant_clip(
    resnet2d: torch.nn.Module, arch: str
) -> None:
    model = build_model(
        arch, num_classes=1000, pretrained_2d=resnet2d.state_dict(), inflate="center"
    )
    model.eval()
    frame = torch.randn(1, 3, 64, 64)
    clip = frame.unsqueeze(2).expand(1, 3, 4, 64, 64).contiguous()  # temporally constant
    with torch.no_grad():
        expected = resnet2d(frame)
        got = model(clip)
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_mean_inflation_sums_back_to_the_2d_kernel(resnet2d: torch.nn.Module) -> None:
    sd2d = resnet2d.state_dict()
    model = build_model("i3d_r50", num_classes=1000)
    target = {k: v.shape for k, v in model.state_dict().items()}
    sd3d, report = filter_imagenet(sd2d, target, inflate="mean")
    inflated = [k for k, v in sd3d.items() if v.dim() == 5 and v.shape[2] > 1]
    assert "conv1.weight" in inflated and "layer1.0.conv1.weight" in inflated
    for key, w3d in sd3d.items():
        if w3d.dim() == 5:
            torch.testing.assert_close(w3d.sum(dim=2), sd2d[key])
        else:
            torch.testing.assert_close(w3d, sd2d[key])
    assert report.missing == report.reinitialized == report.skipped == []
    assert sorted(report.loaded) == sorted(target)


def test_inflate_weight_center_and_errors() -> None:
    w = torch.randn(4, 3, 3, 3)
    c = inflate_weight(w, 5, "center")
    assert c.shape == (4, 3, 5, 3, 3)
    torch.testing.assert_close(c[:, :, 2], w)
    assert c[:, :, [0, 1, 3, 4]].abs().sum() == 0
    with pytest.raises(ValueError):
        inflate_weight(w, 3, "edge")  # type: ignore[arg-type]


def test_report_names_new_blocks_and_reinitialised_head(
    resnet2d: torch.nn.Module, tmp_path: Path
) -> None:
    path = tmp_path / "r50.pth"
    torch.save(resnet2d.state_dict(), path)
    model = build_model("a2net_r50", num_classes=400)
    fc_before = model.fc.weight.clone()
    report = load_weights(model, path, kind="imagenet", inflate="mean")
    assert report.reinitialized == ["fc.weight", "fc.bias"]
    assert report.missing and all(".attn." in k for k in report.missing)
    assert {k.split(".attn.")[0] for k in report.missing} == {
        "layer2.1",
        "layer2.3",
        "layer3.1",
        "layer3.3",
        "layer3.5",
    }
    assert report.skipped == []
    assert "reinitialized 2" in report.summary()
    torch.testing.assert_close(model.fc.weight, fc_before)
    torch.testing.assert_close(
        model.layer1[0].conv2.weight[:, :, 0], resnet2d.state_dict()["layer1.0.conv2.weight"]
    )


def test_builder_reports_what_it_loaded(resnet2d: torch.nn.Module) -> None:
    model = build_model("r26", num_classes=10, pretrained_2d=resnet2d.state_dict())
    report = model.load_reports["pretrained_2d"]
    assert "layer1.2.conv1.weight" in report.skipped  # ResNet-26 has 2 units per stage
    assert report.missing == []


def test_mismatched_widths_raise() -> None:
    model = build_model("a2net_tiny")
    with pytest.raises(ValueError, match="do not fit"):
        load_weights(model, resnet50().state_dict(), kind="imagenet")
