"""Optimisation parts of :class:`a2video.training.module.VideoClassifier`: parameter groups and
the LR schedule.

The paper's video setting (Section 3) trains with synchronous SGD with momentum and a step
schedule; the usual modern alternative is cosine with linear warm-up. BatchNorm parameters and
biases never decay; the decay groups keep the injected optimizer's own ``weight_decay``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from lightning.pytorch import Trainer
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = [
    "WarmupSchedule",
    "apply_settings",
    "check_resumable",
    "global_batch_size",
    "group_settings",
    "param_groups",
    "steps_per_epoch",
]


def param_groups(
    model: nn.Module,
    weight_decay: float | None = None,
    backbone_lr_mult: float = 1.0,
    head_prefix: str = "fc.",
) -> list[dict[str, Any]]:
    """Parameter groups: no decay on BatchNorm and bias (``ndim <= 1``), optional backbone LR.

    Only the no-decay groups set ``weight_decay`` (to 0); the decay groups keep the optimizer's
    own ``weight_decay`` unless ``weight_decay`` is given. Each group carries ``lr_mult`` (the
    backbone's is ``backbone_lr_mult``, the head's 1), applied by
    :meth:`VideoClassifier.configure_optimizers`. Frozen parameters are left out, empty groups
    dropped.

    Args:
        model: the network.
        weight_decay: decay of the decay groups; None keeps the optimizer's.
        backbone_lr_mult: LR multiplier of every parameter outside the head (fine-tuning).
        head_prefix: parameter-name prefix of the head.

    Returns:
        Groups named ``decay``/``no_decay`` (or ``backbone``/``backbone_no_decay``/``head``/
        ``head_no_decay`` when ``backbone_lr_mult != 1``), in that order.
    """
    split = backbone_lr_mult != 1.0
    buckets: dict[tuple[str, bool], list[Tensor]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        part = ("head" if name.startswith(head_prefix) else "backbone") if split else ""
        buckets.setdefault((part, p.ndim > 1), []).append(p)
    groups = []
    for part in ("backbone", "head") if split else ("",):
        for decays in (True, False):
            params = buckets.get((part, decays))
            if not params:
                continue
            group: dict[str, Any] = {
                "params": params,
                "name": (part or "decay") if decays else f"{part}_no_decay".lstrip("_"),
                "lr_mult": backbone_lr_mult if part == "backbone" else 1.0,
            }
            if not decays:
                group["weight_decay"] = 0.0
            elif weight_decay is not None:
                group["weight_decay"] = weight_decay
            groups.append(group)
    return groups


class WarmupSchedule:
    """LR multiplier per optimizer step: linear warm-up, then cosine or steps (``LambdaLR``).

    A plain object (not a closure) so ``LambdaLR.state_dict`` stores its fields as plain data.

    Args:
        total_steps: optimizer steps in the whole run.
        warmup_steps: steps of linear warm-up from ``warmup_start`` to 1.
        kind: "cosine" (to ``min_ratio`` at ``total_steps``), "step" (× ``gamma`` at each
            milestone) or "constant".
        milestones: steps where the step schedule multiplies by ``gamma``.
        gamma: step factor.
        min_ratio: final multiplier of the cosine.
        warmup_start: first multiplier of the warm-up.
    """

    def __init__(
        self,
        total_steps: int,
        warmup_steps: int = 0,
        kind: str = "cosine",
        milestones: Sequence[int] = (),
        gamma: float = 0.1,
        min_ratio: float = 0.0,
        warmup_start: float = 0.01,
    ) -> None:
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = max(0, int(warmup_steps))
        self.kind = kind
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = float(gamma)
        self.min_ratio = float(min_ratio)
        self.warmup_start = float(warmup_start)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_start + (1.0 - self.warmup_start) * step / self.warmup_steps
        if self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            t = min(1.0, (step - self.warmup_steps) / span)
            return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))
        if self.kind == "step":
            return self.gamma ** sum(step >= m for m in self.milestones)
        return 1.0


def global_batch_size(trainer: Trainer) -> int | None:
    """Per-device batch × devices × nodes × gradient accumulation (None: batch size unknown)."""
    per_device = getattr(getattr(trainer, "datamodule", None), "batch_size", None)
    if per_device is None:
        return None
    return int(per_device) * trainer.world_size * trainer.accumulate_grad_batches


def steps_per_epoch(trainer: Trainer, total: int) -> float:
    """Optimizer steps per epoch (to place warm-up and milestones given in epochs): Lightning
    steps once per ``accumulate_grad_batches`` batches and at the epoch's last batch, so
    ``ceil(batches / accumulate)``, as ``Trainer.estimated_stepping_batches`` counts them."""
    batches = trainer.num_training_batches
    if isinstance(batches, (int, float)) and math.isfinite(batches) and batches > 0:
        return float(max(1, math.ceil(batches / trainer.accumulate_grad_batches)))
    epochs = trainer.max_epochs
    return total / epochs if epochs and epochs > 0 else float(total)


# --------------------------------------------------------------------------- resuming
# Group keys that are not settings: the parameters, and the base LR a schedule adds.
_NOT_SETTINGS = ("params", "param_names", "initial_lr")


def group_settings(optimizer: Optimizer) -> list[dict[str, Any]]:
    """Each parameter group's settings (``lr``, ``weight_decay``, ``momentum``…), as configured."""
    return [
        {k: v for k, v in group.items() if k not in _NOT_SETTINGS}
        for group in optimizer.param_groups
    ]


