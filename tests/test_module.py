"""VideoClassifier: optimisation, schedules, non-finite steps, mixed precision, multi-view test.

``TinyVideoData`` here is an in-memory stand-in for the data room's DataModules that yields the
batch dicts of docs/internals.md (other test files import it): each class is a fixed random
spatio-temporal pattern plus noise, so a tiny net learns it in a few steps.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, LightningDataModule, Trainer
from torch.utils.data import DataLoader, Dataset

from a2video.data import ClipSpec
from a2video.training.module import (
    NonFiniteLossError,
    VideoClassifier,
    WarmupSchedule,
    param_groups,
)

FRAMES, SIZE = 4, 32


class _Clips(Dataset):
    def __init__(self, n, num_classes, views, seed, bad=(), noise=0.6, labelled=True):
        g = torch.Generator().manual_seed(1234)
        self.patterns = torch.randn(num_classes, 3, FRAMES, SIZE, SIZE, generator=g)
        self.n, self.k, self.views, self.seed, self.bad, self.noise = (
            n, num_classes, views, seed, set(bad), noise,
        )  # fmt: skip
        self.labelled = labelled

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        label = i % self.k
        g = torch.Generator().manual_seed(self.seed * 100003 + i)
        shape = (self.views, 3, FRAMES, SIZE, SIZE) if self.views else (3, FRAMES, SIZE, SIZE)
        video = self.patterns[label] + self.noise * torch.randn(shape, generator=g)
        valid = i not in self.bad
        if not valid:
            video = torch.zeros_like(video)
        label = label if self.labelled else -1  # an unlabelled split: -1, as the loaders give
        return {"video": video, "label": label, "index": i, "valid": valid}


class TinyVideoData(LightningDataModule):
    """In-memory stand-in DataModule with the contract's batch dicts.

    Args:
        num_classes: classes.
        train_size: train videos.
        val_size: val videos.
        test_size: test videos.
        views: test views per video (clip-major; 3 crops).
        batch_size: train/val batch.
        test_batch_size: test/predict batch.
        bad: test indices that "failed to decode" (valid False, zeros).
        labelled: False: the test videos' labels are -1 (an unlabelled test split).
    """

    def __init__(
        self,
        num_classes: int = 4,
        train_size: int = 32,
        val_size: int = 16,
        test_size: int = 15,
        views: int = 6,
        batch_size: int = 8,
        test_batch_size: int = 2,
        bad: tuple[int, ...] = (),
        labelled: bool = True,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.class_names = [f"class_{i}" for i in range(num_classes)]
        self.batch_size, self.test_batch_size = batch_size, test_batch_size
        crops = 3 if views % 3 == 0 else 1  # clip-major views: clips x crops
        self.spec = ClipSpec(frames=FRAMES, stride=2, train_scale=(SIZE, SIZE), crop_size=SIZE,
                             test_scale=SIZE, num_clips=max(1, views // crops), num_crops=crops,
                             mean=(0.5,) * 3)  # fmt: skip
        self.train = _Clips(train_size, num_classes, 0, seed=1)
        self.val = _Clips(val_size, num_classes, 0, seed=2)
        self.test = _Clips(test_size, num_classes, views, seed=3, bad=bad, labelled=labelled)

    def video_names(self, stage):
        return [f"video_{i:03d}.mp4" for i in range(len(self.test))]

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True, generator=g)

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.test, batch_size=self.test_batch_size)

    def predict_dataloader(self):
        return DataLoader(self.test, batch_size=self.test_batch_size)


def tiny_model(**kw) -> VideoClassifier:
    kw.setdefault("arch", "a2net_tiny")
    kw.setdefault("num_classes", 4)
    kw.setdefault("lr", 0.05)
    return VideoClassifier(**kw)


def tiny_trainer(tmp_path, **kw) -> Trainer:
    kw.setdefault("max_epochs", 1)
    return Trainer(
        accelerator="cpu",
        devices=1,
        default_root_dir=str(tmp_path),
        logger=kw.pop("logger", False),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=kw.pop("enable_checkpointing", False),
        **kw,
    )


def test_training_step_lowers_loss_on_fixed_batch(tmp_path):
    """``training_step`` itself, run by a Trainer with the module's own optimizer: 8 steps on one
    fixed batch (8 videos, batch 8) lower the loss it returns and logs to under 0.7 of the first."""

    class StepLoss(Callback):
        def __init__(self) -> None:
            self.losses: list[float] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.losses.append(float(outputs["loss"]))
            assert float(trainer.callback_metrics["train/loss"]) == self.losses[-1]

    torch.manual_seed(0)
    model = tiny_model(lr=0.05, weight_decay=0.0, scheduler="constant")
    record = StepLoss()
    trainer = tiny_trainer(tmp_path, max_epochs=8, callbacks=[record], limit_val_batches=0)
    trainer.fit(model, TinyVideoData(train_size=8, batch_size=8))
    losses = record.losses
    assert len(losses) == 8 and all(math.isfinite(x) for x in losses), losses
    assert losses[-1] < 0.7 * losses[0], losses


def test_no_weight_decay_on_batchnorm_and_bias():
    model = tiny_model()
    decay, no_decay = param_groups(model.net, 1e-4)
    names = {id(p): n for n, p in model.net.named_parameters()}
    assert all(p.ndim > 1 for p in decay["params"])
    no_decay_names = [names[id(p)] for p in no_decay["params"]]
    assert any(".bn" in n or n.startswith("bn") for n in no_decay_names)
    assert "fc.bias" in no_decay_names
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 1e-4


def test_schedules_warmup_cosine_and_steps():
    cos = WarmupSchedule(total_steps=100, warmup_steps=10, kind="cosine", warmup_start=0.0)
    assert cos(0) == 0.0 and cos(5) == pytest.approx(0.5) and cos(10) == pytest.approx(1.0)
    assert cos(55) == pytest.approx(0.5) and cos(100) == pytest.approx(0.0, abs=1e-12)
    step = WarmupSchedule(total_steps=100, kind="step", milestones=[30, 60], gamma=0.1)
    assert [step(s) for s in (0, 29, 30, 59, 60, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_fit_uses_step_schedule_in_epochs_and_sgd_groups(tmp_path):
    model = tiny_model(scheduler="step", milestones=[1.0], gamma=0.1, lr=0.2, momentum=0.8)
    trainer = tiny_trainer(tmp_path, max_epochs=2, limit_val_batches=0)
    lrs = []

    from lightning.pytorch import Callback

    class LR(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer.callbacks.append(LR())
    trainer.fit(model, TinyVideoData())
    opt = trainer.optimizers[0]
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.8
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0]
    assert lrs == pytest.approx([0.2] * 4 + [0.02] * 4)  # 4 steps per epoch, milestone epoch 1


def test_milestones_in_epochs_fall_on_epoch_starts_with_accumulation(tmp_path):
    """4 batches per epoch, ``accumulate_grad_batches`` 3: Lightning steps after batches 3 and 4,
    2 optimizer steps per epoch, so milestone epoch 1 is step 2. Before, an epoch counted
    4 / 3 steps and the LR dropped at step 1, for the last batch of epoch 0."""
    from lightning.pytorch import Callback

    lrs: list[float] = []

    class LR(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    model = tiny_model(scheduler="step", milestones=[1.0], gamma=0.1, lr=0.2)
    trainer = tiny_trainer(
        tmp_path, max_epochs=2, limit_val_batches=0, accumulate_grad_batches=3, callbacks=[LR()]
    )
    trainer.fit(model, TinyVideoData())
    assert trainer.global_step == 4
    assert lrs == pytest.approx([0.2] * 4 + [0.02] * 4)


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"scheduler": "step", "milestones": [1.0, 0.25]}, "model.milestones [1] (epochs)"),
        ({"warmup_epochs": 1.0}, "model.warmup_epochs 1 does not end before it"),
        ({"scheduler": "step", "milestones": [0.25], "warmup_epochs": 0.25}, None),
    ],
)
def test_schedule_epochs_past_the_fits_end_are_said(tmp_path, options, said):
    """A fit of 2 steps (``max_steps``; 4 per epoch): a milestone or a warm-up placed at or
    after its end is named in one warning (the config's 40-epoch milestones under
    ``--trainer.max_epochs 5`` left the LR constant without a word); one inside it is not."""
    import warnings

    trainer = tiny_trainer(tmp_path, max_epochs=4, max_steps=2, limit_val_batches=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(tiny_model(**options), TinyVideoData())
    past = [str(w.message) for w in caught if "a2video: this fit is" in str(w.message)]
    assert len(past) == (said is not None), past
    if said is not None:
        assert said in past[0] and "this fit is 2 optimizer steps (0.5 epochs of 4)" in past[0]


def test_a_fit_without_an_end_refuses_the_cosine_and_runs_the_step_schedule(tmp_path):
    """``max_epochs -1`` (a fit that ``max_time`` or a callback ends): the cosine, which needs
    the run's length, stops in one line naming the options; the step schedule runs, its
    milestones in epochs. Before, both stopped with ``OverflowError: cannot convert float
    infinity to integer`` from inside Lightning's ``configure_optimizers`` call."""
    from lightning.pytorch import Callback

    lrs: list[float] = []

    class LRThenStop(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

        def on_train_epoch_end(self, trainer, pl_module):
            trainer.should_stop = trainer.current_epoch == 1

    endless = {"max_epochs": -1, "limit_val_batches": 0}
    with pytest.raises(ValueError, match=r"--trainer\.max_epochs N or --trainer\.max_steps N"):
        tiny_trainer(tmp_path / "cosine", **endless).fit(tiny_model(), TinyVideoData())
    model = tiny_model(scheduler="step", milestones=[1.0], gamma=0.1, lr=0.2)
    trainer = tiny_trainer(tmp_path / "step", callbacks=[LRThenStop()], **endless)
    trainer.fit(model, TinyVideoData())
    assert lrs == pytest.approx([0.2] * 4 + [0.02] * 4)


def test_lr_scaled_linearly_with_global_batch(tmp_path):
    model = tiny_model(lr=0.1, lr_base_batch_size=64, scheduler="constant")
    trainer = tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(model, TinyVideoData(batch_size=8))
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 8 / 64)


