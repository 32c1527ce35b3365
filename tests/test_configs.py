"""Every YAML in configs/ (ours) is instantiated through the CLI with ``run=False``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

from a2video.data import KineticsDataModule
from a2video.models import DoubleAttention, NonLocal
from a2video.training.checkpoint import AtomicCheckpointIO
from a2video.training.cli import A2VideoCLI
from a2video.training.module import VideoClassifier

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(
    [
        ROOT / "configs" / "kinetics400_a2net_r50.yaml",
        ROOT / "configs" / "demo_kinetics.yaml",
        *(ROOT / "configs" / "ablation").glob("*.yaml"),
    ]
)


@pytest.fixture(scope="module")
def kinetics_root(tmp_path_factory) -> str:
    from a2video.data.synthetic import synthesize

    root = tmp_path_factory.mktemp("synth_kinetics")
    synthesize(root, "kinetics", classes=4, videos_per_class=1, val_per_class=1,
               duration=(0.5, 0.6), max_side=48, missing=0.0, progress=False)  # fmt: skip
    return str(root)


# The single-block ablations: one block after the second unit (index 1) of the named stage.
ABLATION_BLOCKS = {
    "r26_baseline": {},
    "r26_a2_res2": {"layer1.1.attn": DoubleAttention},
    "r26_a2_res3": {"layer2.1.attn": DoubleAttention},
    "r26_a2_res4": {"layer3.1.attn": DoubleAttention},
    "r26_a2_res5": {"layer4.1.attn": DoubleAttention},
    "r26_nl_res4": {"layer3.1.attn": NonLocal},
}


def test_every_ablation_config_is_listed() -> None:
    assert {p.stem for p in (ROOT / "configs" / "ablation").glob("*.yaml")} == set(ABLATION_BLOCKS)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_instantiates(config, kinetics_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model_cfg = yaml.safe_load(config.read_text())["model"]
    cli = A2VideoCLI(
        VideoClassifier,
        KineticsDataModule,
        run=False,
        args=["--config", str(config), "--data.data_root", kinetics_root],
    )
    assert cli.model.num_classes == cli.datamodule.num_classes == 4  # linked from the data
    assert cli.model.class_names == cli.datamodule.class_names
    assert cli.model.net.arch == model_cfg["arch"]
    if config.stem in ABLATION_BLOCKS:
        blocks = cli.model.net.attention_blocks
        assert {k: type(v) for k, v in blocks.items()} == ABLATION_BLOCKS[config.stem]
    ckpts = [c for c in cli.trainer.callbacks if isinstance(c, ModelCheckpoint)]
    root = cli.trainer.default_root_dir
    expected = (Path(root) / "checkpoints").resolve()
    assert len(ckpts) == 2 and all(Path(c.dirpath) == expected for c in ckpts)
    assert any(c.monitor == "val/top1" for c in ckpts) and any(c.save_last for c in ckpts)
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert cli.model.run_config and "data_root" in cli.model.run_config
