"""A tiny A²-Net checkpoint trained once per test session on the synthetic Kinetics layout.

Used by test_predict, test_export and test_notebooks. Pytest registers a fixture once per module
that imports it, so the run is cached on disk under the session's base temp folder: the first
module trains, the others reuse the files.
"""

from __future__ import annotations

import json
from pathlib import Path

# Training settings: Adam memorises most of the 11 training videos (4 classes) in 48 steps.
TINY_CLIP = {
    "frames": 4,
    "stride": 2,
    "train_scale": (40, 40),
    "crop_size": 32,
    "test_scale": 40,
    "num_clips": 3,
    "num_crops": 3,
    "flip": False,
    "batch_size": 4,
    "test_batch_size": 2,
    "num_workers": 0,
}
STEPS = 48


def train_tiny_run(base: Path, data_root: str) -> dict[str, str]:
    """Trains ``a2net_tiny`` with the real Trainer/VideoClassifier/DataModule, tests it (writing
    ``predictions.csv``), and returns the paths: ``ckpt``, ``run``, ``data``."""
    run = base / "a2video_tiny_run"
    done = run / "paths.json"
    if done.is_file():
        return json.loads(done.read_text())

    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from a2video.data import KineticsDataModule
    from a2video.training.module import VideoClassifier

    L.seed_everything(0, verbose=False)
    dm = KineticsDataModule(data_root, **TINY_CLIP)
    model = VideoClassifier(
        arch="a2net_tiny",
        num_classes=dm.num_classes,
        class_names=dm.class_names,
        optimizer=lambda params: torch.optim.Adam(params, lr=3e-3),
        scheduler="constant",
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=STEPS,
        default_root_dir=str(run),
        logger=CSVLogger(str(run), name="", version=""),
        callbacks=[ModelCheckpoint(dirpath=str(run / "checkpoints"), save_last=True)],
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(model, dm)
    trainer.test(model, dm, verbose=False)
    paths = {"ckpt": str(run / "checkpoints" / "last.ckpt"), "run": str(run), "data": data_root}
    done.write_text(json.dumps(paths))
    return paths


def widen_checkpoint(ckpt: str, out: Path, num_classes: int = 400) -> str:
    """The tiny checkpoint with a ``num_classes``-way head: its classes keep their rows (same
    predictions on its videos), the others get small random rows and Kinetics-like names. For
    exercising the figures at Kinetics scale without training a 400-class model."""
    import torch

    from a2video.explore.results import synthetic_class_names

    c = torch.load(ckpt, map_location="cpu", weights_only=True)
    weight, bias = c["state_dict"]["net.fc.weight"], c["state_dict"]["net.fc.bias"]
    known = weight.shape[0]
    g = torch.Generator().manual_seed(0)
    extra = num_classes - known
    c["state_dict"]["net.fc.weight"] = torch.cat(
        [weight, torch.randn(extra, weight.shape[1], generator=g) * weight.std()]
    )
    c["state_dict"]["net.fc.bias"] = torch.cat([bias, torch.full((extra,), float(bias.min()))])
    names = list(c["a2video"]["class_names"]) + synthetic_class_names(num_classes)[known:]
    c["a2video"].update(num_classes=num_classes, class_names=names)
    c["hyper_parameters"].update(num_classes=num_classes, class_names=names)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(c, out)
    return str(out)


def relative_data_checkpoint(ckpt: str, project: Path, *, saved_config: bool) -> Path:
    """The tiny checkpoint as a run started in ``project`` records it with ``--data.data_root
    data``: ``project/data`` (a link to the tiny dataset), the DataModule's ``data_root``
    relative as typed, and (``saved_config``) the run's config with it made absolute, as
    ``train.py`` saves it; without, as older runs did. Returns
    ``project/runs/x/checkpoints/last.ckpt``."""
    import torch

    c = torch.load(ckpt, map_location="cpu", weights_only=True)
    data = project / "data"
    project.mkdir(parents=True, exist_ok=True)
    data.symlink_to(c["datamodule_hyper_parameters"]["data_root"], target_is_directory=True)
    c["datamodule_hyper_parameters"]["data_root"] = "data"
    c["a2video"]["config"] = f"data:\n  data_root: {data}\n" if saved_config else None
    out = project / "runs" / "x" / "checkpoints" / "last.ckpt"
    out.parent.mkdir(parents=True)
    torch.save(c, out)
    return out
