"""Transfer learning: start a ``VideoClassifier`` from pretrained weights.

The paper's second use (Table 6): features learned on Kinetics, fine-tuned on UCF-101. The
weights (an a2video checkpoint, a PyTorchVideo ``slow_r50``/``i3d_r50`` state dict or a
torchvision ResNet-50, recognised from the contents) are read by the package's one loader,
:func:`a2video.models.load_weights`; the head (``fc``) is always re-initialised for the new
classes. Any other mismatch is a :class:`FinetuneError` (``WeightsError``): one line naming the
file, what differs and the fix, never a silent re-initialisation. What happened is a
:class:`TransferReport` (loaded, skipped, re-initialised, missing keys, frozen), printed at the
start of the fit, written to ``<default_root_dir>/transfer_report.json`` and stored in every
checkpoint (``checkpoint["a2video"]["transfer"]``).

Fine-tuning options (MMAction2 / PySlowFast users expect them): the :class:`Finetune` callback
(Lightning's ``BaseFinetuning``) loads the weights and holds ``frozen_bn`` and ``freeze_stages``;
the backbone's LR multiplier is ``VideoClassifier``'s ``backbone_lr_mult`` (a parameter-group
option) and dropout is ``arch_options.dropout``. :class:`FinetuneCLI` adds ``--ckpt``, runs the
10×3-view test after ``fit``; ``--folds all`` (the script's fold loop, :func:`run_folds`) runs
the three UCF-101 folds and reports their mean.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BaseFinetuning
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import nn

from a2video.models.weights import Kind as SourceKind
from a2video.models.weights import LoadReport, WeightsError, load_weights
from a2video.training.callbacks import SaveOnSigterm
from a2video.training.checkpoint import CheckpointError, load_checkpoint
from a2video.training.cli import A2VideoCLI, run_root, typed_value
from a2video.training.module import VideoClassifier

__all__ = [
    "Finetune",
    "FinetuneCLI",
    "FinetuneError",
    "TransferReport",
    "freeze_stages",
    "frozen_bn_modules",
    "load_pretrained",
    "parse_folds",
    "run_folds",
    "stage_prefixes",
]

_LIGHTNING_ARGS_AND_ARGV = "LightningCLI's args parameter is intended to run from within Python"
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


FinetuneError = WeightsError  # pretrained weights that do not fit (one line, naming the file)


@dataclass
class TransferReport(LoadReport):
    """A :class:`~a2video.models.LoadReport` plus what fine-tuning froze.

    Attributes:
        frozen: parameter names left without gradient by ``freeze_stages``.
        frozen_bn: BatchNorm modules whose running statistics stay fixed.
    """

    frozen: list[str] = field(default_factory=list)
    frozen_bn: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {**super().counts(), "frozen": len(self.frozen), "frozen_bn": len(self.frozen_bn)}

    def summary(self) -> str:
        arch = f" (arch {self.source_arch})" if self.source_arch else ""
        c = self.counts()
        head = (
            f"a2video transfer: {self.kind} weights {self.source}{arch} → {self.target_arch}: "
            f"{c['loaded_backbone']} backbone and {c['loaded_attention']} A²-block tensors; "
        )
        tail = f"; frozen {c['frozen']} params, {c['frozen_bn']} BN with fixed statistics"
        return head + super().summary() + (tail if self.frozen or self.frozen_bn else "")


def load_pretrained(
    net: nn.Module,
    source: str | os.PathLike | Mapping[str, Any],
    kind: SourceKind = "auto",
    inflate: Literal["mean", "center"] = "mean",
    reset_head: bool = True,
    unsafe: bool = False,
) -> TransferReport:
    """:func:`a2video.models.load_weights` with a new head (fine-tuning on new classes)."""
    report = load_weights(
        net, source, kind=kind, inflate=inflate, reset_head=reset_head, unsafe=unsafe
    )
    return TransferReport(**vars(report))


# --------------------------------------------------------------------------- freezing
def stage_prefixes(k: int) -> list[str]:
    """Parameter-name prefixes of the first ``k`` stages: 1 = stem (``conv1``, ``bn1``),
    2..5 = ``layer1``..``layer4`` (the paper's res2..res5)."""
    if not 0 <= k <= 5:
        raise ValueError(f"freeze_stages must be in 0..5 (stem + 4 stages), got {k}")
    stages = [("conv1.", "bn1."), ("layer1.",), ("layer2.",), ("layer3.",), ("layer4.",)]
    return [p for stage in stages[:k] for p in stage]


def freeze_stages(net: nn.Module, k: int, keep: Sequence[str] = ()) -> list[str]:
    """Stop gradients in the first ``k`` stages (see :func:`stage_prefixes`).

    Args:
        net: the network.
        k: stages to freeze (0: none).
        keep: parameter names to leave trainable (e.g. newly initialised A²-blocks).

    Returns:
        The names of the parameters frozen.
    """
    prefixes = tuple(stage_prefixes(k))
    keep_set = set(keep)
    frozen = []
    for name, p in net.named_parameters():
        if prefixes and name.startswith(prefixes) and name not in keep_set:
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


def frozen_bn_modules(
    net: nn.Module, all_bn: bool, stages: int = 0, exclude: Sequence[str] = ()
) -> list[str]:
    """Names of the BatchNorm modules whose running statistics must stay fixed.

    Args:
        net: the network.
        all_bn: every BatchNorm (``frozen_bn``).
        stages: also those in the first ``stages`` stages (frozen stages keep their statistics).
        exclude: module names to leave updating (newly initialised blocks).
    """
    prefixes = tuple(p[:-1] for p in stage_prefixes(stages))
    skip = set(exclude)
    names = []
    for name, mod in net.named_modules():
        if not isinstance(mod, _BN) or name in skip:
            continue
        in_stage = bool(prefixes) and any(name == p or name.startswith(p + ".") for p in prefixes)
        if all_bn or in_stage:
            names.append(name)
    return names


# --------------------------------------------------------------------------- the callback
class Finetune(BaseFinetuning):
    """Start a fit from pretrained weights, with frozen stages and frozen BatchNorm statistics.

    Lightning's ``BaseFinetuning``: :meth:`freeze_before_training` runs before the optimizer is
    built, so frozen parameters are in no optimizer group; the backbone's LR multiplier is the
    module's ``backbone_lr_mult`` (a parameter-group option).

    Args:
        pretrained: the weights to start from (``--ckpt`` of ``finetune_ucf.py``): an a2video
            checkpoint, a PyTorchVideo state dict or a torchvision ResNet-50 state dict, read by
            :func:`a2video.models.load_weights` when a fit starts (a resumed fit then restores its
            checkpoint over them). None: train from scratch.
        pretrained_kind: ``auto`` or ``a2video`` / ``pytorchvideo`` / ``imagenet``.
        inflate: ``mean`` or ``center`` inflation of ImageNet kernels; None (the default): the
            model's ``arch_options.inflate`` (one setting for ``train.py``'s ``pretrained_2d``
            and this callback), else ``mean``.
        reset_head: re-initialise the head even when the class counts agree.
        frozen_bn: keep every loaded BatchNorm's running statistics fixed (MMAction2's
            ``norm_eval``, PySlowFast's ``BN.FREEZE``: the layers run in eval mode while training;
            their scale and shift still learn).
        freeze_stages: no gradient in the first k stages (1: stem; 2..5: + res2..res5); their
            BatchNorm statistics stay fixed too. Newly initialised tensors stay trainable.
        unsafe_load: accept pickled Python objects in ``pretrained`` (trusted files only).
    """

    def __init__(
        self,
        pretrained: str | None = None,
        pretrained_kind: SourceKind = "auto",
        inflate: Literal["mean", "center"] | None = None,
        reset_head: bool = True,
        frozen_bn: bool = False,
        freeze_stages: int = 0,
        unsafe_load: bool = False,
    ) -> None:
        super().__init__()
        stage_prefixes(freeze_stages)  # validates
        self.pretrained, self.pretrained_kind, self.inflate = pretrained, pretrained_kind, inflate
        self.reset_head, self.unsafe_load = reset_head, unsafe_load
        self.frozen_bn, self.freeze_stages = frozen_bn, freeze_stages
        self.report: TransferReport | None = None
        self._frozen_bn: list[str] = []
        self._resumed: tuple[str, dict[str, Any]] | None = None

    def resume_transfer(self, ckpt_path: str, recorded: Mapping[str, Any] | None) -> None:
        """The fit resumes ``ckpt_path``, whose checkpoint recorded this callback's report
        (None: it has none). Its weights come from the checkpoint, and what stays trainable and
        where they came from are the recorded run's, whether or not ``pretrained`` is given
        again (called by ``A2VideoCLI`` before the fit)."""
        self._resumed = (ckpt_path, dict(recorded)) if recorded else None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":  # the test after fit keeps the fine-tuned weights
            super().setup(trainer, pl_module, stage)

    def _recorded_report(self) -> TransferReport:
        """A resumed fit's report as its checkpoint recorded it, said in one line; a different
        ``pretrained`` is named as not read (its weights would be overwritten by the restore)."""
        path, recorded = self._resumed
        names = {f.name for f in fields(TransferReport)}
        report = TransferReport(**{k: v for k, v in recorded.items() if k in names})
        given = self.pretrained
        if given and not _same_file(given, report.source):
            rank_zero_warn(
                f"a2video: {path} resumes a fine-tune that started from {report.source}; its "
                f"weights are restored from the checkpoint and --ckpt {given} is not read."
            )
        rank_zero_info(f"a2video: resuming {path}: {report.summary()}")
        return report

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        net = pl_module.net
        new_keys: set[str] = set()
        if self._resumed is not None:  # the restore brings the weights: keep the run's record
            report = self._recorded_report()
            new_keys = set(report.missing) | set(report.reinitialized)
        elif self.pretrained:
            if pl_module.hparams.get("pretrained_2d"):
                raise FinetuneError(
                    "give either pretrained (--ckpt) or model.pretrained_2d, not both: --ckpt "
                    "also takes a torchvision ResNet-50 state dict"
                )
            inflate = _one_inflate(self.inflate, getattr(pl_module, "arch_options", None))
            report = load_pretrained(net, self.pretrained, self.pretrained_kind, inflate,
                                     self.reset_head, self.unsafe_load)  # fmt: skip
            new_keys = set(report.missing) | set(report.reinitialized)
        else:
            report = TransferReport(kind="none", source="(none: from scratch)")
            report.target_arch = getattr(net, "arch", None)
        if report.kind == "none" and (self.frozen_bn or self.freeze_stages):
            rank_zero_warn(
                "a2video: frozen_bn / freeze_stages without pretrained weights freeze "
                "randomly initialised layers"
            )
        new_modules = {k.rsplit(".", 1)[0] for k in new_keys}
        report.frozen = freeze_stages(net, self.freeze_stages, keep=sorted(new_keys))
        self._frozen_bn = frozen_bn_modules(
            net, self.frozen_bn, self.freeze_stages, exclude=sorted(new_modules)
        )
        report.frozen_bn = list(self._frozen_bn)
        self.report = report
        if self._resumed is None and self.pretrained:  # a resumed fit said its recorded report
            rank_zero_info(report.summary())  # after freezing: it ends with what was frozen

    def _bn_eval(self, pl_module: LightningModule) -> None:
        """Frozen BatchNorm layers in eval mode (the evaluation loops restore these modes)."""
        modules = dict(pl_module.net.named_modules())
        for name in self._frozen_bn:
            modules[name].eval()

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: Any) -> None:
        self._bn_eval(pl_module)  # every train epoch start: nothing is unfrozen later

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._bn_eval(pl_module)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        if self.report is None or not trainer.is_global_zero:
            return
        root = trainer.default_root_dir
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(root, "transfer_report.json"), "w") as f:
            json.dump(self.report.to_dict(), f, indent=1)

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self.report is not None:
            checkpoint.setdefault("a2video", {})["transfer"] = self.report.to_dict()


