"""The devices of this machine, and a device name checked against them (one home for both)."""

from __future__ import annotations

import torch

__all__ = ["devices_here", "resolve_device"]


def devices_here() -> list[str]:
    """The device names this machine has, as a message lists them (``cpu``, ``cuda:0``…)."""
    names = ["cpu"]
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        names += ["cuda"] + ([f"cuda:0..cuda:{count - 1}"] if count > 1 else ["cuda:0"])
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device`, after checking this machine has it.

    Raises:
        ValueError: not a device name (``gpu0``), or a device this machine lacks (``cuda``
            without a CUDA GPU, ``cuda:3`` with one GPU); the message lists the devices here.
    """
    here = ", ".join(devices_here())
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"device {str(device)!r} is not a torch device name; this machine has: {here}"
        ) from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        ok = count > 0 and (dev.index is None or dev.index < count)
    else:
        backend = getattr(torch.backends, dev.type, None) or getattr(torch, dev.type, None)
        ok = callable(getattr(backend, "is_available", None)) and bool(backend.is_available())
    if not ok:
        why = ""
        if dev.type == "cuda" and not torch.cuda.is_available():
            why = " (torch.cuda.is_available() is False: no CUDA GPU or driver)"
        raise ValueError(
            f"device {str(device)!r} is not available here; this machine has: {here}{why}"
        )
    return dev
