"""VideoClassifier: the LightningModule that joins an A²-Net (or any registry arch) with the data.

Training follows the paper's video setting (Section 3; synchronous SGD with momentum, step schedule)
with the usual modern alternative (cosine with linear warm-up): SGD with momentum and weight decay,
no decay on BatchNorm and bias parameters, optional label smoothing. Precision (``bf16-mixed``,
``16-mixed``), gradient clipping and ``sync_batchnorm`` are Trainer options; the A² softmaxes and
matrix products run in the autocast dtype (see ``a2video.models.attention``).

The training step never waits for the host: a non-finite loss is flagged on the device and the
fused optimizer skips that update on the device (see ``training_step``); counters and train
accuracy are read on the host only every ``log_every_n_steps`` batches and at epoch end.

Evaluation (see :mod:`a2video.training.metrics`): clip top-1/top-5 during training; validation is
deduplicated by video index so it is exact under DDP; test/predict average the softmax over all
K×3 views of each video and also keep the centre view for the single-clip accuracy, write
``predictions.csv`` and a confusion matrix into the run directory, and report unreadable videos.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from torchmetrics import MeanMetric, SumMetric

from a2video import __version__
from a2video.data.datasets import ClipSpec
from a2video.data.transforms import normalize_batch

try:  # jsonargparse (the CLI's) is optional for the module itself, e.g. on a GPU benchmark host
    from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
except ImportError:  # pragma: no cover - exercised by tests/test_bench_gpu.py
    OptimizerCallable = Callable[[Iterable], torch.optim.Optimizer]  # type: ignore[misc]
    LRSchedulerCallable = Callable[[torch.optim.Optimizer], Any]  # type: ignore[misc]
from a2video.training.callbacks import log_epoch_figures, monitor_only
from a2video.training.checkpoint import plain_data
from a2video.training.compiled import CompiledForward
from a2video.training.metrics import (
    ClipAccuracy,
    VideoAccumulator,
    VideoResults,
    video_metrics,
)
from a2video.training.nonfinite import NonFiniteLossError, NonFiniteSteps
from a2video.training.optim import (
    WarmupSchedule,
    apply_settings,
    check_resumable,
    global_batch_size,
    group_settings,
    param_groups,
    steps_per_epoch,
)
from a2video.training.outputs import (
    fresh_output_dir,
    missing_videos,
    unreadable_summary,
    video_names,
    write_outputs,
)
from a2video.training.views import per_view_probs, view_layout

__all__ = [
    "SCHEDULE_OPTIONS",
    "SGD_OPTIONS",
    "NonFiniteLossError",
    "VideoClassifier",
    "WarmupSchedule",
    "describe_callable",
    "param_groups",
]

# The built-in SGD's options (unused, and not recorded, when ``optimizer`` is given).
SGD_OPTIONS = ["lr", "momentum", "weight_decay", "nesterov"]
# The built-in LR schedule's options (unused when ``lr_scheduler`` is given).
SCHEDULE_OPTIONS = ["scheduler", "warmup_epochs", "milestones", "gamma", "min_lr_ratio"]
# What a refusal of a pickled file in arch_options (pretrained_2d / pretrained_ptv, loaded as
# the model is built, before --unsafe_load is read) tells the user to do instead.
ARCH_OPTIONS_TRUST = (
    "it as --model.pretrained_2d FILE with --unsafe_load true for ImageNet weights (weights in "
    "--model.arch_options are always loaded safely), or save its tensors alone with "
    "torch.save(state_dict, NEW_FILE) and give NEW_FILE"
)

CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


@dataclass(frozen=True)
class ResumedOptimizer:
    """What a resumed fit's checkpoint holds of the optimisation, kept until the train start."""

    path: str | None  # the checkpoint (Trainer.ckpt_path)
    state: dict[str, Any] | None  # its optimizer state (None: a weights-only checkpoint)
    optimizer: str | None  # the class names it recorded
    scheduler: str | None


def describe_callable(factory: Any) -> dict[str, Any] | str | None:
    """An optimizer or scheduler factory as plain data: ``{"class_path", "init_args"}`` for
    the ``functools.partial`` that LightningCLI builds from YAML, else its name (None: None)."""
    if factory is None:
        return None
    if isinstance(factory, functools.partial):
        target = next((a for a in factory.args if isinstance(a, type)), factory.func)
        name = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', target)}"
        return {"class_path": name.lstrip("."), "init_args": plain_data(factory.keywords)}
    return getattr(factory, "__qualname__", type(factory).__qualname__)


def _mean_over_valid(losses: Tensor, valid: Tensor | None) -> tuple[Tensor, Tensor]:
    """The mean of per-clip ``losses`` over the clips that hold a video (``valid``; all when
    None), and how many those are (0-d tensors: no host sync)."""
    used = torch.ones_like(losses) if valid is None else valid.to(losses.dtype)
    count = used.sum()
    return (losses * used).sum() / count.clamp(min=1), count


