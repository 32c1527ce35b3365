"""Steps with a non-finite loss: skipped, counted and stopped after a limit, without host syncs.

A fused torch optimizer (``fused=True``: SGD, Adam, AdamW...) skips its whole update on the
device when its ``found_inf`` tensor is non-zero (GradScaler's mechanism), so a NaN/inf step
leaves weights and optimizer state untouched without the host ever reading the loss. Three device
counters (total, current run, longest run since the last check) are read on the host every
``trainer.log_every_n_steps`` batches and at epoch end: the run stops within that lag once
``max_nonfinite_steps`` consecutive steps were non-finite (identical on every rank: the flag is
all-reduced on the device). Any other optimizer (or ``16-mixed``, whose GradScaler owns
``found_inf``) falls back to a host check every step.

:class:`NonFiniteSteps` holds that state; :class:`a2video.training.module.VideoClassifier` calls
it from its hooks.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

__all__ = ["NonFiniteLossError", "NonFiniteSteps", "init_momentum"]


class NonFiniteLossError(RuntimeError):
    """Raised after ``max_nonfinite_steps`` consecutive steps with a NaN/inf loss."""


def init_momentum(optimizer: torch.optim.Optimizer) -> None:
    """Zero SGD momentum buffers before the first step, so a skipped first step keeps them valid.

    A fused SGD's first step allocates its buffers uninitialised and fills them in the kernel;
    when that step is skipped (``found_inf``) they would stay garbage. With zero dampening a zero
    buffer gives the same first update (``buf = momentum·0 + grad``).
    """
    if not isinstance(optimizer, torch.optim.SGD):
        return
    for group in optimizer.param_groups:
        if not group["momentum"] or group.get("dampening", 0):
            continue
        for p in group["params"]:
            if not p.requires_grad:  # frozen: never stepped, no buffer
                continue
            state = optimizer.state[p]
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def _stop(run: int, limit: int) -> NonFiniteLossError:
    return NonFiniteLossError(
        f"a2video: {run} consecutive steps had a non-finite loss "
        f"(limit max_nonfinite_steps={limit}); stopping. Lower the learning rate, enable "
        "gradient clipping (trainer.gradient_clip_val) or use bf16-mixed, not 16-mixed."
    )


class NonFiniteSteps:
    """The non-finite step state of one module: device counters, ``found_inf`` and the host view.

    Attributes:
        counts: ``[total, run, longest run since last check]``, on the module's device.
        found_inf: 0-d flag handed to a fused optimizer (non-zero: skip the step).
        seen: the total at the last host check.
        device_skip: whether the current optimizer skips on the device (set each step).
        in_a_row: the current run of non-finite steps, as the host last saw it.
    """

    def __init__(self) -> None:
        self.counts = torch.zeros(3)
        self.found_inf = torch.zeros(())
        self.seen = 0
        self.device_skip = False
        self.warned_host_skip = False
        self.in_a_row = 0
        self.drop_window = False  # host check under DDP: this window's gradients are dropped

    @property
    def total(self) -> int:
        """Steps skipped for a non-finite loss so far (reads the device counter)."""
        return int(self.counts[0])

    @total.setter
    def total(self, value: int) -> None:
        self.counts[0] = value
        self.seen = int(value)

    def fresh(self, device: torch.device) -> None:
        """Own counters on ``device`` in this process (ddp_spawn shares CPU tensors)."""
        self.counts = self.counts.clone().to(device)
        self.found_inf = torch.zeros((), device=device)

    def on(self, device: torch.device) -> Tensor:
        """The counters, moved to ``device`` first if needed."""
        if self.counts.device != device:
            self.counts = self.counts.to(device)
            self.found_inf = self.found_inf.to(device)
        return self.counts

    def flag(self, loss: Tensor, world_size: int) -> Tensor:
        """Count a non-finite ``loss`` on the device; returns 1.0 if finite on all ranks, else 0."""
        counts = self.on(loss.device)
        bad = (~torch.isfinite(loss.detach())).to(counts.dtype)
        if world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.all_reduce(bad)  # on the device's stream, no host wait
            bad = (bad > 0).to(counts.dtype)
        run = (counts[1] + 1) * bad
        counts.copy_(torch.stack([counts[0] + bad, run, torch.maximum(counts[2], run)]))
        torch.maximum(self.found_inf, bad, out=self.found_inf)  # over accumulated batches
        return 1.0 - bad

    def step(self, module: LightningModule, optimizer: Any, optimizer_closure: Any) -> Any:
        """Run the Trainer's optimizer step, handing ``found_inf`` to a fused optimizer."""
        opt = getattr(optimizer, "optimizer", optimizer)  # LightningOptimizer wraps it
        scaler = getattr(module.trainer.precision_plugin, "scaler", None)
        self.device_skip = bool(getattr(opt, "_step_supports_amp_scaling", False)) and (
            scaler is None  # 16-mixed: GradScaler owns found_inf (and skips inf steps itself)
        )
        if not self.device_skip:
            if not self.warned_host_skip:
                self.warned_host_skip = True
                why = (
                    "16-mixed's GradScaler owns its found_inf"
                    if scaler is not None
                    else f"{type(opt).__name__} is not a fused torch optimizer"
                )
                rank_zero_info(
                    f"a2video: non-finite steps are checked on the host every step ({why}; "
                    "bf16-mixed with a fused optimizer keeps the check on the device)."
                )
            if scaler is not None:  # its non-finite gradients make GradScaler skip the step
                self.drop_window = False
                return optimizer.step(closure=optimizer_closure)
            return optimizer.step(closure=self._dropping_skipped(opt, optimizer_closure))
        self.on(module.device)
        if not opt.state:  # before the first step (a resumed run has its buffers)
            init_momentum(opt)
        opt.found_inf = self.found_inf  # read by the fused kernel after the closure ran
        try:
            return optimizer.step(closure=optimizer_closure)
        finally:
            del opt.found_inf
            self.found_inf.zero_()

    def _dropping_skipped(self, opt: torch.optim.Optimizer, closure: Any) -> Any:
        """``closure`` (forward and backward), then no gradients if a batch of the window was
        skipped: the optimizer leaves every parameter and its state as they were."""

        def run() -> Any:
            result = closure()
            if self.drop_window:
                opt.zero_grad(set_to_none=True)
                self.drop_window = False
            return result

        return run

    def check(self, module: LightningModule, limit: int, in_batch: bool = False) -> None:
        """Read the device counters (a host sync, every ``log_every_n_steps``); warn, maybe stop."""
        counts = self.on(module.device)
        total, run, longest = (int(v) for v in counts.tolist())
        new = total - self.seen
        self.seen = total
        counts[2] = run  # the next window's longest run starts from the current one
        self.in_a_row = run
        if new == 0:
            return
        if in_batch:
            module.log("train/nonfinite_steps", float(total), on_step=True, on_epoch=False)
        rank_zero_warn(
            f"a2video: {new} step(s) with a non-finite loss before step {module.global_step}; "
            f"skipped on the device ({total} in total, longest run {longest}, limit {limit})."
        )
        if longest >= limit:
            raise _stop(longest, limit)

    def host_finite(self, module: LightningModule, loss: Tensor) -> bool:
        """Whether ``loss`` is finite on every rank, decided on the host (a sync)."""
        ok = bool(torch.isfinite(loss.detach()))
        if module.trainer.world_size > 1:  # every rank must agree to skip, or DDP hangs
            ok = module.trainer.strategy.reduce_boolean_decision(ok, all=True)
        if ok:
            self.in_a_row = 0
        return ok

    def skip(
        self, module: LightningModule, batch_idx: int, limit: int, loss: Tensor
    ) -> Tensor | None:
        """Count a step skipped on the host; warn, and stop after ``limit`` in a row.

        Returns what ``training_step`` returns: None in one process (Lightning then runs no
        backward and the optimizer finds no gradient). Under DDP Lightning refuses None, so it
        is the loss itself: every rank runs its backward (they agreed to skip, so the
        gradients' all-reduce matches), and :meth:`step` drops the window's gradients before
        the optimizer runs (with ``16-mixed`` the non-finite gradients make GradScaler skip).
        """
        self.total += 1
        self.in_a_row += 1
        module.log("train/nonfinite_steps", float(self.total), on_step=True, on_epoch=False)
        rank_zero_warn(
            f"a2video: non-finite loss at step {module.global_step} (batch {batch_idx}); skipped "
            f"({self.in_a_row} in a row, {self.total} in total, limit {limit})."
        )
        if self.in_a_row >= limit:
            raise _stop(self.in_a_row, limit)
        if module.trainer.world_size == 1:
            return None
        self.drop_window = True
        return loss