def _refuse_another_fold(path: Any, saved: Any, config: Any, fix: str) -> None:
    """A checkpoint fine-tuned on UCF-101 fold ``saved`` used for another ``data.fold``: a
    fold's test list holds videos of the other folds' training lists. ``fix`` may name
    ``{saved}``."""
    fold = (config.get("data") or {}).get("fold")
    if saved is None or fold is None or int(saved) == int(fold):
        return
    raise CheckpointError(
        f"{path}: it was fine-tuned on UCF-101 fold {saved} and this run uses fold {fold}, whose "
        f"test list holds videos of fold {saved}'s training list; {fix.format(saved=saved)}"
    )


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one file (either may be gone: then whether they read the same)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _one_inflate(given: str | None, arch_options: Mapping[str, Any] | None) -> str:
    """The inflation of ImageNet kernels: ``finetune.inflate`` or the model's
    ``arch_options.inflate`` (the one setting, docs/transfer.md), else ``mean``; both given and
    different is a :class:`FinetuneError` (the model would record one, the weights the other)."""
    recorded = (arch_options or {}).get("inflate")
    if given and recorded and given != recorded:
        raise FinetuneError(
            f"finetune.inflate {given} and model.arch_options.inflate {recorded} disagree; set "
            "the inflation once, in model.arch_options.inflate (finetune.inflate follows it)"
        )
    return given or recorded or "mean"