class VideoClassifier(LightningModule):
    """Video action classifier around any ``a2video.models`` registry architecture.

    Args:
        arch: registry name (``a2video.models.list_models()``), e.g. ``a2net_r50``.
        num_classes: number of classes (linked from the datamodule by the CLI).
        arch_options: keyword options of ``build_model`` (``inflate``, ``dropout``…).
        pretrained_2d: 2-D ImageNet weights to inflate when a fit starts from scratch
            ("imagenet" or a path); ignored when resuming or evaluating a checkpoint.
        class_names: names by class index (linked from the datamodule by the CLI).
        optimizer: an optimizer callable (``class_path`` in YAML, Lightning's
            ``OptimizerCallable``) receiving the parameter groups; its own ``lr`` and
            ``weight_decay`` apply (BatchNorm and bias groups get decay 0). None: SGD with
            ``lr``, ``momentum``, ``weight_decay``, ``nesterov``.
        lr_scheduler: an LR scheduler callable (``class_path`` in YAML, Lightning's
            ``LRSchedulerCallable``), stepped per epoch; replaces the built-in ``scheduler``.
        lr: learning rate of the default SGD (ignored with ``optimizer``).
        momentum: momentum of the default SGD.
        weight_decay: decay of the default SGD on conv/linear weights (never on BN or bias).
        nesterov: Nesterov momentum of the default SGD.
        lr_base_batch_size: if set, the optimizer's LR is for this global batch size and is
            scaled linearly to the actual one (per-device batch × devices × nodes × gradient
            accumulation), whichever optimizer is used.
        backbone_lr_mult: the backbone's LR is the head's times this (fine-tuning; a
            parameter-group option, so the optimizer's decay still applies).
        scheduler: "cosine" (with linear warm-up), "step" (the paper's) or "constant".
        warmup_epochs: linear warm-up length in epochs (fractions allowed).
        milestones: epochs at which the step schedule multiplies the LR by ``gamma``.
        gamma: step factor.
        min_lr_ratio: final LR of the cosine as a fraction of ``lr``.
        label_smoothing: cross-entropy label smoothing.
        max_nonfinite_steps: stop with an error after this many consecutive NaN/inf losses
            (each such step is skipped on the device and counted; checked every
            ``trainer.log_every_n_steps`` batches and at epoch end).
        clip_spec: the clips and test views the data produces (the DataModule's ``spec``, linked
            by the CLI; restored from checkpoints): gives the mean and std that ``forward``
            normalises uint8 clips with, and travels with the weights. In test/predict the
            DataModule's ``spec`` (the views it decoded) picks the centre view for the
            single-clip accuracy, whatever this says (one warning where a ``clip_spec`` given
            here names other views); this one only where the DataModule has no ``spec``.
        view_chunk: forward at most this many clips at once in test/predict (0: all views of a
            batch at once); bounds memory for 10×3 views.
        channels_last: use ``channels_last_3d`` memory format (faster convs on recent GPUs).
        compile: ``torch.compile`` the network's forward (the state dict keeps plain names).
        compile_mode: ``torch.compile``'s ``mode``: ``"default"``, ``"reduce-overhead"``
            (CUDA graphs), ``"max-autotune"`` or ``"max-autotune-no-cudagraphs"`` (benchmark
            them with ``benchmarks/bench_gpu.py --compile-mode``).
        write_outputs: write ``predictions.csv`` and ``confusion_matrix.png`` after test/predict.
    """

    compile_options: ClassVar[dict[str, Any]] = {}
    """Keyword arguments of ``torch.compile`` (e.g. ``{"backend": "aot_eager"}`` in tests)."""

    def __init__(
        self,
        arch: str = "a2net_r50",
        num_classes: int = 400,
        arch_options: dict[str, Any] | None = None,
        pretrained_2d: str | None = None,
        class_names: list[str] | None = None,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        nesterov: bool = False,
        lr_base_batch_size: int | None = None,
        backbone_lr_mult: float = 1.0,
        scheduler: Literal["cosine", "step", "constant"] = "cosine",
        warmup_epochs: float = 0.0,
        milestones: list[float] | None = None,
        gamma: float = 0.1,
        min_lr_ratio: float = 0.0,
        label_smoothing: float = 0.0,
        max_nonfinite_steps: int = 10,
        clip_spec: ClipSpec | None = None,
        view_chunk: int = 0,
        channels_last: bool = False,
        compile: bool = False,
        compile_mode: CompileMode = "default",
        write_outputs: bool = True,
    ) -> None:
        super().__init__()
        if backbone_lr_mult < 0:
            raise ValueError(f"backbone_lr_mult must be >= 0, got {backbone_lr_mult}")
        if view_chunk < 0:  # range() with a negative step: no forward, torch.cat([]) failed
            raise ValueError(
                f"--model.view_chunk {view_chunk}: it must be >= 0 (clips per forward in "
                "test/predict; 0: all views of a batch at once)"
            )
        ignore = ["optimizer", "lr_scheduler", "clip_spec"]
        if optimizer is not None:  # the built-in SGD's settings are not used: not recorded
            ignore += SGD_OPTIONS
        self.save_hyperparameters(ignore=ignore)
        if optimizer is not None or lr_scheduler is not None:
            # What the run used, in hparams.yaml and the checkpoint (not constructor options:
            # a checkpoint's hyper-parameters never replace the optimizer a command configures).
            described = {"optimizer_used": describe_callable(optimizer)}
            described["lr_scheduler_used"] = describe_callable(lr_scheduler)
            self.save_hyperparameters(
                {**self.hparams, **{k: v for k, v in described.items() if v is not None}}
            )
        self.arch = arch
        self.num_classes = num_classes
        self.arch_options = dict(arch_options or {})
        self.class_names = list(class_names) if class_names is not None else None
        self.optimizer_fn = optimizer
        self.lr_scheduler_fn = lr_scheduler
        self.net = self.build_net()
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last_3d)
        self.compiled_forward = CompiledForward()  # not a submodule: a clean state dict
        self._pretrained_done = False
        self.unsafe_load = False  # pickles in pretrained_2d: the CLI's --unsafe_load sets it

        # Per clip: _training_loss averages it over the clips that hold a video
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing, reduction="none")
        self.train_acc = ClipAccuracy(k=5)
        self.val_videos = VideoAccumulator(num_classes)
        self.val_loss = MeanMetric()
        self.test_videos = VideoAccumulator(num_classes)
        self.bad_videos = SumMetric(nan_strategy="disable")  # its NaN check would sync per step
        self.nonfinite = NonFiniteSteps()  # skipped NaN/inf steps, counted on the device
        self._clip_spec_given = False  # set by the clip_spec property's setter
        self.clip_spec = clip_spec  # None: the DataModule's at setup, or the checkpoint's
        # The views of this test/predict's batches: the DataModule's spec (what was decoded)
        self._data_views: ClipSpec | None = None
        self.run_config: str | None = None  # the CLI's YAML, stored in checkpoints
        self.video_results: VideoResults | None = None
        self.test_summary: dict[str, float] = {}
        # Resuming: the configured optimizer settings and schedule, and what the checkpoint
        # holds of its optimisation until the train start.
        self._configured_groups: list[dict[str, Any]] | None = None
        self._configured_schedule: dict[str, Any] | None = None
        self._resumed: ResumedOptimizer | None = None
        self._output_dir: str | None = None  # this test/predict run's, see output_dir()

    @property
    def clip_spec(self) -> ClipSpec | None:
        """The clips and test views the data produces (see the class docstring)."""
        return self._clip_spec

    @clip_spec.setter
    def clip_spec(self, spec: ClipSpec | None) -> None:
        # Set by the user (or the CLI's link of data.spec); one restored from a checkpoint or
        # taken from the DataModule is assigned to _clip_spec and is not "given".
        self._clip_spec = spec
        self._clip_spec_given = spec is not None

    # ------------------------------------------------------------------ network
    def build_net(self) -> nn.Module:
        """Build the network from the registry (no pretrained weights: see ``configure_model``;
        weights given in ``arch_options`` load here, always safely)."""
        from a2video.errors import unsafe_flag_as
        from a2video.models import build_model

        with unsafe_flag_as(ARCH_OPTIONS_TRUST):
            return build_model(self.arch, num_classes=self.num_classes, **self.arch_options)

    def configure_model(self) -> None:
        # Inflate ImageNet weights only when a fit starts: a resumed fit restores the checkpoint
        # over them right after this hook, and validate/test/predict never need them.
        pretrained = self.hparams.get("pretrained_2d")
        if not pretrained or self._pretrained_done or self._trainer is None:
            return
        if self.trainer.state.fn != "fit":
            return
        from a2video.models.weights import load_weights

        inflate = self.arch_options.get("inflate", "mean")
        report = load_weights(
            self.net, pretrained, kind="imagenet", inflate=inflate, unsafe=self.unsafe_load
        )
        self._pretrained_done = True
        rank_zero_info(f"a2video: initialised {self.arch} from 2-D weights {pretrained!r}: "
                       f"{report.summary()}")  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(N, num_classes)`` of clips ``(N, 3, T, H, W)``: normalised float, or uint8
        (normalised here with the clip spec's mean and std, as the DataModules do)."""
        if self.hparams.compile and self.compiled_forward.state != "failed":
            options = dict(self.compile_options)
            if self.hparams.get("compile_mode") not in (None, "default"):
                options["mode"] = self.hparams.compile_mode
            return self.compiled_forward(self._network, x, options)
        return self._network(x)

    def _network(self, x: Tensor) -> Tensor:
        """The network on clips as given; compiled whole, so Inductor fuses a uint8 clip's
        normalisation and the channels-last copy into the first layer's input."""
        if x.dtype == torch.uint8:
            if self.clip_spec is None:
                raise ValueError(
                    "a2video: uint8 clips need the clip spec's mean and std to be normalised: "
                    "pass clip_spec= (the DataModule's spec) or normalised float clips"
                )
            x = normalize_batch(x, self.clip_spec.mean, self.clip_spec.std)
        # the loaders' clips come channels_last_3d (transforms.stack_clips): the layout the
        # network asks for, else the standard one, so its numbers do not depend on the input's
        memory = torch.channels_last_3d if self.hparams.channels_last else torch.contiguous_format
        return self.net(x.contiguous(memory_format=memory))

    def takes_uint8(self, mean: Sequence[float], std: Sequence[float]) -> bool:
        """Whether the DataModules hand this module uint8 clips
        (:func:`a2video.data.datamodules.to_model_input`): when it is compiled and normalises
        with the same ``mean`` and ``std`` (its clip spec's)."""
        spec = self.clip_spec
        return (
            bool(self.hparams.compile)
            and spec is not None
            and tuple(spec.mean) == tuple(mean)
            and tuple(spec.std) == tuple(std)
        )

    # ------------------------------------------------------------------ train
    def _check_resumed_optimizer(self) -> None:
        """One line, before Lightning loads it, where the resumed optimizer state cannot fit."""
        resumed = self._resumed
        if resumed is not None and resumed.state is not None and self.trainer.optimizers:
            schedulers = (resumed.scheduler, self._scheduler_name())
            check_resumable(
                resumed.path,
                resumed.state,
                self.trainer.optimizers[0],
                resumed.optimizer,
                schedulers,
            )

    def _scheduler(self) -> Any:
        """This run's LR scheduler (None: none)."""
        configs = self.trainer.lr_scheduler_configs
        return configs[0].scheduler if configs else None

    def _scheduler_name(self) -> str | None:
        """The class of this run's LR scheduler (None: none)."""
        scheduler = self._scheduler()
        return type(scheduler).__name__ if scheduler is not None else None

    def shift_schedule(self, steps: int) -> bool:
        """Move the built-in LR schedule's points placed in epochs (warm-up end, milestones, the
        end) by ``steps`` optimizer steps: a resume whose steps so far are not this run's steps
        per epoch times its epochs (another process count, batch size or accumulation, or an
        epoch trained again); the end stays at ``max_steps`` where that comes first. Applied with
        the rest of the configured optimisation after the resume. False where there is no
        built-in schedule (``lr_scheduler`` given)."""
        schedule = self._configured_schedule
        if not isinstance(schedule, dict) or "total_steps" not in schedule:
            return False
        trainer = self.trainer
        batches = trainer.num_training_batches
        if trainer.max_epochs not in (None, -1) and math.isfinite(batches):
            per_epoch = math.ceil(batches / trainer.accumulate_grad_batches)
            end = per_epoch * max(trainer.max_epochs, 1) + steps
            if trainer.max_steps not in (None, -1):
                end = min(end, trainer.max_steps)
            schedule["total_steps"] = max(1, int(end))
        schedule["warmup_steps"] = max(0, int(schedule["warmup_steps"]) + steps)
        schedule["milestones"] = [max(0, int(m) + steps) for m in schedule["milestones"]]
        return True

    def _apply_configured_optimisation(self) -> None:
        """After a resume: this run's LR, decay, momentum and schedule over the checkpoint's
        (:func:`a2video.training.optim.apply_settings`), said in one line when they differ."""
        resumed, self._resumed = self._resumed, None
        groups = self._configured_groups
        if resumed is None or resumed.state is None or groups is None:
            return
        if not self.trainer.optimizers:
            return
        changes = apply_settings(
            self.trainer.optimizers[0], self._scheduler(), groups, self._configured_schedule
        )
        if changes:
            rank_zero_info(
                f"a2video: resumed {resumed.path} with this run's optimisation settings: "
                + ", ".join(changes)
            )

    def on_fit_start(self) -> None:
        self._check_resumed_optimizer()
        self.nonfinite.fresh(self.device)  # ddp_spawn shares CPU tensors between its processes
        if str(self.trainer.precision).startswith("bf16") and self.device.type == "cpu":
            rank_zero_warn(
                "a2video: bf16 training on the CPU: torch's CPU (oneDNN) bf16 Conv3d backward can "
                "return non-finite weight gradients for small temporal extents (e.g. T=2 with a "
                "3×1×1 kernel); use precision 32 on the CPU, bf16-mixed is for GPUs "
                "(docs/training.md, Known limitations)."
            )

    def _training_loss(self, logits: Tensor, label: Tensor, valid: Tensor | None) -> Tensor:
        """The criterion over the clips that hold a video: a sample whose video and every
        replacement were unreadable (``valid`` False, an all-zero clip) is left out, on the
        device (no host sync)."""
        return _mean_over_valid(self.criterion(logits, label), valid)[0]

    def on_train_start(self) -> None:
        self._apply_configured_optimisation()  # Lightning has restored the optimizer by now

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        video, label = batch["video"], batch["label"]
        logits = self(video)
        loss = self._training_loss(logits.float(), label, batch.get("valid"))
        # Unreadable videos: the data room replaces them in train and flags the sample `failed`
        # (`valid` False in other datamodules); summed per epoch over all ranks. The DataModule's
        # BadVideoMonitor counts the same flags per rank for its limit (docs/training.md, Metrics).
        flags = batch.get("failed")
        if flags is None and "valid" in batch:
            flags = ~batch["valid"].bool()
        if flags is not None:
            self.bad_videos.update(torch.as_tensor(flags).bool().sum())  # logged at epoch end

        finite = None
        if self.nonfinite.device_skip:  # 0-d 1.0/0.0 on the device: no host sync
            finite = self.nonfinite.flag(loss, self.trainer.world_size)
        elif not self.nonfinite.host_finite(self, loss):  # an optimizer that cannot skip: a sync
            return self.nonfinite.skip(self, batch_idx, self.hparams.max_nonfinite_steps, loss)
        self.train_acc.update(logits, label, finite)
        # Not in the progress bar: Lightning converts progress-bar values to floats every step.
        self.log("train/loss", loss, batch_size=label.shape[0])
        return loss

    # Non-finite steps (a2video.training.nonfinite): skipped on the device by a fused optimizer,
    # read on the host every ``trainer.log_every_n_steps`` batches and at epoch end.
    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure=None):
        """The Trainer's step, with the device-side skip flag handed to a fused optimizer."""
        return self.nonfinite.step(self, optimizer, optimizer_closure)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        every = max(1, int(self.trainer.log_every_n_steps or 1))
        if self.nonfinite.device_skip and (batch_idx + 1) % every == 0:
            self.nonfinite.check(self, self.hparams.max_nonfinite_steps, in_batch=True)

    @property
    def nonfinite_total(self) -> int:
        """Steps skipped for a non-finite loss so far (reads the device counter)."""
        return self.nonfinite.total

    @nonfinite_total.setter
    def nonfinite_total(self, value: int) -> None:
        self.nonfinite.total = value

    def on_train_epoch_end(self) -> None:
        self._check_bad_videos("train")
        if self.nonfinite.device_skip:
            self.nonfinite.check(self, self.hparams.max_nonfinite_steps)
        acc = self.train_acc.compute()  # sums over ranks: once per epoch
        self.train_acc.reset()
        figures = {
            "train/top1": acc["top1"],
            "train/top5": acc["top5"],
            "train/nonfinite_total": float(self.nonfinite_total),  # counted from a reduced flag
        }
        # Summed over the ranks here, on every rank, and logged as a plain value: a metric object
        # logged for Lightning to compute was computed (a collective) by the progress bar on
        # rank 0 alone, before this hook, and the ranks' collectives no longer matched.
        if self.bad_videos.update_called:  # the batches carry `failed` / `valid` flags
            figures["data/bad_videos"] = self.bad_videos.compute()
            self.bad_videos.reset()
        if log_epoch_figures(self.trainer):
            self.log_reduced(figures)
            return
        monitor_only(self.trainer, figures)  # over part of the epoch: not logged
        if self.trainer.loggers:
            rank_zero_info(
                f"a2video: the fit stopped inside epoch {self.current_epoch} (step "
                f"{self.global_step}): its train figures are logged when a resume "
                "(--ckpt_path last) finishes the epoch"
            )

    def log_reduced(self, values: dict[str, Tensor | float]) -> None:
        """Log epoch figures that are already the same on every rank.

        A metric's ``compute`` reduced them over the ranks (``ClipAccuracy``, ``MeanMetric``) or
        they come from the deduplicated union of :class:`VideoAccumulator`. ``sync_dist`` with
        ``max`` leaves such a value as it is (no rounding, unlike a mean over ranks) and tells
        Lightning it is synced, so its "use ``sync_dist=True``" advice, meant for per-rank
        values, stays for those. One small all-reduce per figure per epoch.
        """
        self.log_dict(values, sync_dist=True, reduce_fx="max")

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        logits = self(batch["video"]).float()
        label = batch["label"]
        # An unreadable video's all-zero clip is listed as unreadable, not scored in the loss
        losses = F.cross_entropy(logits, label, reduction="none")
        self.val_loss.update(*_mean_over_valid(losses, batch.get("valid")))
        probs = logits.softmax(dim=1)
        self.val_videos.update(batch["index"], label, probs, valid=batch.get("valid"))

    def _check_bad_videos(self, stage: str) -> None:
        """The DataModule's bad-video limit over every rank's bad files (a collective)."""
        check = getattr(getattr(self.trainer, "datamodule", None), "check_bad_videos", None)
        if callable(check):
            check(stage)

    def on_validation_epoch_end(self) -> None:
        self._check_bad_videos("val")
        # On every rank (compute all-gathers); deduplicated, identical everywhere: no more sync.
        results = self.val_videos.compute()
        self.val_videos.reset()
        m = video_metrics(results, self.num_classes)
        loss = self.val_loss.compute()  # a weighted mean over ranks
        self.val_loss.reset()
        # Val rows always have labels: only a val epoch whose every video was unreadable scores
        # none; 0 then, as the checkpoint and early-stopping monitors need a value.
        figures = {"val/top1": m.get("top1", 0.0), "val/top5": m.get("top5", 0.0)}
        figures["val/videos"] = m["videos"]
        figures["val/unreadable"] = m["unreadable"]
        missing = self._missing_videos("val")
        if missing is not None:  # listed in the annotations, not on disk: never scored
            figures["val/missing"] = float(missing[0])
        self.log_reduced({"val/loss": loss, **figures})

    def _missing_videos(self, split: str) -> tuple[int, int | None] | None:
        """``(missing, listed)`` of the DataModule's ``split`` (:func:`missing_videos`)."""
        return missing_videos(getattr(self.trainer, "datamodule", None), split)

    # ------------------------------------------------------------------ test / predict
    def _view_probs(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and single-view softmax of ``video`` ``(B, V, 3, T, H, W)`` → two ``(B, C)``."""
        probs, _, centre = self._per_view_probs(video)  # (B, V, C)
        return probs.mean(dim=1), probs[:, centre]

    def _view_layout(self, views: int) -> tuple[int, int]:
        """Crops per clip and the centre view among ``views`` (:func:`view_layout`): of the
        DataModule's spec in test/predict (the views it decoded), else of ``clip_spec``."""
        return view_layout(self._data_views or self.clip_spec, views)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        # Every view's softmax is kept (per-view top-k, view-subset accuracy: scores.npz).
        view_probs, crops, centre = self._per_view_probs(batch["video"])  # (B, V, C)
        probs, clip_probs = view_probs.mean(dim=1), view_probs[:, centre]
        self.test_videos.update(
            batch["index"], batch["label"], probs, clip_probs, batch.get("valid")
        )
        self.test_videos.update_views(batch["index"], view_probs, crops)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        view_probs, crops, centre = self._per_view_probs(batch["video"])  # (B, V, C)
        probs, clip_probs = view_probs.mean(dim=1), view_probs[:, centre]
        label = batch.get("label")
        if label is None:
            label = torch.full_like(batch["index"], -1)
        self.test_videos.update(batch["index"], label, probs, clip_probs, batch.get("valid"))
        # the views only (scores.npz records them), not every view's top-k as a test keeps
        self.test_videos.update_layout(batch["index"], view_probs.shape[1] // crops, crops)
        scores, classes = probs.topk(min(5, probs.shape[1]), dim=1)
        return {"index": batch["index"].cpu(), "top5": classes.cpu(), "scores": scores.cpu()}

    def _per_view_probs(self, video: Tensor) -> tuple[Tensor, int, int]:
        """Every view's softmax ``(B, V, C)`` (:func:`per_view_probs`), the crops per clip and
        the centre view (:meth:`_view_layout`)."""
        probs = per_view_probs(self, video, self.hparams.view_chunk)
        return probs, *self._view_layout(probs.shape[1])

    def on_test_start(self) -> None:
        self._output_dir = self._fresh_output_dir("test")

    def on_predict_start(self) -> None:
        self._output_dir = self._fresh_output_dir("predict")

    def _fresh_output_dir(self, stage: str) -> str:
        """This run's output folder (:func:`fresh_output_dir`), chosen on rank 0 before anything
        is written and the same on every rank."""
        base = self.trainer.log_dir or self.trainer.default_root_dir  # on every rank: broadcasts
        chosen = fresh_output_dir(base, stage) if self.trainer.is_global_zero else None
        return self.trainer.strategy.broadcast(chosen, src=0)

    def on_test_epoch_end(self) -> None:
        m = self._finish_videos("test")
        self.log_reduced({f"test/{k}": v for k, v in m.items()})

    def on_predict_epoch_end(self) -> None:
        self._finish_videos("predict")

    def _finish_videos(self, stage: str) -> dict[str, float]:
        self._check_bad_videos(stage)
        results = self.test_videos.compute()  # on every rank: it all-gathers
        self.test_videos.reset()
        self.video_results = results
        m = video_metrics(results, self.num_classes)
        # Listed in the annotations but not on disk: skipped before the run, so neither scored
        # nor unreadable (the same count on every rank: each reads the annotations)
        missing = self._missing_videos(stage)
        if missing is not None:
            m["missing"] = float(missing[0])
        self.test_summary = m
        out = self.output_dir()
        if self.trainer.is_global_zero:
            names = video_names(getattr(self.trainer, "datamodule", None), stage)
            wrote = bool(self.hparams.write_outputs)
            summary = unreadable_summary(stage, results, int(m["videos"]), names, wrote, missing)
            rank_zero_info(summary)
            if wrote:
                count = missing[0] if missing is not None else None
                write_outputs(out, results, self.num_classes, self.class_names, names, stage, count)
        return m

    def output_dir(self) -> str:
        """Where this test/predict run writes its outputs (the logger's ``log_dir``, or a new
        folder in it where an earlier run's outputs are: :func:`fresh_output_dir`)."""
        if self._output_dir is not None:
            return self._output_dir
        return self.trainer.log_dir or self.trainer.default_root_dir

    # ------------------------------------------------------------------ optimisation
    def lr_scale(self) -> float:
        """Linear LR scaling: global batch / ``lr_base_batch_size`` (1 when unset or unknown)."""
        base = self.hparams.lr_base_batch_size
        if not base:
            return 1.0
        global_batch = global_batch_size(self.trainer)
        if global_batch is None:
            rank_zero_warn("a2video: lr_base_batch_size set but the batch size is unknown")
            return 1.0
        return global_batch / base

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The optimizer's groups (:func:`param_groups` over the network; no decay on BN/bias)."""
        return param_groups(self.net, backbone_lr_mult=float(self.hparams.backbone_lr_mult))

    def configure_optimizers(self) -> dict[str, Any]:
        """The injected optimizer (or SGD) over :meth:`parameter_groups`, and the LR schedule.

        Every group's LR is the optimizer's own times the group's ``lr_mult`` and
        :meth:`lr_scale`, so scaling and fine-tuning multipliers apply to the LR in use whatever
        the optimizer; the decay groups keep the optimizer's ``weight_decay``.
        """
        hp = self.hparams
        groups = self.parameter_groups()
        if self.optimizer_fn is not None:
            optimizer = self.optimizer_fn(groups)
        else:
            optimizer = torch.optim.SGD(
                groups,
                lr=hp.lr,
                momentum=hp.momentum,
                nesterov=hp.nesterov,
                weight_decay=hp.weight_decay,
                fused=True,  # one kernel, and it can skip a non-finite step on the device
            )
        scale = self.lr_scale()
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * scale * group.get("lr_mult", 1.0)
        if scale != 1.0:
            base = optimizer.defaults.get("lr")
            rank_zero_info(
                f"a2video: lr {base} for batch {hp.lr_base_batch_size} → {base * scale:g} for "
                f"global batch {global_batch_size(self.trainer)} (linear scaling)"
            )
        self._configured_groups = group_settings(optimizer)  # what a resume puts back
        self._configured_schedule = None
        if self.lr_scheduler_fn is not None:  # Lightning's default: stepped once per epoch
            return {"optimizer": optimizer, "lr_scheduler": self.lr_scheduler_fn(optimizer)}
        total = self._schedule_length(self.trainer.estimated_stepping_batches)
        per_epoch = steps_per_epoch(self.trainer, total)
        schedule = WarmupSchedule(
            total_steps=total,
            warmup_steps=round(hp.warmup_epochs * per_epoch),
            kind=hp.scheduler,
            milestones=[round(m * per_epoch) for m in (hp.milestones or [])],
            gamma=hp.gamma,
            min_ratio=hp.min_lr_ratio,
        )
        self._configured_schedule = dict(vars(schedule))
        if total > 0:
            self._say_schedule_past_the_end(schedule, per_epoch)
        sched = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _say_schedule_past_the_end(self, schedule: WarmupSchedule, per_epoch: float) -> None:
        """One warning where the schedule's epochs lie at or past this fit's end (a shorter
        ``--trainer.max_epochs`` or ``max_steps`` than the config's schedule was written for):
        the LR would never drop at those milestones, or never finish its warm-up."""
        hp, total = self.hparams, schedule.total_steps
        late = [m for m in hp.milestones or [] if round(m * per_epoch) >= total]
        late = late if schedule.kind == "step" else []
        said = []
        if late:
            said.append(
                f"model.milestones [{', '.join(f'{m:g}' for m in late)}] (epochs) are at or "
                f"past its end: the LR is never multiplied by {hp.gamma:g} there"
            )
        if schedule.warmup_steps >= total:
            said.append(
                f"model.warmup_epochs {hp.warmup_epochs:g} does not end before it: the LR never "
                "reaches the configured one"
            )
        if said:
            rank_zero_warn(
                f"a2video: this fit is {total} optimizer steps ({total / per_epoch:g} epochs of "
                f"{per_epoch:g}); " + "; ".join(said) + ". Give epochs inside the fit "
                "(--model.milestones, --model.warmup_epochs) or train longer "
                "(--trainer.max_epochs, --trainer.max_steps)"
            )

    def _schedule_length(self, stepping_batches: float) -> int:
        """The built-in schedule's optimizer steps: a fit without an end (``max_epochs -1`` and
        ``max_steps -1``, stopped by ``max_time`` or a callback) has none, which the cosine needs
        (one line naming the options that give it one) and the step and constant ones do not."""
        if math.isfinite(stepping_batches):
            return int(stepping_batches)
        if self.trainer.train_dataloader is None:  # Lightning counts no batches for an endless fit
            self.trainer.fit_loop.setup_data()  # (as estimated_stepping_batches does otherwise)
        if self.hparams.scheduler == "cosine":
            raise ValueError(
                "--model.scheduler cosine: it decays the LR over the whole fit, and this fit has "
                "no end (--trainer.max_epochs -1 and --trainer.max_steps -1; max_time does not "
                "count); set --trainer.max_epochs N or --trainer.max_steps N, or use "
                "--model.scheduler step or constant"
            )
        return 0

    # ------------------------------------------------------------------ checkpoints
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        spec = getattr(dm, "spec", None)  # a DataModule used without the CLI's link
        spec = spec if isinstance(spec, ClipSpec) else None
        if self.clip_spec is None and spec is not None:
            self._clip_spec = spec  # taken, not given
        # In test/predict the data's views decide: they are what was decoded (a checkpoint's
        # clip_spec may record other views with the same count, e.g. 6x1 against 2x3).
        self._data_views = spec if stage in ("test", "predict") else None
        if self._data_views is not None:
            self._say_other_views(stage, self._data_views)
        if self.class_names is None and getattr(dm, "class_names", None) is not None:
            self.class_names = list(dm.class_names)

    def _say_other_views(self, stage: str, data: ClipSpec) -> None:
        """One line where a ``clip_spec`` given to the model names other test views than the
        data decodes (one restored from a checkpoint is the training's: not said)."""
        spec = self.clip_spec
        if not self._clip_spec_given or spec is None:
            return
        given, decoded = (spec.num_clips, spec.num_crops), (data.num_clips, data.num_crops)
        if given != decoded:
            rank_zero_warn(
                f"a2video {stage}: the model's clip_spec has {given[0]}x{given[1]} test views "
                f"but the data decodes {decoded[0]}x{decoded[1]} (datamodule.spec): the views "
                f"are scored as the data's {decoded[0]}x{decoded[1]}"
            )

    def checkpoint_metadata(self) -> dict[str, Any]:
        """The ``checkpoint["a2video"]`` dict (plain Python data only) of docs/internals.md."""
        metrics = {}
        if self._trainer is not None:
            metrics = {
                k: float(v)
                for k, v in self.trainer.callback_metrics.items()
                if k.startswith(("val/", "test/")) and torch.as_tensor(v).numel() == 1
            }
        return plain_data(
            {
                "arch": self.arch,
                "arch_options": self.arch_options,
                "num_classes": self.num_classes,
                "class_names": self.class_names,
                "clip_spec": self.clip_spec.as_dict() if self.clip_spec else None,
                "metrics": metrics,
                "version": __version__,
                "config": self.run_config,
                "nonfinite_total": self.nonfinite_total,
            }
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.setdefault("a2video", {})
        meta.update(self.checkpoint_metadata())
        if self._trainer is not None and self.trainer.optimizers:
            meta["optimizer"] = type(self.trainer.optimizers[0]).__name__
            meta["lr_scheduler"] = self._scheduler_name()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("a2video") or {}
        if self._trainer is not None and self.trainer.state.fn == "fit":
            states = checkpoint.get("optimizer_states") or [None]
            self._resumed = ResumedOptimizer(
                self.trainer.ckpt_path, states[0], meta.get("optimizer"), meta.get("lr_scheduler")
            )
            if self.trainer.optimizers:  # strategies that restore after configuring
                self._check_resumed_optimizer()
        if meta.get("class_names") and not self.class_names:
            self.class_names = list(meta["class_names"])
        if meta.get("clip_spec") and self.clip_spec is None:
            self._clip_spec = ClipSpec.from_dict(meta["clip_spec"])  # restored, not given
        self.nonfinite_total = int(meta.get("nonfinite_total", 0))

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        unsafe: bool = False,
        map_location: Any = "cpu",
        **overrides: Any,
    ) -> VideoClassifier:
        """Rebuild a classifier from a checkpoint, loaded safely (``weights_only=True``).

        The saved options fill in what ``overrides`` does not set, exactly as ``--ckpt_path`` of
        the CLI (:func:`a2video.training.checkpoint.options_from_checkpoint`).

        Args:
            path: a checkpoint written by training.
            unsafe: allow pickled objects (trusted files only).
            map_location: passed to ``torch.load``.
            **overrides: constructor arguments replacing the stored hyper-parameters (an
                architecture option that conflicts with the checkpoint's raises ValueError).

        Returns:
            The classifier in eval mode, with ``class_names`` and ``clip_spec`` restored.
        """
        from a2video.models.weights import load_weights
        from a2video.training.checkpoint import (
            load_checkpoint,
            options_from_checkpoint,
            saved_model_options,
        )

        ckpt = load_checkpoint(path, unsafe=unsafe, map_location=map_location)
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        saved = saved_model_options(ckpt)
        option = "the {key}= argument"
        kwargs = options_from_checkpoint(path, saved, accepted, overrides, option=option)
        kwargs.update(overrides)
        model = cls(**kwargs)
        load_weights(model.net, ckpt, kind="a2video")
        model.on_load_checkpoint(ckpt)
        return model.eval()
