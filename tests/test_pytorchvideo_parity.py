"""PyTorchVideo's slow_r50 / i3d_r50 weights give the same logits in our slow_r50 / i3d_r50.

PyTorchVideo is a test-only reference (never imported by the package).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from a2video.models import build_model, convert_pytorchvideo_state_dict, load_weights

with warnings.catch_warnings():  # a dev dependency (pyproject [dev]): imported, never skipped
    warnings.simplefilter("ignore")
    import pytorchvideo.models.hub as hub


def _randomise_bn(net: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm3d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0.0, 0.2)
                mod.running_mean.normal_(0.0, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _global_pool_head(ptv: torch.nn.Module) -> torch.nn.Module:
    """PyTorchVideo's head pools with a fixed AvgPool3d kernel sized for 8×224² (e.g. (8, 7, 7)),
    which is the global average there; make it global so a small clip can be used."""
    ptv.blocks[-1].pool = torch.nn.AdaptiveAvgPool3d(1)
    return ptv


@pytest.mark.parametrize(("ptv_name", "arch"), [("slow_r50", "slow_r50"), ("i3d_r50", "i3d_r50")])
def test_pytorchvideo_weights_give_the_same_logits(ptv_name: str, arch: str) -> None:
    ptv = _global_pool_head(_randomise_bn(getattr(hub, ptv_name)(pretrained=False)))
    ours = build_model(arch, num_classes=400)
    report = load_weights(ours, ptv.state_dict(), kind="pytorchvideo")
    assert report.missing == report.skipped == report.reinitialized == []
    ours.eval()
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        expected, got = ptv(clip), ours(clip)
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_i3d_weights_start_a2net_r50_with_identity_blocks() -> None:
    ptv = _global_pool_head(_randomise_bn(hub.i3d_r50(pretrained=False)))
    a2 = build_model("a2net_r50", num_classes=101, pretrained_ptv=ptv.state_dict()).eval()
    report = a2.load_reports["pretrained_ptv"]
    assert report.reinitialized == ["fc.weight", "fc.bias"]
    assert report.missing and all(".attn." in k for k in report.missing)
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        got, expected = a2.forward_features(clip), torch.nn.Sequential(*ptv.blocks[:-1])(clip)
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()  # as the logits tests


def test_conversion_is_a_pure_key_mapping() -> None:
    sd = hub.slow_r50(pretrained=False).state_dict()
    converted = convert_pytorchvideo_state_dict(sd)
    assert len(converted) == len(sd)
    assert (
        converted["layer4.2.bn3.running_var"]
        is sd["blocks.4.res_blocks.2.branch2.norm_c.running_var"]
    )
    assert (
        converted["layer2.0.downsample.0.weight"] is sd["blocks.2.res_blocks.0.branch1_conv.weight"]
    )
    assert converted["fc.bias"] is sd["blocks.5.proj.bias"]


@pytest.mark.slow
def test_slow_r50_parity_at_full_size_with_their_own_head() -> None:
    ptv = _randomise_bn(hub.slow_r50(pretrained=False))
    ours = build_model("slow_r50")
    load_weights(ours, ptv.state_dict(), kind="pytorchvideo")
    clip = torch.randn(1, 3, 8, 224, 224)
    with torch.no_grad():
        expected, got = ptv(clip), ours.eval()(clip)
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()
