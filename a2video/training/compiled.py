"""``torch.compile`` of a module's network, compiled on first use, with a safe eager fallback.

The compiled wrapper is held outside the ``nn.Module`` tree, so the state dict keeps the plain
parameter names and checkpoints are the same with or without ``compile``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn

__all__ = ["CompiledForward"]


class CompiledForward:
    """The ``torch.compile``'d forward of a network; its first call (the warm-up) is timed and
    logged once.

    If compilation fails, one warning names the error and the network runs eagerly from then on.

    Attributes:
        state: ``cold`` (not run yet), ``warm`` (compiled and run) or ``failed`` (eager).
    """

    def __init__(self) -> None:
        self.fn: Callable[[Tensor], Tensor] | None = None
        self.state: Literal["cold", "warm", "failed"] = "cold"

    def __call__(self, net: nn.Module, x: Tensor, options: dict[str, Any]) -> Tensor:
        """``net(x)`` through the compiled wrapper (built from ``options`` on the first call)."""
        if self.fn is None:
            self.fn = torch.compile(net, **options)
        if self.state == "warm":
            return self.fn(x)
        start = time.perf_counter()
        try:
            out = self.fn(x)
        except Exception as err:  # compiler/backend errors vary by torch build and device
            self.state = "failed"
            reason = " ".join(str(err).split())[:300]  # one line
            rank_zero_warn(
                f"a2video: torch.compile failed ({type(err).__name__}: {reason}); "
                "running the network eagerly. Set model.compile: false to silence this."
            )
            return net(x)
        self.state = "warm"
        rank_zero_info(f"a2video: torch.compile warm-up took {time.perf_counter() - start:.1f} s")
        return out