def check_resumable(
    ckpt_path: str,
    saved: dict[str, Any],
    optimizer: Optimizer,
    saved_class: str | None,
    scheduler: tuple[str | None, str | None] = (None, None),
) -> None:
    """Raise one line where a checkpoint's optimizer state cannot be loaded into ``optimizer``.

    Lightning would load it anyway (another optimizer's groups lack this one's settings and fail
    at its first step; other group sizes fail in torch).

    Args:
        ckpt_path: the checkpoint (named in the message).
        saved: the checkpoint's ``optimizer_states[0]``.
        optimizer: this run's optimizer, as configured.
        saved_class: the optimizer class the checkpoint names (None: an older checkpoint).
        scheduler: (the checkpoint's LR scheduler class, this run's); None where unknown.
    """
    was, now = scheduler
    if was is not None and now is not None and was != now:
        raise ValueError(
            f"{ckpt_path}: its LR schedule is a {was} and this run's a {now} (another "
            "--model.lr_scheduler); resume with the scheduler it was trained with."
        )
    here = type(optimizer).__name__
    if saved_class is not None and saved_class != here:
        raise ValueError(
            f"{ckpt_path}: it was trained with {saved_class} and this run configures {here}; "
            f"resume with --model.optimizer {saved_class} (its state cannot drive {here})."
        )
    groups = saved.get("param_groups") or []
    sizes = [len(g.get("params", ())) for g in groups]
    wanted = [len(g["params"]) for g in optimizer.param_groups]
    if sizes != wanted:
        raise ValueError(
            f"{ckpt_path}: its optimizer has parameter groups of {sizes} tensors and this run's "
            f"of {wanted} (backbone_lr_mult, frozen stages or the model changed); resume with "
            "the options the run was trained with."
        )


def apply_settings(
    optimizer: Optimizer,
    scheduler: Any,
    groups: list[dict[str, Any]],
    schedule: dict[str, Any] | None,
) -> list[str]:
    """Put this run's configured settings over the ones a checkpoint restored.

    Resuming keeps the optimizer's state (momentum buffers) and the step count, but the LR, weight
    decay, momentum and the schedule (its length from ``max_epochs`` and the batch size, warm-up,
    kind) are the ones this run configures, as a config-driven trainer (PySlowFast) computes them.
    Lightning restores them all from the checkpoint, so a longer ``max_epochs`` trained at the old
    schedule's final LR (0 for cosine) and a new ``lr`` was ignored.

    Args:
        optimizer: the restored optimizer.
        scheduler: its restored scheduler (``LambdaLR`` over a :class:`WarmupSchedule`, or any).
        groups: :func:`group_settings` of the optimizer as configured.
        schedule: the configured :class:`WarmupSchedule`'s fields (None: an injected scheduler).

    Returns:
        What changed, e.g. ``["lr 0.003 -> 0.03", "schedule total_steps 12 -> 18"]``.
    """
    changed: dict[str, str] = {}  # one entry per setting, from its first group that changed

    def note(name: str, old: Any, new: Any) -> None:
        changed.setdefault(name, f"{name} {old} -> {new}")

    ours = isinstance(scheduler, LambdaLR) and all(
        isinstance(f, WarmupSchedule) for f in scheduler.lr_lambdas
    )
    # An injected scheduler may cycle momentum / betas (OneCycleLR, CyclicLR): its values stand.
    managed = {"lr"} if ours or scheduler is None else {"lr", "momentum", "betas"}
    for i, (group, wanted) in enumerate(zip(optimizer.param_groups, groups, strict=True)):
        for key, value in wanted.items():
            if key in managed:
                continue
            if group.get(key) != value:
                note(key, group.get(key), value)
                group[key] = value
        base = group.get("initial_lr", group["lr"])
        if base != wanted["lr"] and (ours or scheduler is None):
            note("lr", base, wanted["lr"])
            group["initial_lr"] = wanted["lr"]
            if ours:
                scheduler.base_lrs[i] = wanted["lr"]
            else:
                group["lr"] = wanted["lr"]
        elif base != wanted["lr"]:
            kept = f"lr stays {base} (an injected scheduler's, not {wanted['lr']})"
            changed.setdefault("lr", kept)
    if ours and schedule is not None:
        for fn in scheduler.lr_lambdas:
            for key, value in schedule.items():
                if getattr(fn, key) != value:
                    note(f"schedule {key}", getattr(fn, key), value)
                    setattr(fn, key, value)
        step = scheduler.last_epoch
        lrs = [b * fn(step) for b, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)]
        for group, lr in zip(optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        scheduler._last_lr = lrs
    return list(changed.values())
