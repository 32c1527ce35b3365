"""Reading the A²-blocks' attention maps out of a model during a forward pass.

Chen et al., "A²-Nets: Double Attention Networks", NeurIPS 2018, Section 2: each block gathers
with n attention maps B = softmax_L(θ(X)) (Eq. 3-4) and distributes with weights
V = softmax_n(ρ(X)) (Eq. 5). :func:`capture_attention` hooks every
:class:`~a2video.models.DoubleAttention` in a model and records B and V, reshaped onto the
block's (T, H, W) feature grid, so that :mod:`a2video.explore.viz` can draw them over the frames.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "AttentionMaps",
    "attention_blocks",
    "capture_attention",
    "descriptor_usage",
    "map_folders",
    "write_attention_maps",
]


@dataclass
class AttentionMaps:
    """The maps of one A²-block for one forward pass.

    Attributes:
        name: The block's module path, e.g. ``"layer3.1.attn"``.
        gather: B on the feature grid, (N, n, t, h, w); each map sums to 1 over t·h·w.
        distribute: V on the feature grid, (N, n, t, h, w); sums to 1 over n at each position.
    """

    name: str
    gather: Tensor
    distribute: Tensor

    @property
    def grid(self) -> tuple[int, int, int]:
        """(t, h, w) of the block's feature map."""
        return tuple(self.gather.shape[2:])  # type: ignore[return-value]


def attention_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's A²-blocks, in forward order, with their module paths."""
    from a2video.models import DoubleAttention
    from a2video.models import attention_blocks as find

    return list(find(model, DoubleAttention).items())


@contextmanager
def capture_attention(model: nn.Module) -> Iterator[list[AttentionMaps]]:
    """Records B and V of every A²-block during the forward passes run inside the context.

    The hooks call the block's ``descriptors(x)`` on its input (one more evaluation of the fused
    1×1×1 convolution), so the recorded maps are those the block uses. They are detached and on
    the CPU; the hooks are removed on exit.

    Example:
        >>> with capture_attention(model) as maps:
        ...     model(clip)
        >>> maps[0].gather.shape  # (N, n, t, h, w)

    Yields:
        A list filled with one :class:`AttentionMaps` per block call, in call order.
    """
    records: list[AttentionMaps] = []
    handles = []

    def make_hook(name: str):
        def hook(module: nn.Module, args: tuple[Tensor, ...]) -> None:
            x = args[0]
            grid = tuple(x.shape[2:]) if x.dim() == 5 else (1, *x.shape[2:])  # (t, h, w)
            with torch.no_grad():
                _, b, v = module.descriptors(x)  # (N, n, L) each, L = t·h·w
            n_maps = b.shape[1]
            records.append(
                AttentionMaps(
                    name=name,
                    gather=b.detach().float().cpu().reshape(x.shape[0], n_maps, *grid),
                    distribute=v.detach().float().cpu().reshape(x.shape[0], n_maps, *grid),
                )
            )

        return hook

    for name, module in attention_blocks(model):
        handles.append(module.register_forward_pre_hook(make_hook(name)))
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def descriptor_usage(
    model: nn.Module,
    clips: Iterable[tuple[Tensor, Tensor]],
    num_classes: int,
) -> dict[str, Tensor]:
    """How much each class's videos use each global descriptor, per block.

    The usage of descriptor j by a video is V's weight on j averaged over the video's positions
    (and views); a class's usage is the mean over its videos.

    Args:
        model: The network, in eval mode.
        clips: Batches ``(video, label)``: video (B, 3, T, H, W) or (B, V, 3, T, H, W) normalised,
            label (B,) long.
        num_classes: K.

    Returns:
        ``{block name: (K, n) usage}``; rows of classes with no video are zeros, the others sum
        to 1.
    """
    sums: dict[str, Tensor] = {}
    counts = torch.zeros(num_classes, dtype=torch.float64)
    device = next(model.parameters()).device
    for video, label in clips:
        views = video.shape[1] if video.dim() == 6 else 1
        flat = video.flatten(0, 1) if video.dim() == 6 else video  # (B*V, 3, T, H, W)
        with capture_attention(model) as maps:
            model(flat.to(device))
        for record in maps:
            v = record.distribute.flatten(2).mean(2).double()  # (B*V, n)
            v = v.view(-1, views, v.shape[1]).mean(1)  # (B, n)
            total = sums.setdefault(
                record.name, torch.zeros(num_classes, v.shape[1], dtype=v.dtype)
            )
            total.index_add_(0, label.cpu(), v)
        counts.index_add_(0, label.cpu(), torch.ones(len(label), dtype=torch.float64))
    scale = torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts))
    return {name: (total * scale[:, None]).float() for name, total in sums.items()}