# --------------------------------------------------------------------------- the CLI
def parse_folds(value: str | int | None) -> list[int]:
    """``"all"`` → [1, 2, 3]; ``"2"`` → [2]; ``"1,3"`` → [1, 3]; None → []."""
    if value is None or value == "":
        return []
    text = str(value).strip().lower()
    if text == "all":
        return [1, 2, 3]
    try:
        folds = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise ValueError(f"--folds takes 'all' or fold numbers like '1,3', got {value!r}") from None
    if not folds or any(f not in (1, 2, 3) for f in folds):
        raise ValueError(f"UCF-101 folds are 1, 2 and 3; got {value!r}")
    twice = sorted({f for f in folds if folds.count(f) > 1})
    if twice:
        raise ValueError(f"--folds {value}: fold {twice[0]} is named twice; name each fold once")
    return folds


class FinetuneCLI(A2VideoCLI):
    """``finetune_ucf.py``: LightningCLI for transfer to UCF-101.

    On top of :class:`a2video.training.cli.A2VideoCLI`:

    - ``finetune.*``: the :class:`Finetune` callback (``frozen_bn``, ``freeze_stages`` …).
    - ``--ckpt PATH``: the pretrained weights (``finetune.pretrained``).
    - ``--test_after_fit true`` (default): after ``fit``, the 10×3-view test of the fine-tuned
      weights on the fold's test list (``predictions.csv`` in the run directory), and
      ``<default_root_dir>/results.json`` with the test metrics and the transfer report.
    - ``--folds all`` (or ``1,3``): see :func:`run_folds`.

    Args:
        fold: set by :func:`run_folds`: the UCF-101 fold of this run (its directory gets
            ``/fold<k>`` appended).
        **kwargs: as :class:`A2VideoCLI`.
    """

    # --ckpt and the one --unsafe_load flag, linked into the Finetune callback's arguments
    _links = (("ckpt", "finetune.pretrained"), ("unsafe_load", "finetune.unsafe_load"))
    parse_link_sources = tuple(source for source, _ in _links)
    weights_option = "--ckpt {path} (not --ckpt_path)"
    checkpoint_option = (
        "--ckpt {path} to start a fine-tune from its weights (--ckpt_path {path} resumes or tests "
        "it)"
    )
    new_head_option = "pass --ckpt {path} (not --ckpt_path)"

    def __init__(self, *args: Any, fold: int | None = None, **kwargs: Any) -> None:
        self.fold = fold
        self.results: dict[str, Any] = {}
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: Any) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_argument(
            "--ckpt",
            type=str | None,
            default=None,
            help="Pretrained weights: an a2video Kinetics checkpoint, a PyTorchVideo "
            "slow_r50/i3d_r50 state dict, or a torchvision ResNet-50 state dict (inflated).",
        )
        parser.add_lightning_class_args(Finetune, "finetune")
        for source, target in self._links:
            parser.link_arguments(source, target)
        parser.add_argument(
            "--folds",
            type=str | None,
            default=None,
            help="UCF-101 folds to run one after another: 'all' (1, 2, 3) or e.g. '1,3'; the "
            "mean of their test accuracies is reported (command line only, with fit; "
            "validate/test/predict --folds N: fold N of a --folds run's folder).",
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After fit, run the multi-view test (10x3 by default) of the final weights.",
        )

    def _parse_ckpt_path(self) -> None:
        # The fold's run folder first: --ckpt_path last / best are looked for in it.
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        if self.fold is not None:
            config.data.fold = self.fold
            config.trainer.default_root_dir = os.path.join(run_root(config), f"fold{self.fold}")
        elif len(parse_folds(config.get("folds"))) > 1:
            raise ValueError("--folds with several folds is a command-line option of finetune_ucf")
        elif parse_folds(config.get("folds")):
            config.data.fold = parse_folds(config.get("folds"))[0]
            root = run_root(config)
            if subcommand == "fit" and _holds_folds(root):  # one fold of an earlier --folds run
                self.fold = config.data.fold
                config.trainer.default_root_dir = os.path.join(root, f"fold{self.fold}")
                rank_zero_info(
                    f"a2video: {root} holds a --folds run: fold {self.fold} runs in "
                    f"{config.trainer.default_root_dir} and joins its folds.json"
                )
            elif _holds_folds(root):  # evaluates that run's fold (its folds.json is fit's)
                config.trainer.default_root_dir = os.path.join(root, f"fold{config.data.fold}")
                rank_zero_info(
                    f"a2video: {root} holds a --folds run: {subcommand} of fold "
                    f"{config.data.fold} in {config.trainer.default_root_dir}"
                )
        evaluates = subcommand in ("validate", "test", "predict")
        if evaluates:  # before "no --ckpt_path was given" (which --ckpt meant)
            self._refuse_ckpt_outside_fit(config, subcommand)
        try:
            super()._parse_ckpt_path()
        except CheckpointError as err:
            root = run_root(config)
            if not (evaluates and config.get("ckpt_path") in ("last", "best")):
                raise
            if not _holds_folds(root):
                raise
            raise CheckpointError(
                f"{root}: a --folds run's folder, its checkpoints are in fold1/…fold3/; pass "
                f"--folds N for fold N's --ckpt_path {config.ckpt_path} (or "
                f"--trainer.default_root_dir {os.path.join(root, 'foldN')} --data.fold N)"
            ) from err
        if evaluates:  # --ckpt_path best / last resolved to their file now
            self._refuse_ckpt_outside_fit(config, subcommand)
        self._check_saved_fold(config)
        if subcommand == "fit" and self.fold is not None and not config.get("ckpt_path"):
            self._start_from_the_other_folds_source(config)
        if subcommand == "fit" and config.get("ckpt") and not config.get("ckpt_path"):
            self._check_source_fold(config)

    def _refuse_ckpt_outside_fit(self, config: Any, subcommand: str) -> None:
        """One line for ``--ckpt FILE`` in validate / test / predict, which evaluate
        ``--ckpt_path``: ``--ckpt`` is the weights a fit starts from and was not read (the user
        believed FILE was tested). Without ``--ckpt_path`` a ``ckpt`` from a ``--config`` file is
        named too; beside ``--ckpt_path`` only a typed ``--ckpt`` naming another file is (a
        run's saved config.yaml records the ``ckpt`` its fit started from, and stays usable)."""
        given = config.get("ckpt")
        if not given:
            return
        ckpt_path = config.get("ckpt_path")
        if str(ckpt_path) in ("best", "last"):
            return  # compared with the file they name once resolved
        typed = any(a == "--ckpt" or a.startswith("--ckpt=") for a in self._args or [])
        if ckpt_path and (not typed or _same_file(str(given), str(ckpt_path))):
            return
        where = "--ckpt" if typed else "ckpt (from --config)"
        said = f"{where} {given}: the pretrained weights a fine-tune (fit) starts from"
        if not ckpt_path:
            raise ValueError(
                f"{said}, not read by {subcommand}, which evaluates a checkpoint given as "
                f"--ckpt_path: pass --ckpt_path {given} (or --ckpt_path best / last of the run in "
                "--trainer.default_root_dir)"
            )
        raise ValueError(
            f"{said}, not read by {subcommand}, which evaluates --ckpt_path {ckpt_path}; leave "
            f"--ckpt out (to {subcommand} {given}: --ckpt_path {given})"
        )

    def _start_from_the_other_folds_source(self, config: Any) -> None:
        """A fold that starts in a resumed ``--folds`` run without ``--ckpt`` (the SIGTERM line
        says only ``--ckpt_path last``): the weights the run's other folds started from, as
        their checkpoints record, said in one line. It started from scratch, stem and frozen
        stages random, and went into the folds' mean."""
        if config.get("ckpt"):
            return
        root = os.path.dirname(os.path.abspath(config.trainer.default_root_dir))
        for other in sorted(Path(root).glob("fold[0-9]/checkpoints/last.ckpt")):
            try:
                saved = load_checkpoint(other, unsafe=bool(config.get("unsafe_load")), mmap=True)
            except CheckpointError:
                continue
            transfer = (saved.get("a2video") or {}).get("transfer") or {}
            if transfer.get("kind") not in (None, "none") and transfer.get("source"):
                config.ckpt = transfer["source"]
                if config.get("finetune") is not None:  # --ckpt's link was applied at parsing
                    config.finetune.pretrained = transfer["source"]
                rank_zero_info(
                    f"a2video: fold {self.fold} starts from {transfer['source']}, the weights "
                    f"the run's other folds started from ({other}); --ckpt was not given"
                )
                return

    def _check_source_fold(self, config: Any) -> None:
        """One line when ``--ckpt`` was itself fine-tuned on another UCF-101 fold than
        ``data.fold``: its weights have trained on this fold's test videos."""
        try:
            source = load_checkpoint(config.ckpt, unsafe=bool(config.get("unsafe_load")), mmap=True)
        except CheckpointError:  # the weights loader says what is wrong with it, in one line
            return
        saved = (source.get("datamodule_hyper_parameters") or {}).get("fold")
        fix = (
            "start each fold from weights that have not seen UCF-101 (e.g. the Kinetics "
            "checkpoint), or pass --data.fold {saved}."
        )
        _refuse_another_fold(config.ckpt, saved, config, fix)

    def _check_saved_fold(self, config: Any) -> None:
        """One line when ``--ckpt_path`` was fine-tuned on another UCF-101 fold than
        ``data.fold``: testing or resuming it there scores (or trains on) the wrong videos."""
        saved = getattr(self, "_saved_data", {}).get("fold")
        _refuse_another_fold(config.get("ckpt_path"), saved, config, "pass --data.fold {saved}.")

    def after_fit(self) -> None:
        config = self.config[self.subcommand]
        if not config.get("test_after_fit", True):
            return
        if self.trainer.interrupted:
            return
        folds = " --folds ..." if self.fold is not None else ""
        hint = (
            f"the fitted weights of {self.trainer.default_root_dir} are in its last.ckpt: run "
            f"the same command with --ckpt_path last{folds} to test them and go on"
        )
        stopper = next((c for c in self.trainer.callbacks if isinstance(c, SaveOnSigterm)), None)
        if stopper is not None:  # it stops the test on SIGTERM with one line: this hint
            stopper.eval_hint = hint
        try:
            self.trainer.test(self.model, datamodule=self.datamodule)
        except SIGTERMException:
            if stopper is None:
                rank_zero_info(f"a2video: SIGTERM during the test after fit: {hint}")
            raise
        metrics = {
            k: float(v)
            for k, v in self.trainer.callback_metrics.items()
            if k.startswith("test/") and torch.as_tensor(v).numel() == 1
        }
        callback = next((c for c in self.trainer.callbacks if isinstance(c, Finetune)), None)
        report = callback.report if callback is not None else None
        tested = getattr(self.model, "video_results", None)
        views = getattr(tested, "views", None)  # (clips, crops) of the test just run
        self.results = {
            "fold": getattr(self.datamodule, "fold", None),
            "metrics": metrics,
            "views": list(views) if views else None,
            # output_dir(): the folder this test wrote to (the same on every rank).
            "predictions": os.path.join(self.model.output_dir(), "predictions.csv"),
            "videos": {k: len(v) for k, v in getattr(self.datamodule, "datasets", {}).items()},
            "steps": int(self.trainer.global_step),
            "transfer": report.to_dict() if report is not None else None,
        }
        if self.trainer.is_global_zero:
            root = self.trainer.default_root_dir
            os.makedirs(root, exist_ok=True)
            with open(os.path.join(root, "results.json"), "w") as f:
                json.dump(self.results, f, indent=1)


