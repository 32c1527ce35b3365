"""A dispatch mode that counts tensors made from host numbers (``torch.tensor(list)``).

On a GPU each such tensor is a blocking host-to-device copy, a host sync; the tests use it on
CPU or meta tensors to show a hot path makes none.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class HostData(TorchDispatchMode):
    """Counts ``aten.lift_fresh``: the op every tensor made from host data passes through."""

    def __init__(self) -> None:
        super().__init__()
        self.made = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.made += func.overloadpacket is torch.ops.aten.lift_fresh
        return func(*args, **(kwargs or {}))
