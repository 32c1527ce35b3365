"""One weight loader: a pure filter per source kind and :func:`load_weights`.

Three kinds of source weights, recognised from the keys (:func:`detect_kind`):

- ``a2video``: a checkpoint of this project (``train.py``, ``finetune_ucf.py``) or a bare state
  dict of one of our networks; every tensor must fit key for key, A²-blocks included.
- ``pytorchvideo``: a PyTorchVideo ``slow_r50`` / ``i3d_r50`` state dict (or its ``.pyth``),
  renamed by :func:`a2video.models.inflate.convert_pytorchvideo_state_dict`.
- ``imagenet``: a torchvision 2-D ResNet state dict (or ``"imagenet"``: torchvision's
  ResNet-50 IMAGENET1K_V1), kernels inflated to 3-D (:func:`a2video.models.inflate.inflate_weight`,
  the paper's "ImageNet-pretrained" I3D initialisation).

Each filter (:data:`FILTERS`) is a pure function from the source state dict and the target's
shapes to the state dict to load and a :class:`LoadReport`, like timm's
``checkpoint_filter_fn``. :func:`load_weights` reads the source (files through
:func:`a2video.training.checkpoint.load_checkpoint`: weights only, pickles refused), filters, loads
and then checks, as mmaction2 does, that the only target tensors left at their initialisation are
new blocks' (``.attn.``, foreign sources only) and the head's, and that no source tensor went
unused (a 2-D ResNet's extra units excepted: ``r26`` takes part of a ResNet-50).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from a2video.models.inflate import Inflate, convert_pytorchvideo_state_dict, inflate_weight

__all__ = [
    "FILTERS",
    "LoadReport",
    "WeightsError",
    "detect_kind",
    "filter_a2video",
    "filter_imagenet",
    "filter_pytorchvideo",
    "load_weights",
    "read_weights",
]

Kind = Literal["auto", "a2video", "pytorchvideo", "imagenet"]
Source = str | os.PathLike | Mapping[str, Any]
Shapes = Mapping[str, torch.Size | tuple[int, ...]]
HEAD_PREFIX = "fc."
FOREIGN = ("pytorchvideo", "imagenet")  # sources without our A²/non-local blocks


class WeightsError(ValueError):
    """Weights that do not fit the network (one line, naming the file and the fix)."""


@dataclass
class LoadReport:
    """What a load did.

    Attributes:
        loaded: target keys filled from the source.
        skipped: source keys with no place in the target (unused).
        reinitialized: target keys left at their initialisation on purpose (the head).
        missing: target keys the source lacks (new attention blocks of a foreign source).
        source: the file, or ``"<state dict>"``.
        kind: ``a2video``, ``pytorchvideo`` or ``imagenet``.
        source_arch: the architecture an a2video checkpoint records (else None).
        target_arch: the network's architecture.
        source_classes: the source's class count (checkpoint metadata or head rows).
    """

    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    reinitialized: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    source: str = "<state dict>"
    kind: str = "a2video"
    source_arch: str | None = None
    target_arch: str | None = None
    source_classes: int | None = None

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
        }

    def summary(self) -> str:
        """One line: counts first, with the non-loaded keys spelled out."""
        lines = [f"loaded {len(self.loaded)} tensors"]
        for name in ("skipped", "reinitialized", "missing"):
            keys = getattr(self, name)
            shown = ", ".join(keys[:8]) + (f", … (+{len(keys) - 8})" if len(keys) > 8 else "")
            lines.append(f"{name} {len(keys)}" + (f": {shown}" if keys else ""))
        return "; ".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON, weights-only checkpoints)."""
        return {**asdict(self), "counts": self.counts()}


# --------------------------------------------------------------------------- reading
def _unwrap(obj: Mapping[str, Any]) -> dict[str, Any]:
    for wrapper in ("state_dict", "model_state", "model"):
        inner = obj.get(wrapper)
        if isinstance(inner, Mapping) and any(isinstance(v, Tensor) for v in inner.values()):
            return dict(inner)
    return dict(obj)