def test_nonfinite_loss_is_skipped_counted_then_stops(tmp_path):
    model = tiny_model(max_nonfinite_steps=3)

    class NaNFromSecondStep(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.calls = inner, 0

        def forward(self, logits, label):
            self.calls += 1
            loss = self.inner(logits, label)
            return loss * float("nan") if self.calls >= 2 else loss

    model.criterion = NaNFromSecondStep(model.criterion)
    trainer = tiny_trainer(tmp_path, max_epochs=3, limit_val_batches=0)
    with pytest.raises(NonFiniteLossError, match="3 consecutive steps had a non-finite loss"):
        trainer.fit(model, TinyVideoData())
    assert model.nonfinite_total == 3
    # skipped steps never reach the weights (a NaN update would have poisoned them)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_bf16_mixed_forward_close_to_fp32_and_finite(tmp_path):
    model = tiny_model().eval()
    x = TinyVideoData().train[0]["video"][None].repeat(2, 1, 1, 1, 1)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert torch.isfinite(low).all()
    assert torch.allclose(low.float(), ref, atol=0.1, rtol=0.05)
    # One optimizer step through the Trainer's bf16-mixed plugin. On the CPU the module warns:
    # torch's CPU bf16 Conv3d weight gradient can be non-finite (docs/training.md).
    trainer = tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0, precision="bf16-mixed")
    with pytest.warns(UserWarning, match="bf16 training on the CPU"):
        trainer.fit(tiny_model(), TinyVideoData())
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))


