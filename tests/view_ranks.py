"""Per-view rows of a made-up multi-view test, evaluated on one or several gloo ranks.

Kept apart from the test module so that spawned ranks import only torch and the metrics.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from a2video.training.metrics import VideoAccumulator

N_VIDEOS, N_CLASSES, CLIPS, CROPS = 11, 7, 4, 3


def _view_probs(i: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(i)
    return (torch.randn(CLIPS * CROPS, N_CLASSES, generator=g) * 2).softmax(1)  # (V, C)


def _evaluate(indices: list[int]):
    acc = VideoAccumulator(N_CLASSES)
    for start in range(0, len(indices), 2):
        batch = indices[start : start + 2]
        vp = torch.stack([_view_probs(i) for i in batch])  # (B, V, C)
        index = torch.tensor(batch, dtype=torch.long)
        acc.update(index, index % N_CLASSES, vp.mean(1), vp[:, 4], index != 4)
        acc.update_views(index, vp, CROPS)
    return acc.compute()


def _worker(rank: int, world: int, port: int, out: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        padded = _evaluate(list(DistributedSampler(range(N_VIDEOS), world, rank, shuffle=False)))
        if rank == 0:
            torch.save(padded.__dict__, out)
    finally:
        dist.destroy_process_group()