def map_folders(paths: Sequence[str | os.PathLike]) -> dict[str, str]:
    """A distinct folder name per video for :func:`write_attention_maps`: its file stem (odd
    characters replaced by ``_``), and ``<stem>-2``, ``<stem>-3``, … for later videos with the
    same stem. Names differ ignoring case too (case-insensitive file systems), a video keeps its
    own stem where another's suffix would take it, and the same path twice maps to one folder.

    Returns:
        ``{os.fspath(path): folder name}``.
    """
    stems = {}
    for path in paths:
        stems.setdefault(os.fspath(path), re.sub(r"[^\w.-]+", "_", Path(path).stem) or "_")
    taken = {stem.casefold() for stem in stems.values()}  # every video's own stem is reserved
    names: dict[str, str] = {}
    used: set[str] = set()
    for key, stem in stems.items():
        name, n = stem, 1
        while name.casefold() in used or (n > 1 and name.casefold() in taken):
            n += 1
            name = f"{stem}-{n}"
        used.add(name.casefold())
        names[key] = name
    return names


def write_attention_maps(
    predictor: Any,
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    descriptors: int = 4,
    num_frames: int = 8,
    decoder: str = "auto",
) -> dict[str, list[Path]]:
    """For each video, every A²-block's gather maps B over the frames of its centre clip (the
    attention notebook's figure), as PNGs ``OUT/<video stem>/<block>.png``; videos sharing a
    stem (``a/clip.avi``, ``b/clip.avi``, ``clip.mp4``) get ``<stem>``, ``<stem>-2``, … in the
    order given (:func:`map_folders`), so none overwrites another's maps.

    Each figure draws the ``descriptors`` maps the clip distributes most to (largest mean V),
    one row each, each scaled by its own maximum over the clip (Chen et al. 2018, Eq. 3-5).

    Args:
        predictor: From :func:`a2video.explore.predict.load_predictor`.
        paths: Video files.
        out_dir: Folder to write into (created).
        descriptors: Maps drawn per block.
        num_frames: Frames drawn per map.
        decoder: Decoder name.

    Returns:
        ``{path: [PNG files]}``; a video that cannot be decoded has no entry.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from a2video.data.video import VideoDecodeError
    from a2video.explore.predict import centre_clip
    from a2video.explore.viz import plot_attention_maps

    out = Path(out_dir)
    folders = map_folders(paths)
    written: dict[str, list[Path]] = {}
    for path in paths:
        if os.fspath(path) in written:
            continue  # the same file twice: one folder, counted once
        try:
            clip, frames = centre_clip(predictor, path, decoder=decoder)
        except VideoDecodeError:
            continue
        with torch.no_grad(), capture_attention(predictor.model) as maps:
            probs = predictor.model(clip[None].to(predictor.device)).float().softmax(1)[0].cpu()
        top = int(probs.argmax())
        folder = out / folders[os.fspath(path)]
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for m in maps:
            b, v = m.gather[0], m.distribute[0]  # (n, t, h, w)
            chosen = v.flatten(1).mean(1).argsort(descending=True)[:descriptors].tolist()
            fig = plot_attention_maps(
                frames,
                b,
                descriptors=chosen,
                num_frames=min(num_frames, len(frames)),
                title=f"{Path(path).name}: {m.name} gather maps B "
                f"(predicted {predictor.class_names[top]}, {float(probs[top]):.2f})",
            )
            target = folder / f"{m.name}.png"
            fig.savefig(target, dpi=100)
            plt.close(fig)
            files.append(target)
        written[os.fspath(path)] = files
    return written