def test_multiview_test_writes_predictions_and_reports_unreadable(tmp_path, capsys):
    model = tiny_model()
    trainer = tiny_trainer(tmp_path, logger=True)
    dm = TinyVideoData(test_size=7, views=6, bad=(3,))
    (metrics,) = trainer.test(model, dm)
    out = trainer.log_dir
    with open(os.path.join(out, "predictions.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["index"]) for r in rows] == list(range(7))
    assert rows[3]["valid"] == "0" and rows[3]["top1"] == ""
    assert rows[0]["video"] == "video_000.mp4" and rows[0]["top1"].startswith("class_")
    assert os.path.getsize(os.path.join(out, "confusion_matrix.png")) > 0
    assert metrics["test/videos"] == 6 and metrics["test/unreadable"] == 1
    for key in ("top1", "top5", "mean_class_acc", "clip_top1", "clip_top5"):
        assert 0.0 <= metrics[f"test/{key}"] <= 1.0


def test_centre_view_is_the_single_clip():
    model = tiny_model(clip_spec=TinyVideoData(views=6).spec).eval()
    video = torch.randn(2, 6, 3, FRAMES, SIZE, SIZE)  # 2 clips x 3 crops, clip-major
    mean, single = model._view_probs(video)
    with torch.no_grad():
        centre = model(video[:, 4]).softmax(1)  # clip 1 (of 2), crop 1 (of 3): view 1*3+1
        every = torch.stack([model(video[:, v]).softmax(1) for v in range(6)], 1).mean(1)
    assert torch.allclose(single, centre, atol=1e-5)
    assert torch.allclose(mean, every, atol=1e-5)


def test_validation_loss_leaves_out_unreadable_videos_and_counts_them():
    """An unreadable val video (its zero clip, ``valid`` False) is not in ``val/loss``, which
    checkpoint selection and early stopping watch, and is counted as ``val/unreadable``."""
    torch.manual_seed(0)
    model = tiny_model().eval()
    data = _Clips(6, 4, 0, seed=3, bad=(2,))
    batch = torch.utils.data.default_collate([data[i] for i in range(6)])
    with torch.no_grad():
        model.validation_step(batch, 0)
        loss = model.val_loss.compute()
        keep = batch["valid"]
        logits = model(batch["video"][keep]).float()
        expected = torch.nn.functional.cross_entropy(logits, batch["label"][keep])
    torch.testing.assert_close(loss, expected)
    results = model.val_videos.compute()
    assert int((~results.valid).sum()) == 1


def test_training_loss_leaves_out_samples_without_a_video():
    """A train sample whose video and replacements were all unreadable (``valid`` False, a zero
    clip carrying the bad video's label) adds nothing to the loss; with all valid it is the
    criterion's mean (label smoothing included)."""
    model = tiny_model(label_smoothing=0.1)
    logits, label = torch.randn(4, 4), torch.tensor([0, 1, 2, 3])
    valid = torch.tensor([True, True, False, True])
    smoothed = torch.nn.functional.cross_entropy
    keep = smoothed(logits[valid], label[valid], label_smoothing=0.1)
    torch.testing.assert_close(model._training_loss(logits, label, valid), keep)
    full = model._training_loss(logits, label, torch.ones(4, dtype=torch.bool))
    torch.testing.assert_close(full, smoothed(logits, label, label_smoothing=0.1))


def _centre_view_probs(model, dm, view: int) -> torch.Tensor:
    """Each test video's softmax of view ``view``, computed directly."""
    with torch.no_grad():
        return torch.stack([model(dm.test[i]["video"])[view].softmax(0) for i in range(dm.test.n)])


def test_the_datas_views_decide_the_centre_view_over_the_checkpoints(tmp_path):
    """A checkpoint trained with 6x1 test views, tested on data decoding 2x3 (the same count):
    the centre view is the data's (clip 1, centre crop: view 4), scores.npz records 2x3, and a
    clip_spec given to the model with other views is said in one line."""
    import numpy as np

    six_by_one = ClipSpec(frames=FRAMES, stride=2, train_scale=(SIZE, SIZE), crop_size=SIZE,
                          test_scale=SIZE, num_clips=6, num_crops=1, mean=(0.5,) * 3)  # fmt: skip
    trainer = tiny_trainer(tmp_path / "fit", max_steps=1, limit_val_batches=0)
    trainer.fit(tiny_model(clip_spec=six_by_one), TinyVideoData(train_size=8))
    ckpt = str(tmp_path / "six_by_one.ckpt")
    trainer.save_checkpoint(ckpt)

    dm = TinyVideoData(test_size=5, views=6)
    assert (dm.spec.num_clips, dm.spec.num_crops) == (2, 3)
    model = VideoClassifier.from_checkpoint(ckpt)
    assert (model.clip_spec.num_clips, model.clip_spec.num_crops) == (6, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny_trainer(tmp_path / "test").test(model, dm, verbose=False)
    assert not [w for w in caught if "test views" in str(w.message)]  # restored, not given
    results = model.video_results
    assert results.views == (2, 3)
    centre = _centre_view_probs(model.eval(), dm, 4)
    torch.testing.assert_close(results.clip_probs, centre, atol=1e-5, rtol=1e-4)
    with np.load(tmp_path / "test" / "scores.npz") as z:
        assert z["views"].tolist() == [2, 3]

    # the same views given to the model by hand: the data's still win, and that is said
    given = tiny_model(clip_spec=six_by_one)
    given.load_state_dict(model.state_dict())
    with pytest.warns(UserWarning, match=r"clip_spec has 6x1 test views but the data decodes 2x3"):
        tiny_trainer(tmp_path / "given").test(given, dm, verbose=False)
    assert given.video_results.views == (2, 3)
    torch.testing.assert_close(given.video_results.clip_probs, centre, atol=1e-5, rtol=1e-4)


def test_an_unlabelled_test_logs_no_accuracy_and_says_there_is_nothing_to_score(tmp_path, caplog):
    """A test split without labels (accepted, docs/data.md) logged every accuracy as 0.0 and
    'metrics over 0 videos'; its predictions are still written."""
    import logging

    import numpy as np

    model = tiny_model()
    dm = TinyVideoData(test_size=5, views=6, bad=(2,), labelled=False)
    with caplog.at_level(logging.INFO):
        (metrics,) = tiny_trainer(tmp_path).test(model, dm, verbose=False)
    assert metrics == {"test/videos": 0.0, "test/unreadable": 1.0}
    said = [r.getMessage() for r in caplog.records if "a2video test:" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(
        "a2video test: no labelled videos, nothing to score (5 distinct seen, 1 unreadable); "
        "the predictions are in predictions.csv and scores.npz (`predict` is the command for "
        "unlabelled data)"
    ), said
    with open(tmp_path / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and {r["label"] for r in rows} == {"-1"}
    assert rows[0]["top1"].startswith("class_")
    with np.load(tmp_path / "scores.npz") as z:
        assert z["label"].tolist() == [-1] * 5
    assert not (tmp_path / "confusion_matrix.png").exists()


def test_predict_records_the_views_it_averaged(tmp_path):
    """`predict` wrote scores.npz without `views`: the report read a 3x3 predict as a
    single-view test, and the notebook's views table failed on it."""
    import numpy as np

    from a2video.explore.results import load_run

    model = tiny_model()
    dm = TinyVideoData(test_size=5, views=6)
    tiny_trainer(tmp_path).predict(model, dm)
    with np.load(tmp_path / "scores.npz") as z:
        assert str(z["stage"]) == "predict" and z["views"].tolist() == [2, 3]
        assert "view_topk_scores" not in z.files  # a predict keeps the views' average only
    run = load_run(tmp_path)
    assert run.views == (2, 3) and run.stage == "predict"
    assert run.accuracy_by_views() == {(2, 3): pytest.approx(run.accuracy())}


def test_videos_listed_but_missing_are_counted_in_the_metrics_summary_and_scores(
    kinetics_root, small_clip, tmp_path, caplog
):
    """A listed video not on disk was said once before the run, then nowhere: the summary and
    the metrics counted the others only, and nothing recorded that one more was listed."""
    import logging

    import numpy as np

    from a2video.data import KineticsDataModule
    from a2video.explore.results import load_run

    listed = tmp_path / "listed.csv"
    rows = (Path(kinetics_root) / "annotations" / "test.csv").read_text().splitlines()
    listed.write_text("\n".join([*rows, "rising,NOTonDISKxx,1,11,test,0"]) + "\n")
    dm = KineticsDataModule(kinetics_root, test_split=str(listed), val_split=str(listed),
                            **small_clip)  # fmt: skip
    model = tiny_model(num_classes=dm.num_classes)
    with caplog.at_level(logging.INFO):
        (metrics,) = tiny_trainer(tmp_path / "test").test(model, dm, verbose=False)
    assert metrics["test/missing"] == 1 and metrics["test/videos"] == 4
    said = [r.getMessage() for r in caplog.records if "a2video test:" in r.getMessage()]
    assert said == [
        "a2video test: metrics over 4 videos (5 listed, 1 missing, 4 distinct seen, 0 unreadable)"
    ]
    with np.load(tmp_path / "test" / "scores.npz") as z:
        assert int(z["missing"]) == 1 and len(z["index"]) == 4
    assert load_run(tmp_path / "test").missing == 1
    (metrics,) = tiny_trainer(tmp_path / "val").validate(model, dm, verbose=False)
    assert metrics["val/missing"] == 1 and metrics["val/videos"] == 4


def test_video_paths_are_recorded_absolute_so_runs_read_from_elsewhere_find_them(
    kinetics_root, small_clip, tmp_path, monkeypatch
):
    """A relative --data.data_root recorded paths relative to the folder the test ran in: the
    report and the gallery, run from elsewhere, found no frames for any video."""
    import numpy as np

    from a2video.data import KineticsDataModule
    from a2video.explore.results import gallery_items, load_run

    root = Path(kinetics_root)
    monkeypatch.chdir(root.parent)
    dm = KineticsDataModule(root.name, **small_clip)  # relative to the current folder
    tiny_trainer(tmp_path / "run").test(tiny_model(num_classes=dm.num_classes), dm, verbose=False)
    with open(tmp_path / "run" / "predictions.csv") as f:
        videos = [r["video"] for r in csv.DictReader(f)]
    with np.load(tmp_path / "run" / "scores.npz") as z:
        assert z["video_names"].tolist() == videos
    assert len(videos) == 4 and all(os.path.isabs(v) and os.path.isfile(v) for v in videos)
    assert all(v.startswith(str(root.resolve()) + os.sep) for v in videos), videos
    monkeypatch.chdir(tmp_path)
    (item,) = gallery_items(load_run(tmp_path / "run"), [0], num_frames=2)
    assert "missing" not in item and item["frames"].shape[0] == 2
