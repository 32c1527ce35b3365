"""FLOP and parameter counts as the A²-Nets paper reports them (GFLOPs = 10⁹ multiply-adds).

Counted with ``torch.utils.flop_counter.FlopCounterMode``, which counts 2 FLOPs per multiply-add
for convolutions, linear layers and matrix products (and nothing for BN, ReLU, pooling, softmax);
multiply-adds = counted FLOPs / 2.

Closed form of one A²-block (Section 2.3) over L positions with c channels, m = n:
projections ``c·(m+2n)·L + m·c·L = 4·c·m·L`` multiply-adds, products ``2·m·n·L`` (left
association); parameters ``c·(m+2n) + (m+2n) + m·c + 2·c`` (fused φθρ conv with bias, output conv,
output BN).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from a2video.models.attention import DoubleAttention, attention_blocks

__all__ = ["a2_block_cost", "count_arch_flops", "count_flops"]


def a2_block_cost(channels: int, m: int, n: int, length: int) -> dict[str, int]:
    """Closed-form multiply-adds and parameters of one A²-block (left association).

    Args:
        channels: Input channels c.
        m: Channels of A.
        n: Number of descriptors.
        length: Positions L = T·H·W of the block's input.

    Returns:
        ``{"projection_macs", "product_macs", "macs", "params"}``.
    """
    proj = channels * (m + 2 * n) * length + m * channels * length
    prod = 2 * m * n * length
    params = channels * (m + 2 * n) + (m + 2 * n) + m * channels + 2 * channels
    return {"projection_macs": proj, "product_macs": prod, "macs": proj + prod, "params": params}


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, frames: int = 8, size: int = 224) -> dict[str, Any]:
    """Multiply-adds and parameters of ``model`` on one (1, 3, frames, size, size) clip.

    Args:
        model: A :class:`~a2video.models.resnet3d.VideoResNet` (or any clip classifier).
        frames: Clip length T.
        size: Spatial size (square).

    Returns:
        Dict with ``gflops`` (10⁹ multiply-adds), ``params_m`` (10⁶ parameters), and for the
        inserted blocks (``layerS.i.attn``) their counted ``attn_gflops`` / ``attn_params_m``,
        the A²-blocks' closed form ``attn_closed_form_gflops`` / ``attn_closed_form_params_m``,
        and per-block details under ``blocks``.
    """
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    x = torch.zeros(1, 3, frames, size, size, device=p.device, dtype=p.dtype)
    blocks = attention_blocks(model)
    shapes: dict[str, tuple[int, ...]] = {}
    handles = [
        mod.register_forward_hook(
            lambda _m, inp, _out, name=name: shapes.__setitem__(name, tuple(inp[0].shape))
        )
        for name, mod in blocks.items()
    ]
    try:
        with FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    per_module = counter.get_flop_counts()
    root = next(iter(per_module)) if per_module else "Global"
    total_macs = counter.get_total_flops() / 2

    details = []
    attn_macs = 0.0
    closed_macs = 0
    closed_params = 0
    for name, mod in blocks.items():
        counted = sum(per_module.get(f"{type(model).__name__}.{name}", {}).values()) / 2
        if not counted:  # older/newer naming of the root module
            counted = sum(per_module.get(f"{root}.{name}", {}).values()) / 2
        attn_macs += counted
        entry: dict[str, Any] = {
            "name": name,
            "type": type(mod).__name__,
            "input_shape": list(shapes.get(name, ())),
            "gflops": counted / 1e9,
            "params": _params(mod),
        }
        if isinstance(mod, DoubleAttention) and name in shapes:
            shape = shapes[name]
            length = 1
            for s in shape[2:]:
                length *= s
            cf = a2_block_cost(shape[1], mod.m, mod.n, length)
            entry["closed_form_gflops"] = cf["macs"] / 1e9
            entry["closed_form_params"] = cf["params"]
            closed_macs += cf["macs"]
            closed_params += cf["params"]
        details.append(entry)

    return {
        "arch": getattr(model, "arch", type(model).__name__),
        "frames": frames,
        "size": size,
        "gflops": total_macs / 1e9,
        "params_m": _params(model) / 1e6,
        "attn_blocks": len(blocks),
        "attn_gflops": attn_macs / 1e9,
        "attn_params_m": sum(_params(m) for m in blocks.values()) / 1e6,
        "attn_closed_form_gflops": closed_macs / 1e9,
        "attn_closed_form_params_m": closed_params / 1e6,
        "blocks": details,
    }


def count_arch_flops(arch: str, frames: int = 8, size: int = 224, **options: Any) -> dict[str, Any]:
    """:func:`count_flops` of a registered arch, built on the meta device (no memory, no compute).

    Args:
        arch: A registered arch name.
        frames: Clip length T.
        size: Spatial size (square).
        **options: Builder options (``num_classes``, ``attn_m``…); weights options are ignored.

    Returns:
        As :func:`count_flops`.
    """
    from a2video.models.registry import build_model

    options = {k: v for k, v in options.items() if k not in ("pretrained_2d", "pretrained_ptv")}
    with torch.device("meta"):
        model = build_model(arch, **options)
    return count_flops(model, frames=frames, size=size)
