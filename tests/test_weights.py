"""The one weight loader, :func:`a2video.models.load_weights`, reading each source kind.

Specifications:
- one call loads our Lightning checkpoint, a PyTorchVideo ``.pyth`` and a torchvision ResNet-50
  file, the kind recognised from the contents, each tensor landing where its source put it;
- files go through the checkpoint reader's pickle refusal (a one-line error naming the file);
- the module, predict (and so export and the notebooks) and fine-tuning use it: a training
  checkpoint restored by ``VideoClassifier.from_checkpoint`` and ``load_predictor`` gives the
  trained network's logits.
"""

from __future__ import annotations

import pickle

import pytest
import torch
from torchvision.models import resnet50

from a2video.models import build_model, load_weights
from a2video.training.checkpoint import CheckpointError


def test_our_checkpoint_pytorchvideo_and_imagenet_files_through_one_loader(tmp_path):
    import pytorchvideo.models.hub as hub

    trained = build_model("a2net_tiny", num_classes=5)
    ours = tmp_path / "last.ckpt"  # the layout train.py writes
    torch.save({"state_dict": {f"net.{k}": v for k, v in trained.state_dict().items()},
                "a2video": {"arch": "a2net_tiny", "num_classes": 5}}, ours)  # fmt: skip
    ptv = hub.slow_r50(pretrained=False)
    pyth = tmp_path / "SLOW_8x8_R50.pyth"
    torch.save({"model_state": ptv.state_dict()}, pyth)
    r2d = resnet50(weights=None)
    tv = tmp_path / "resnet50.pth"
    torch.save(r2d.state_dict(), tv)

    net = build_model("a2net_tiny", num_classes=5)
    report = load_weights(net, ours)
    assert report.kind == "a2video" and report.missing == report.reinitialized == []
    for k, v in trained.state_dict().items():
        torch.testing.assert_close(net.state_dict()[k], v, rtol=0, atol=0)

    net = build_model("slow_r50", num_classes=400)
    report = load_weights(net, pyth)
    assert report.kind == "pytorchvideo" and report.missing == report.skipped == []
    torch.testing.assert_close(
        net.state_dict()["layer3.2.conv2.weight"],
        ptv.state_dict()["blocks.3.res_blocks.2.branch2.conv_b.weight"],
    )

    net = build_model("a2net_r50", num_classes=101)
    report = load_weights(net, tv)
    assert report.kind == "imagenet" and report.reinitialized == ["fc.weight", "fc.bias"]
    assert report.missing and all(".attn." in k for k in report.missing)  # new A²-blocks
    w2d, w3d = r2d.state_dict()["conv1.weight"], net.state_dict()["conv1.weight"]
    torch.testing.assert_close(w3d.sum(2), w2d)  # mean inflation over the 5 taps


def test_a_pickled_file_is_refused_in_one_line(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("executed",))

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"state_dict": Payload()}))
    with pytest.raises(CheckpointError) as err:
        load_weights(build_model("a2net_tiny", num_classes=3), path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_resnet50_weights_into_a_smaller_arch_name_the_r50_arch(tmp_path):
    """ImageNet ResNet-50 weights into the demo's a2net_tiny: the fix names an _r50 arch; a
    ResNet-18's error does not (it fits none of them)."""
    from torchvision.models import resnet18

    for net_2d, hinted in ((resnet50(weights=None), True), (resnet18(weights=None), False)):
        path = tmp_path / "weights.pth"
        torch.save(net_2d.state_dict(), path)
        with pytest.raises(ValueError, match="do not fit a2net_tiny") as err:
            load_weights(build_model("a2net_tiny", num_classes=5), path)
        assert ("--model.arch a2net_r50" in str(err.value)) is hinted
        assert "\n" not in str(err.value)


def test_slow_r50_weights_into_the_a2net_r50_config_name_slow_r50(tmp_path):
    """PyTorchVideo's Slow 8x8 R50 weights (stem 1x7x7) into the fine-tune config's default
    a2net_r50 (an I3D stem) listed the shapes that differ and no fix; it now names the arch
    they belong to."""
    import pytorchvideo.models.hub as hub

    pyth = tmp_path / "SLOW_8x8_R50.pyth"
    torch.save({"model_state": hub.slow_r50(pretrained=False).state_dict()}, pyth)
    with pytest.raises(ValueError, match="pytorchvideo weights do not fit a2net_r50") as err:
        load_weights(build_model("a2net_r50", num_classes=101), pyth)
    assert "set --model.arch slow_r50" in str(err.value) and "\n" not in str(err.value)