def read_weights(source: Source, unsafe: bool = False) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors of a source with the network's key names, and its a2video metadata.

    Args:
        source: a file, an in-memory checkpoint / state dict, or ``"imagenet"``.
        unsafe: allow pickled Python objects in the file (trusted files only).

    Returns:
        ``(state_dict, meta)``: ``net.`` (LightningModule) prefixes stripped, wrappers
        (``state_dict``, ``model_state``, ``model``) unwrapped; ``meta`` is
        ``checkpoint["a2video"]`` (empty for other sources).

    Raises:
        CheckpointError: a missing, empty, truncated, unreadable or pickled file.
    """
    if isinstance(source, Mapping):
        raw = dict(source)
    elif os.fspath(source) == "imagenet":
        raw = _download_imagenet_resnet50()
    else:
        from a2video.training.checkpoint import load_checkpoint  # the pickle refusal

        raw = load_checkpoint(source, unsafe=unsafe, map_location="cpu")
    meta = raw.get("a2video") if isinstance(raw.get("a2video"), Mapping) else {}
    sd = {k: v for k, v in _unwrap(raw).items() if isinstance(v, Tensor)}
    if any(k.startswith("net.") for k in sd):  # a VideoClassifier checkpoint
        sd = {k[4:]: v for k, v in sd.items() if k.startswith("net.")}
    return sd, dict(meta or {})


def _download_imagenet_resnet50() -> dict[str, Any]:
    """torchvision's ImageNet ResNet-50 (``IMAGENET1K_V1``), from torch's hub cache or the web;
    where neither has it (a compute node without internet) a one-line :class:`WeightsError`
    names the file to fetch elsewhere and where to put it."""
    import torch
    from torchvision.models import ResNet50_Weights

    weights = ResNet50_Weights.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=True)
    except (OSError, ValueError) as err:  # URLError, HTTPError, timeouts are OSErrors
        name = weights.url.rsplit("/", 1)[-1]
        cache = os.path.join(torch.hub.get_dir(), "checkpoints", name)
        reason = getattr(err, "reason", None) or err
        raise WeightsError(
            f"imagenet: could not download torchvision's ResNet-50 weights ({weights.url}: "
            f"{reason}); on a machine without internet, download {name} elsewhere and give its "
            f"path instead of 'imagenet' (e.g. --model.pretrained_2d /path/{name}), or copy it "
            f"to {cache}"
        ) from None


def detect_kind(state_dict: Mapping[str, Tensor]) -> str:
    """``a2video``, ``pytorchvideo`` or ``imagenet`` from a state dict's keys.

    Raises:
        WeightsError: no kind fits.
    """
    keys = list(state_dict)
    if not keys:
        raise WeightsError("holds no tensors")
    if any(k.startswith("blocks.") and ".res_blocks." in k for k in keys):
        return "pytorchvideo"
    conv1 = state_dict.get("conv1.weight")
    if isinstance(conv1, Tensor) and "layer1.0.conv1.weight" in state_dict:
        return "imagenet" if conv1.dim() == 4 else "a2video"
    raise WeightsError(
        "is not a checkpoint this loader knows (expected an a2video .ckpt, a PyTorchVideo "
        f"slow_r50/i3d_r50 state dict or a torchvision ResNet state dict; keys start {keys[:3]})"
    )


# --------------------------------------------------------------------------- pure filters
def _example(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f", … (+{len(keys) - n})" if len(keys) > n else "")


def _filter(
    state_dict: Mapping[str, Tensor],
    target: Shapes,
    kind: str,
    inflate: Inflate | None,
    reset_head: bool,
) -> tuple[dict[str, Tensor], LoadReport]:
    """Copy (or inflate) every source tensor the target has; check what is left over.

    Raises:
        WeightsError: a non-head tensor differs in shape; a target tensor other than the head or
            (foreign kinds) a new ``.attn.`` block is absent from the source; or a source tensor
            other than the head has no place in the target (a 2-D ResNet excepted).
    """
    out: dict[str, Tensor] = {}
    report = LoadReport(kind=kind)
    bad_shape: list[str] = []
    for key, shape in target.items():
        shape = tuple(shape)
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
            inflate is not None
            and src.dim() == 4
            and len(shape) == 5
            and tuple(src.shape[:2]) == shape[:2]
            and tuple(src.shape[2:]) == shape[3:]
        ):
            out[key] = inflate_weight(src.detach(), shape[2], inflate)  # (O,I,kh,kw)→(O,I,t,kh,kw)
        elif is_head:
            report.reinitialized.append(key)
            continue
        else:
            bad_shape.append(f"{key} {tuple(src.shape)} vs {shape}")
            continue
        report.loaded.append(key)
    report.skipped = [k for k in state_dict if k not in target]
    if "fc.weight" in state_dict:
        report.source_classes = int(state_dict["fc.weight"].shape[0])

    missing = [
        k
        for k in report.missing
        if not k.startswith(HEAD_PREFIX) and not (kind in FOREIGN and ".attn." in k)
    ]
    unused = [k for k in report.skipped if not k.startswith(HEAD_PREFIX)]
    problems = []
    if bad_shape:
        problems.append(f"{len(bad_shape)} tensors differ in shape ({_example(bad_shape, 2)})")
    if missing:
        problems.append(f"{len(missing)} model tensors are not in it ({_example(missing)})")
    if unused and kind != "imagenet":
        problems.append(f"{len(unused)} of its tensors have no place in the model "
                        f"({_example(unused)})")  # fmt: skip
    if problems:
        raise WeightsError("; ".join(problems))
    return out, report


def _is_slow_stem(state_dict: Mapping[str, Any]) -> bool:
    """Whether a PyTorchVideo state dict's stem has no temporal extent (``slow_r50``'s 1×7×7;
    ``i3d_r50``'s is 5×7×7)."""
    stem = state_dict.get("blocks.0.conv.weight")
    return isinstance(stem, Tensor) and stem.dim() == 5 and stem.shape[2] == 1


