"""Transfer learning: start a ``VideoClassifier`` from pretrained weights.

The paper's second use (Table 6): features learned on Kinetics, fine-tuned on UCF-101. Three kinds
of source weights are accepted, recognised from the file's contents:

- ``a2video``: a checkpoint of this project (``train.py``), or a bare state dict of one of our
  networks. Every tensor except the head must match the target network key for key and shape for
  shape, A²-blocks included; the architecture recorded in the checkpoint must be the target's.
- ``pytorchvideo``: a PyTorchVideo ``slow_r50`` / ``i3d_r50`` state dict (or its ``.pyth``
  checkpoint), renamed with :func:`a2video.models.convert_pytorchvideo_state_dict`. Loaded into
  ``slow_r50`` / ``i3d_r50``, or into ``a2net_r50`` / ``nl_r50`` whose inserted blocks then start
  at their identity initialisation (as the paper's "randomly initialised A²-blocks").
- ``imagenet``: a torchvision ResNet-50 state dict (2-D), inflated to 3-D
  (:func:`a2video.models.inflate_state_dict`); A²-blocks start at identity, as above.

The head (``fc``) is always re-initialised for the new dataset's classes (``reset_head``). Any
other mismatch is a :class:`FinetuneError`: one line naming the file, what differs and the fix,
never a silent re-initialisation. What happened is a :class:`TransferReport` (loaded, skipped,
re-initialised, missing keys), printed at the start of the fit, written to
``<default_root_dir>/transfer_report.json`` and stored in every checkpoint
(``checkpoint["a2video"]["transfer"]``).

Fine-tuning options (MMAction2 / PySlowFast users expect them) live in
:class:`FinetuneClassifier`: ``frozen_bn`` (BatchNorm running statistics fixed, as MMAction2's
``norm_eval`` and PySlowFast's ``BN.FREEZE``), ``freeze_stages`` (no gradient in the first k
stages, the stem being stage 1), ``backbone_lr_mult`` (the backbone's LR is the head's times this)
and ``dropout`` before the head. :class:`FinetuneCLI` adds ``--ckpt``, runs the 10×3-view test
after ``fit``, and ``--folds all`` runs the three UCF-101 folds and reports their mean.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn

from a2video.models import LoadReport, convert_pytorchvideo_state_dict, inflate_weight
from a2video.training.checkpoint import load_checkpoint
from a2video.training.cli import A2VideoCLI
from a2video.training.module import VideoClassifier

__all__ = [
    "FinetuneCLI",
    "FinetuneClassifier",
    "FinetuneError",
    "TransferReport",
    "convert_pretrained",
    "detect_kind",
    "finetune_param_groups",
    "freeze_stages",
    "frozen_bn_modules",
    "load_pretrained",
    "parse_folds",
    "read_pretrained",
    "run_folds",
    "stage_prefixes",
]

SourceKind = Literal["auto", "a2video", "pytorchvideo", "imagenet"]
HEAD_PREFIX = "fc."
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class FinetuneError(ValueError):
    """Pretrained weights that do not fit the target network (one line, naming the file)."""


@dataclass
class TransferReport(LoadReport):
    """A :class:`~a2video.models.LoadReport` plus where the weights came from.

    Attributes:
        source: the file (or ``"<state dict>"``).
        kind: ``a2video``, ``pytorchvideo`` or ``imagenet``.
        source_arch: the architecture recorded in an a2video checkpoint (else None).
        target_arch: the network's architecture.
        source_classes: the checkpoint's class count (a2video), or the head's rows.
        frozen: parameter names left without gradient by ``freeze_stages``.
        frozen_bn: BatchNorm modules whose running statistics stay fixed.
    """

    source: str = "<state dict>"
    kind: str = "a2video"
    source_arch: str | None = None
    target_arch: str | None = None
    source_classes: int | None = None
    frozen: list[str] = field(default_factory=list)
    frozen_bn: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Loaded backbone / A²-block tensors and the other categories, counted."""
        attn = sum(".attn." in k for k in self.loaded)
        return {
            "loaded": len(self.loaded),
            "loaded_backbone": len(self.loaded) - attn,
            "loaded_attention": attn,
            "skipped": len(self.skipped),
            "reinitialized": len(self.reinitialized),
            "missing": len(self.missing),
            "frozen": len(self.frozen),
            "frozen_bn": len(self.frozen_bn),
        }

    def summary(self) -> str:
        c = self.counts()
        arch = f" (arch {self.source_arch})" if self.source_arch else ""
        head = (
            f"a2video transfer: {self.kind} weights {self.source}{arch} → {self.target_arch}: "
            f"loaded {c['loaded']} tensors ({c['loaded_backbone']} backbone, "
            f"{c['loaded_attention']} A²-block)"
        )
        rest = [head]
        for name in ("skipped", "reinitialized", "missing"):
            keys = getattr(self, name)
            shown = ", ".join(keys[:6]) + (f", … (+{len(keys) - 6})" if len(keys) > 6 else "")
            rest.append(f"{name} {len(keys)}" + (f": {shown}" if keys else ""))
        if self.frozen or self.frozen_bn:
            rest.append(f"frozen {c['frozen']} params, {c['frozen_bn']} BN with fixed statistics")
        return "; ".join(rest)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON, weights-only checkpoints)."""
        return {**asdict(self), "counts": self.counts()}


# --------------------------------------------------------------------------- reading sources
def _unwrap(obj: Mapping[str, Any]) -> dict[str, Any]:
    for wrapper in ("state_dict", "model_state", "model"):
        inner = obj.get(wrapper)
        if isinstance(inner, Mapping) and any(isinstance(v, Tensor) for v in inner.values()):
            return dict(inner)
    return dict(obj)


def detect_kind(state_dict: Mapping[str, Any]) -> str:
    """``a2video``, ``pytorchvideo`` or ``imagenet`` from a (net-level) state dict's keys.

    Raises:
        FinetuneError: no kind fits.
    """
    keys = [k for k, v in state_dict.items() if isinstance(v, Tensor)]
    if not keys:
        raise FinetuneError("holds no tensors")
    if any(k.startswith("blocks.") and ".res_blocks." in k for k in keys):
        return "pytorchvideo"
    conv1 = state_dict.get("conv1.weight")
    if isinstance(conv1, Tensor) and "layer1.0.conv1.weight" in state_dict:
        return "imagenet" if conv1.dim() == 4 else "a2video"
    raise FinetuneError(
        "is not a checkpoint this loader knows (expected an a2video .ckpt, a PyTorchVideo "
        f"slow_r50/i3d_r50 state dict or a torchvision ResNet-50 state dict; keys start {keys[:3]})"
    )


def read_pretrained(
    source: str | os.PathLike | Mapping[str, Any],
    kind: SourceKind = "auto",
    unsafe: bool = False,
) -> tuple[dict[str, Tensor], str, dict[str, Any]]:
    """Read pretrained weights into a state dict with our network's key names.

    Args:
        source: a file or an in-memory checkpoint / state dict.
        kind: ``auto`` (recognise the contents) or the kind to assume.
        unsafe: allow pickled Python objects (trusted files only).

    Returns:
        ``(state_dict, kind, meta)``; ``meta`` is an a2video checkpoint's ``checkpoint["a2video"]``
        (empty for other kinds). The state dict has our key names (``net.`` stripped, PyTorchVideo
        renamed), 2-D ImageNet kernels not yet inflated.

    Raises:
        CheckpointError: missing, empty, truncated or unreadable file (from
            :func:`a2video.training.checkpoint.load_checkpoint`).
        FinetuneError: a readable file that holds no weights this loader knows.
    """
    name = "<state dict>" if isinstance(source, Mapping) else os.fspath(source)
    raw = dict(source) if isinstance(source, Mapping) else load_checkpoint(source, unsafe=unsafe)
    meta = raw.get("a2video") if isinstance(raw.get("a2video"), Mapping) else {}
    sd = _unwrap(raw)
    if any(k.startswith("net.") for k in sd):  # a VideoClassifier checkpoint
        sd = {k[4:]: v for k, v in sd.items() if k.startswith("net.") and isinstance(v, Tensor)}
    sd = {k: v for k, v in sd.items() if isinstance(v, Tensor)}
    try:
        found = detect_kind(sd) if kind == "auto" or not sd else kind
    except FinetuneError as err:
        raise FinetuneError(f"{name}: {err}") from None
    if found not in ("a2video", "pytorchvideo", "imagenet"):
        raise FinetuneError(f"{name}: unknown pretrained kind {kind!r}")
    if found == "pytorchvideo":
        sd = convert_pytorchvideo_state_dict(sd)
    return sd, found, dict(meta or {})


# --------------------------------------------------------------------------- conversion
def _example(keys: Sequence[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f", … (+{len(keys) - n})" if len(keys) > n else "")


def convert_pretrained(
    state_dict: Mapping[str, Tensor],
    target: Mapping[str, Tensor | torch.Size | tuple[int, ...]],
    kind: str = "a2video",
    inflate: Literal["mean", "center"] = "mean",
    reset_head: bool = True,
) -> tuple[dict[str, Tensor], TransferReport]:
    """A pure function: source tensors → the target's state dict entries, plus the report.

    Args:
        state_dict: source weights with our key names (:func:`read_pretrained`).
        target: the target network's state dict (or key → shape).
        kind: the source kind; ``imagenet`` inflates 2-D kernels, and foreign kinds
            (``imagenet``, ``pytorchvideo``) may leave A²/non-local blocks (``.attn.``) at init.
        inflate: ``mean`` or ``center`` (see :mod:`a2video.models.inflate`).
        reset_head: re-initialise ``fc`` even when its shape matches (a new dataset's classes).

    Returns:
        ``(state_dict_to_load, report)``.

    Raises:
        FinetuneError: a non-head tensor differs in shape, a non-head target tensor is absent
            from the source (other than new ``.attn.`` blocks of a foreign source), or the source
            has non-head tensors the target lacks.
    """
    shapes = {k: tuple(v.shape if isinstance(v, Tensor) else v) for k, v in target.items()}
    out: dict[str, Tensor] = {}
    report = TransferReport(kind=kind)
    bad_shape: list[str] = []
    for key, shape in shapes.items():
        is_head = key.startswith(HEAD_PREFIX)
        if key not in state_dict:
            report.missing.append(key)
            continue
        src = state_dict[key]
        if is_head and reset_head:
            report.reinitialized.append(key)
            continue
        if tuple(src.shape) == shape:
            out[key] = src.detach().clone()
        elif (
            kind == "imagenet"
            and src.dim() == 4
            and len(shape) == 5
            and tuple(src.shape[:2]) == shape[:2]
            and tuple(src.shape[2:]) == shape[3:]
        ):
            out[key] = inflate_weight(src.detach(), shape[2], inflate)
        elif is_head:
            report.reinitialized.append(key)
            continue
        else:
            bad_shape.append(f"{key} {tuple(src.shape)} vs {shape}")
            continue
        report.loaded.append(key)
    report.skipped = [k for k in state_dict if k not in shapes]
    if "fc.weight" in state_dict:
        report.source_classes = int(state_dict["fc.weight"].shape[0])

    foreign = kind in ("imagenet", "pytorchvideo")
    missing = [
        k
        for k in report.missing
        if not k.startswith(HEAD_PREFIX) and not (foreign and ".attn." in k)
    ]
    # Source tensors with no place in the target; a 2-D ResNet's head and PyTorchVideo's
    # weight-free pooling are the only ones expected.
    extra = [k for k in report.skipped if not k.startswith(HEAD_PREFIX)]
    problems = []
    if bad_shape:
        problems.append(f"{len(bad_shape)} tensors differ in shape ({_example(bad_shape, 2)})")
    if missing:
        problems.append(f"{len(missing)} model tensors are not in it ({_example(missing)})")
    if extra:
        problems.append(
            f"{len(extra)} of its tensors have no place in the model ({_example(extra)})"
        )
    if problems:
        raise FinetuneError("; ".join(problems))
    return out, report


def load_pretrained(
    net: nn.Module,
    source: str | os.PathLike | Mapping[str, Any],
    kind: SourceKind = "auto",
    inflate: Literal["mean", "center"] = "mean",
    reset_head: bool = True,
    unsafe: bool = False,
) -> TransferReport:
    """Load pretrained weights into ``net`` in place; only the head may be re-initialised.

    Args:
        net: a network from :func:`a2video.models.build_model` (already sized for the new classes).
        source: a checkpoint / state dict file, or one in memory.
        kind: ``auto`` or the source kind.
        inflate: how ImageNet 2-D kernels gain time (``mean`` or ``center``).
        reset_head: re-initialise ``fc`` even when the class counts agree.
        unsafe: allow pickled objects in the file (trusted files only).

    Returns:
        The :class:`TransferReport`.

    Raises:
        CheckpointError: the file is missing, truncated or not a checkpoint.
        FinetuneError: the weights do not fit ``net`` (one line naming the file and the fix).
    """
    name = "<state dict>" if isinstance(source, Mapping) else os.fspath(source)
    sd, found, meta = read_pretrained(source, kind, unsafe)
    target_arch = getattr(net, "arch", None) or type(net).__name__
    source_arch = meta.get("arch")
    if source_arch and source_arch != target_arch:
        raise FinetuneError(
            f"{name}: wrong arch: the checkpoint holds {source_arch!r}, the model is "
            f"{target_arch!r}; set --model.arch {source_arch} (only the head may differ)."
        )
    try:
        out, report = convert_pretrained(sd, net.state_dict(), found, inflate, reset_head)
    except FinetuneError as err:
        raise FinetuneError(
            f"{name}: {found} weights do not fit {target_arch}: {err} (only the head 'fc' "
            "may differ)."
        ) from None
    result = net.load_state_dict(out, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    if reset_head and hasattr(net, "reset_classifier"):
        net.reset_classifier(getattr(net, "num_classes", net.fc.out_features))
    report.source, report.source_arch, report.target_arch = name, source_arch, target_arch
    if meta.get("num_classes") is not None:
        report.source_classes = int(meta["num_classes"])
    return report


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


def finetune_param_groups(
    net: nn.Module, weight_decay: float, backbone_lr_mult: float = 1.0
) -> list[dict[str, Any]]:
    """Four groups: backbone/head × decay/no-decay (BatchNorm and biases never decay).

    The head (``fc``) group carries ``lr_mult`` 1, the backbone ``backbone_lr_mult``; frozen
    parameters (``requires_grad`` False) are left out. Empty groups are dropped.
    """
    groups: dict[tuple[str, bool], list[Tensor]] = {}
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        part = "head" if name.startswith(HEAD_PREFIX) else "backbone"
        groups.setdefault((part, p.ndim > 1), []).append(p)
    out = []
    for part in ("backbone", "head"):
        for decays in (True, False):
            params = groups.get((part, decays))
            if params:
                out.append(
                    {
                        "params": params,
                        "weight_decay": weight_decay if decays else 0.0,
                        "lr_mult": backbone_lr_mult if part == "backbone" else 1.0,
                        "name": f"{part}{'' if decays else '_no_decay'}",
                    }
                )
    return out


# --------------------------------------------------------------------------- the module
class FinetuneClassifier(VideoClassifier):
    """A :class:`VideoClassifier` that starts from pretrained weights and fine-tunes them.

    Args:
        pretrained: the weights to start from (``--ckpt`` of ``finetune_ucf.py``): an a2video
            checkpoint, a PyTorchVideo state dict or a torchvision ResNet-50 state dict. Loaded
            when a fit starts (not when resuming, testing or predicting from a fine-tuned
            checkpoint, which holds every weight). None: train from scratch.
        pretrained_kind: ``auto`` or ``a2video`` / ``pytorchvideo`` / ``imagenet``.
        inflate: ``mean`` or ``center`` inflation of ImageNet kernels.
        reset_head: re-initialise the head even when the class counts agree.
        frozen_bn: keep every loaded BatchNorm's running statistics fixed (the layers run in eval
            mode during training; their scale and shift still learn).
        freeze_stages: no gradient in the first k stages (1: stem; 2..5: + res2..res5);
            their BatchNorm statistics stay fixed too. Newly initialised tensors stay trainable.
        backbone_lr_mult: the backbone's learning rate is the head's (``lr``) times this.
        dropout: dropout before the head (overrides ``arch_options["dropout"]``).
        unsafe_load: accept pickled Python objects in ``pretrained`` (trusted files only).
        **kwargs: the :class:`VideoClassifier` arguments (``arch``, ``lr``, ``scheduler``…).
    """

    def __init__(
        self,
        pretrained: str | None = None,
        pretrained_kind: SourceKind = "auto",
        inflate: Literal["mean", "center"] = "mean",
        reset_head: bool = True,
        frozen_bn: bool = False,
        freeze_stages: int = 0,
        backbone_lr_mult: float = 1.0,
        dropout: float | None = None,
        unsafe_load: bool = False,
        **kwargs: Any,
    ) -> None:
        if dropout is not None:
            kwargs["arch_options"] = {**dict(kwargs.get("arch_options") or {}), "dropout": dropout}
        stage_prefixes(freeze_stages)  # validates
        if backbone_lr_mult < 0:
            raise ValueError(f"backbone_lr_mult must be >= 0, got {backbone_lr_mult}")
        super().__init__(**kwargs)
        self.transfer_report: TransferReport | None = None
        self._frozen_bn: list[str] = []
        self._transfer_done = False

    # ------------------------------------------------------------------ weights and freezing
    def configure_model(self) -> None:
        super().configure_model()
        if self._transfer_done or self._trainer is None or self.trainer.state.fn != "fit":
            return
        hp = self.hparams
        new_keys: set[str] = set()
        if hp.pretrained:
            if hp.get("pretrained_2d"):
                raise FinetuneError(
                    "give either pretrained (--ckpt) or pretrained_2d, not both: --ckpt also "
                    "takes a torchvision ResNet-50 state dict"
                )
            report = load_pretrained(
                self.net,
                hp.pretrained,
                kind=hp.pretrained_kind,
                inflate=hp.inflate,
                reset_head=hp.reset_head,
                unsafe=hp.unsafe_load,
            )
            new_keys = set(report.missing) | set(report.reinitialized)
        else:
            report = TransferReport(kind="none", source="(none: from scratch)")
            report.target_arch = self.arch
            if hp.frozen_bn or hp.freeze_stages:
                rank_zero_warn(
                    "a2video: frozen_bn / freeze_stages without pretrained weights freeze "
                    "randomly initialised layers"
                )
        new_modules = {k.rsplit(".", 1)[0] for k in new_keys}
        report.frozen = freeze_stages(self.net, hp.freeze_stages, keep=sorted(new_keys))
        self._frozen_bn = frozen_bn_modules(
            self.net, hp.frozen_bn, hp.freeze_stages, exclude=sorted(new_modules)
        )
        report.frozen_bn = list(self._frozen_bn)
        self.transfer_report = report
        self._transfer_done = True
        if hp.pretrained:
            rank_zero_info(report.summary())

    def train(self, mode: bool = True) -> FinetuneClassifier:
        """As ``nn.Module.train``, keeping frozen BatchNorm layers in eval mode."""
        super().train(mode)
        if mode and self._frozen_bn:
            modules = dict(self.net.named_modules())
            for name in self._frozen_bn:
                modules[name].eval()
        return self

    def on_fit_start(self) -> None:
        self.train(self.training)  # the Trainer may have toggled modes before the first batch
        report = self.transfer_report
        if report is None or not self.trainer.is_global_zero:
            return
        root = self.trainer.default_root_dir
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(root, "transfer_report.json"), "w") as f:
            json.dump(report.to_dict(), f, indent=1)

    def on_train_epoch_start(self) -> None:
        self.train(True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.transfer_report is not None:
            checkpoint["a2video"]["transfer"] = self.transfer_report.to_dict()

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        """The base optimizer and schedule, with the backbone's LR scaled by ``backbone_lr_mult``.

        The base class builds its optimizer (SGD or the configured callable, LR scaling, no
        decay on BatchNorm/bias) and its warm-up schedule; this rebuilds the same optimizer over
        :func:`finetune_param_groups` and reattaches the same schedule.
        """
        config = super().configure_optimizers()
        mult = float(self.hparams.backbone_lr_mult)
        if mult == 1.0:
            return config
        old = config["optimizer"]
        sched = config["lr_scheduler"]["scheduler"]
        base_lr = old.param_groups[0].get("initial_lr", old.defaults.get("lr"))
        groups = finetune_param_groups(self.net, self.hparams.weight_decay, mult)
        for group in groups:
            group["lr"] = base_lr * group["lr_mult"]
        optimizer = type(old)(groups, **old.defaults)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, sched.lr_lambdas[0])
        rank_zero_info(f"a2video: backbone LR {base_lr * mult:g}, head LR {base_lr:g}")
        return {
            "optimizer": optimizer,
            "lr_scheduler": {**config["lr_scheduler"], "scheduler": schedule},
        }


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
    return folds


class FinetuneCLI(A2VideoCLI):
    """``finetune_ucf.py``: LightningCLI for transfer to UCF-101.

    On top of :class:`a2video.training.cli.A2VideoCLI`:

    - ``--ckpt PATH``: the pretrained weights (``model.pretrained``).
    - ``--test_after_fit true`` (default): after ``fit``, the 10×3-view test of the fine-tuned
      weights on the fold's test list (``predictions.csv`` in the run directory), and
      ``<default_root_dir>/results.json`` with the test metrics and the transfer report.
    - ``--folds all`` (or ``1,3``): see :func:`run_folds`.

    Args:
        fold: set by :func:`run_folds`: the UCF-101 fold of this run (its directory gets
            ``/fold<k>`` appended).
        **kwargs: as :class:`A2VideoCLI`.
    """

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
        parser.link_arguments("ckpt", "model.pretrained")
        parser.add_argument(
            "--folds",
            type=str | None,
            default=None,
            help="UCF-101 folds to run one after another: 'all' (1, 2, 3) or e.g. '1,3'; the "
            "mean of their test accuracies is reported (command line only, with fit).",
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After fit, run the multi-view test (10x3 by default) of the final weights.",
        )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if self.fold is not None:
            config.data.fold = self.fold
            root = config.trainer.get("default_root_dir") or "runs/default"
            config.trainer.default_root_dir = os.path.join(root, f"fold{self.fold}")
        elif len(parse_folds(config.get("folds"))) > 1:
            raise ValueError("--folds with several folds is a command-line option of finetune_ucf")
        elif parse_folds(config.get("folds")):
            config.data.fold = parse_folds(config.get("folds"))[0]
        super().before_instantiate_classes()

    def after_fit(self) -> None:
        config = self.config[self.subcommand]
        if not config.get("test_after_fit", True):
            return
        if self.trainer.interrupted:
            return
        self.trainer.test(self.model, datamodule=self.datamodule)
        metrics = {
            k: float(v)
            for k, v in self.trainer.callback_metrics.items()
            if k.startswith("test/") and torch.as_tensor(v).numel() == 1
        }
        report = getattr(self.model, "transfer_report", None)
        self.results = {
            "fold": getattr(self.datamodule, "fold", None),
            "metrics": metrics,
            # output_dir() on every rank: Trainer.log_dir broadcasts.
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
        model_class: default :class:`FinetuneClassifier`.
        datamodule_class: default :class:`a2video.data.UCF101DataModule`.
        **cli_kwargs: passed to :class:`FinetuneCLI`.

    Returns:
        ``{"folds": [...], "mean": {...}}`` for several folds; the single run's results otherwise.
    """
    from a2video.data import UCF101DataModule

    model_class = model_class or FinetuneClassifier
    datamodule_class = datamodule_class or UCF101DataModule
    argv = list(sys.argv[1:] if argv is None else argv)
    value, rest = _split_folds_arg(argv)
    folds = parse_folds(value)
    if len(folds) <= 1:
        extra = ["--folds", str(folds[0])] if folds else []
        cli = FinetuneCLI(model_class, datamodule_class, args=rest + extra, **cli_kwargs)
        return cli.results
    if not rest or rest[0] != "fit":
        raise SystemExit("finetune_ucf: --folds with several folds runs 'fit' (then the test)")
    runs = []
    root, rank_zero = None, True
    for fold in folds:
        cli = FinetuneCLI(model_class, datamodule_class, args=rest, fold=fold, **cli_kwargs)
        runs.append(cli.results | {"fold": fold})
        root = os.path.dirname(cli.trainer.default_root_dir)
        rank_zero = cli.trainer.is_global_zero  # every rank runs every fold; one reports
    keys = sorted(set.intersection(*(set(r.get("metrics", {})) for r in runs)))
    mean = {k: statistics.fmean(r["metrics"][k] for r in runs) for k in keys}
    std = {k: statistics.pstdev(r["metrics"][k] for r in runs) for k in keys}
    summary = {"folds": runs, "mean": mean, "std": std, "num_folds": len(runs)}
    lines = [
        f"fold {r['fold']}: video top-1 {r['metrics'].get('test/top1', float('nan')):.4f}"
        for r in runs
    ]
    lines.append(
        f"mean over {len(runs)} folds: video top-1 {mean.get('test/top1', float('nan')):.4f} "
        f"(± {std.get('test/top1', float('nan')):.4f})"
    )
    if not rank_zero:
        return summary
    print("a2video UCF-101 folds\n  " + "\n  ".join(lines), flush=True)
    if root is not None:
        with open(os.path.join(root, "folds.json"), "w") as f:
            json.dump(summary, f, indent=1)
    return summary


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point of ``finetune_ucf.py``: a bad ``--ckpt`` ends with one line and exit code 2."""
    from a2video.training.checkpoint import CheckpointError

    try:
        return run_folds(argv)
    except (CheckpointError, FinetuneError) as err:
        print(f"finetune_ucf: error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