def _holds_folds(root: str) -> bool:
    """Whether ``root`` is the folder of a ``--folds`` run (a ``fold<k>/`` or ``folds.json``)."""
    names = ("folds.json", "fold1", "fold2", "fold3")
    return any(os.path.exists(os.path.join(root, name)) for name in names)


def _split_folds_arg(argv: list[str]) -> tuple[str | None, list[str]]:
    """Remove ``--folds X`` / ``--folds=X`` from ``argv``; return (X, the rest)."""
    value, rest, i = None, [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--folds" and i + 1 < len(argv):
            value, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--folds="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return value, rest


def _refuse_two_folds(value: str | None, folds: list[int], rest: Sequence[str]) -> None:
    """One line for ``--folds N`` beside a typed ``--data.fold M`` naming another fold (or
    beside several folds): ``--folds`` set every run's fold, ``--data.fold`` was dropped."""
    typed = typed_value(rest, "--data.fold", "--data.init_args.fold")
    if not folds or typed is None or [typed.strip()] == [str(f) for f in folds]:
        return
    raise ValueError(
        f"--folds {value} and --data.fold {typed} both set the UCF-101 fold, to different "
        "folds; pass one of them (--folds for several folds, run one after another)"
    )


def run_folds(
    argv: Sequence[str] | None = None,
    model_class: Any = None,
    datamodule_class: Any = None,
    **cli_kwargs: Any,
) -> dict[str, Any]:
    """Run ``finetune_ucf.py`` once, or once per fold with ``--folds all``, as papers report.

    Each fold is a full ``fit`` + 10×3 test under ``<default_root_dir>/fold<k>``; the summary
    (per-fold metrics, their mean and standard deviation) is printed and written to
    ``<default_root_dir>/folds.json``.

    Args:
        argv: the command line (default ``sys.argv[1:]``).
        model_class: default :class:`VideoClassifier`.
        datamodule_class: default :class:`a2video.data.UCF101DataModule`.
        **cli_kwargs: passed to :class:`FinetuneCLI`.

    Returns:
        ``{"folds": [...], "mean": {...}}`` for several folds; the single run's results otherwise.
    """
    from a2video.data import UCF101DataModule

    model_class = model_class or VideoClassifier
    datamodule_class = datamodule_class or UCF101DataModule
    argv = list(sys.argv[1:] if argv is None else argv)
    # Each fold's LightningCLI gets this command line as `args` (less --folds), which Lightning
    # warns of when sys.argv holds arguments too: here they are the same ones, on purpose.
    warnings.filterwarnings("ignore", message=_LIGHTNING_ARGS_AND_ARGV)
    value, rest = _split_folds_arg(argv)
    folds = parse_folds(value)
    _refuse_two_folds(value, folds, rest)
    runs = []
    root, rank_zero = None, True
    if len(folds) <= 1:
        extra = ["--folds", str(folds[0])] if folds else []
        cli = FinetuneCLI(model_class, datamodule_class, args=rest + extra, **cli_kwargs)
        if cli.fold is None:  # a run of its own (not a fold of an earlier --folds run's folder)
            return cli.results
        runs.append(cli.results | {"fold": cli.fold})
        root = os.path.dirname(cli.trainer.default_root_dir)
        rank_zero = cli.trainer.is_global_zero
    elif not rest or rest[0] != "fit":
        raise ValueError("--folds with several folds runs fit (then the test of each fold)")
    elif any(arg.split("=", 1)[0] == "--print_config" for arg in rest):
        # the fold loop is this function's, not a config key: the first fold's run is printed
        print(
            f"a2video: --folds {value} is a command-line option, not in the printed config "
            f"(fold {folds[0]}'s run); rerun it with --config FILE --folds {value}",
            file=sys.stderr,
        )
    for fold in folds if len(folds) > 1 else []:
        cli = FinetuneCLI(model_class, datamodule_class, args=rest, fold=fold, **cli_kwargs)
        runs.append(cli.results | {"fold": fold})
        root = os.path.dirname(cli.trainer.default_root_dir)
        rank_zero = cli.trainer.is_global_zero  # every rank runs every fold; one reports
    earlier = _earlier_folds(root, {r["fold"] for r in runs}) if root is not None else []
    summary = fold_summary(sorted(runs + earlier, key=lambda r: r["fold"]))
    lines = summary.pop("lines")
    if not rank_zero:
        return summary
    print("a2video UCF-101 folds\n  " + "\n  ".join(lines), flush=True)
    if root is not None:
        with open(os.path.join(root, "folds.json"), "w") as f:
            json.dump(summary, f, indent=1)
    return summary


def _earlier_folds(root: str, now: set[int]) -> list[dict[str, Any]]:
    """The tested folds of ``root/folds.json`` that this command did not run (``--folds 1,2``
    after ``--folds all``), so the summary rewritten there keeps them, marked ``earlier``."""
    try:
        with open(os.path.join(root, "folds.json")) as f:
            saved = json.load(f).get("folds") or []
    except (OSError, ValueError, AttributeError):
        return []
    return [
        {**r, "earlier": True}
        for r in saved
        if isinstance(r, dict) and r.get("fold") not in now and r.get("metrics")
    ]


def fold_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-fold results, the mean and standard deviation of their test metrics over the tested
    folds, and the lines that print them (``lines``; a fold run without its test says so)."""
    tested = [r for r in runs if r.get("metrics")]
    keys = sorted(set.intersection(*(set(r["metrics"]) for r in tested))) if tested else []
    mean = {k: statistics.fmean(r["metrics"][k] for r in tested) for k in keys}
    std = {k: statistics.pstdev(r["metrics"][k] for r in tested) for k in keys}
    lines = []
    for r in runs:
        top1 = (r.get("metrics") or {}).get("test/top1")
        said = "not tested (--test_after_fit false)" if top1 is None else f"video top-1 {top1:.4f}"
        earlier = " (an earlier run)" if r.get("earlier") else ""
        lines.append(f"fold {r['fold']}: {said}{earlier}")
    if "test/top1" in mean:
        lines.append(
            f"mean over {len(tested)} folds: video top-1 {mean['test/top1']:.4f} "
            f"(± {std['test/top1']:.4f})"
        )
    return {
        "folds": runs,
        "mean": mean,
        "std": std,
        "num_folds": len(runs),
        "num_tested": len(tested),
        "lines": lines,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point of ``finetune_ucf.py``: a user error (bad ``--ckpt``, data root…) ends with
    one message and exit code 2 (:func:`a2video.errors.exit_on_user_error`)."""
    from a2video.errors import exit_on_user_error

    with exit_on_user_error("finetune_ucf.py", "--unsafe_load true"):
        return run_folds(argv)