def _is_resnet50(state_dict: Mapping[str, Any]) -> bool:
    """Whether a torchvision or PyTorchVideo state dict is a ResNet-50's (3-4-6-3 bottlenecks)."""
    units = {}
    for key in state_dict:
        parts = key.split(".")
        if parts[0].startswith("layer") and len(parts) > 2 and parts[1].isdigit():
            units.setdefault(parts[0], set()).add(int(parts[1]))  # torchvision: layer3.5.conv3
        elif key.startswith("blocks.") and ".res_blocks." in key and len(parts) > 3:
            units.setdefault(parts[1], set()).add(int(parts[3]))  # blocks.3.res_blocks.5.…
    counts = [len(v) for _, v in sorted(units.items())]
    bottleneck = any(k.endswith("conv3.weight") or ".branch2.conv_c." in k for k in state_dict)
    return counts[-4:] == [3, 4, 6, 3] and bottleneck


def filter_a2video(
    state_dict: Mapping[str, Tensor], target: Shapes, reset_head: bool = False, **_: Any
) -> tuple[dict[str, Tensor], LoadReport]:
    """Our own weights: key for key, shape for shape (only the head may differ)."""
    return _filter(state_dict, target, "a2video", None, reset_head)


def filter_pytorchvideo(
    state_dict: Mapping[str, Tensor], target: Shapes, reset_head: bool = False, **_: Any
) -> tuple[dict[str, Tensor], LoadReport]:
    """PyTorchVideo ``create_resnet`` weights, renamed; inserted blocks stay at identity."""
    return _filter(convert_pytorchvideo_state_dict(state_dict), target, "pytorchvideo", None,
                   reset_head)  # fmt: skip


def filter_imagenet(
    state_dict: Mapping[str, Tensor],
    target: Shapes,
    reset_head: bool = False,
    inflate: Inflate = "mean",
) -> tuple[dict[str, Tensor], LoadReport]:
    """A 2-D torchvision ResNet, kernels inflated over time (``mean`` or ``center``)."""
    if inflate not in ("mean", "center"):
        raise ValueError(f"inflate must be 'mean' or 'center', got {inflate!r}")
    return _filter(state_dict, target, "imagenet", inflate, reset_head)


FILTERS: dict[str, Callable[..., tuple[dict[str, Tensor], LoadReport]]] = {
    "a2video": filter_a2video,
    "pytorchvideo": filter_pytorchvideo,
    "imagenet": filter_imagenet,
}


# --------------------------------------------------------------------------- the loader
def load_weights(
    model: nn.Module,
    source: Source,
    *,
    kind: Kind = "auto",
    inflate: Inflate = "mean",
    reset_head: bool = False,
    unsafe: bool = False,
) -> LoadReport:
    """Load weights into ``model`` in place: the one loader of the package.

    Args:
        model: a network from :func:`a2video.models.build_model`.
        source: a checkpoint / state dict file, one in memory, or ``"imagenet"``.
        kind: ``auto`` (recognised from the keys) or the source kind.
        inflate: how 2-D kernels gain time (``imagenet`` sources).
        reset_head: re-initialise ``fc`` even when its shape fits (fine-tuning on new classes);
            otherwise the head loads when its shape fits and is re-initialised when not.
        unsafe: allow pickled objects in the file (trusted files only).

    Returns:
        The :class:`LoadReport`.

    Raises:
        CheckpointError: the file is missing, truncated, pickled or not a checkpoint.
        WeightsError: the weights do not fit ``model`` (one line naming the file and the fix).
    """
    name = "<state dict>" if isinstance(source, Mapping) else os.fspath(source)
    sd, meta = read_weights(source, unsafe)
    try:
        found = detect_kind(sd) if kind == "auto" else kind
        if found not in FILTERS:
            raise WeightsError(f"unknown weights kind {kind!r}; use one of {sorted(FILTERS)}")
    except WeightsError as err:
        raise WeightsError(f"{name}: {err}") from None
    target_arch = getattr(model, "arch", None) or type(model).__name__
    source_arch = meta.get("arch")
    if source_arch and source_arch != target_arch:
        raise WeightsError(
            f"{name}: wrong arch: the checkpoint holds {source_arch!r}, the model is "
            f"{target_arch!r}; set --model.arch {source_arch} (only the head may differ)."
        )
    target = {k: v.shape for k, v in model.state_dict().items()}
    try:
        out, report = FILTERS[found](sd, target, reset_head=reset_head, inflate=inflate)
    except WeightsError as err:
        hint = "only the head 'fc' may differ"
        if found in FOREIGN and _is_resnet50(sd) and not str(target_arch).endswith("_r50"):
            hint += f"; {found} weights are a ResNet-50's: set --model.arch a2net_r50 (or i3d_r50…)"
        elif found == "pytorchvideo" and _is_slow_stem(sd) and target_arch != "slow_r50":
            hint += "; these are PyTorchVideo's slow_r50 (1×7×7 stem): set --model.arch slow_r50"
        fit = f"{name}: {found} weights do not fit {target_arch}"
        raise WeightsError(f"{fit}: {err} ({hint}).") from None
    result = model.load_state_dict(out, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    if reset_head and hasattr(model, "reset_classifier"):
        model.reset_classifier(getattr(model, "num_classes", None) or model.fc.out_features)
    report.source, report.source_arch, report.target_arch = name, source_arch, target_arch
    if meta.get("num_classes") is not None:
        report.source_classes = int(meta["num_classes"])
    return report
