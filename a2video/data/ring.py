"""Train batches written by the DataLoader workers straight into page-locked shared memory.

With ``pin_memory``, a DataLoader worker stacks each batch into a fresh shared-memory segment,
the training process maps it and its pin-memory thread copies it into page-locked memory, and
only then can the GPU copy it: for a batch of 32 uint8 8×224² clips that is 38.5 MB mapped,
faulted in and copied once more per batch on one thread of the training process (30 ms on one
core of a 2-core Xeon, ``benchmarks/bench_handover.py``), beside the Python thread that launches
the training step.

A :class:`BatchRing` holds ``slots`` batch-sized buffers of shared memory, made once in the
training process and page-locked there (``cudaHostRegister``, as
``torch.distributed.checkpoint`` stages shared state dicts). The workers write the clips of a
batch into the slot the training process gave it; the training process hands on a view of the
slot, and the GPU reads it by DMA. Nothing is copied on the host.

Slot reuse: batch ``k`` of the ring's life gets slot ``k % slots``, when the DataLoader sends it
to a worker (:meth:`BatchRing.acquire`, in the training process). A DataLoader keeps at most
``prefetch_factor * num_workers`` batches sent and not handed out, and Lightning fetches one
batch ahead of the step it runs, so with ``slots = prefetch_factor * num_workers + SPARE_SLOTS``
the batch that used the slot before was handed out ``SPARE_SLOTS`` batches earlier and copied to
the device since; :meth:`acquire` waits for that copy (:meth:`released` recorded its event), a
wait that is over long before (the copy ran ahead of two training steps).
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from .transforms import stack_clips

SHARED_MEMORY = "/dev/shm"  # where torch's shared memory lives on Linux
SPARE_SLOTS = 3  # slots beyond the batches a DataLoader holds in flight (see the module doc)
KEY = "ring"  # a packed batch: (slot, shape, stride, small fields as lists) instead of tensors
SLOT_KEY = "ring_slot"  # the handed-out batch's slot, until its copy to the device is launched


class SlotKeys(list):
    """One batch's keys and the ring slot its clips go to (crosses to the worker pickled)."""

    def __init__(self, keys: Sequence, slot: int) -> None:
        super().__init__(keys)
        self.slot = slot

    def __reduce__(self):
        return (SlotKeys, (list(self), self.slot))


class SlotSamples(list):
    """A batch's samples in a worker, with the slot its collate writes the clips into."""

    def __init__(self, samples: Sequence, slot: int) -> None:
        super().__init__(samples)
        self.slot = slot


class BatchRing:
    """``slots`` buffers of ``slot_bytes`` in shared memory, page-locked where CUDA runs.

    Args:
        slots: buffers; at least the DataLoader's ``prefetch_factor * num_workers`` plus
            :data:`SPARE_SLOTS` (:func:`slots_for`).
        slot_bytes: bytes of one batch's clips (uint8: clips · 3 · T · S · S).
        pin: page-lock the memory for asynchronous copies to the GPU (needs CUDA).

    Raises:
        RuntimeError: ``pin`` and the driver refused to page-lock the memory, or
            :data:`SHARED_MEMORY` has too little room for the ring (a container's default 64 MB:
            page-locking would touch every page and end the process with a bus error).
    """

    def __init__(self, slots: int, slot_bytes: int, pin: bool = False) -> None:
        if slots < 1 or slot_bytes < 1:
            raise ValueError(f"need slots >= 1 and slot_bytes >= 1, got {slots}, {slot_bytes}")
        need, free = slots * slot_bytes, shared_memory_free()
        if free is not None and free < need * 5 // 4:  # and room for the other loaders' batches
            raise RuntimeError(
                f"{SHARED_MEMORY} has {free / 2**20:.1f} MiB free and the ring needs "
                f"{need / 2**20:.1f} MiB (a container gets more with --shm-size)"
            )
        self.slots, self.slot_bytes = slots, slot_bytes
        # made in shared memory (not made, then moved there: that would copy it once more)
        storage = torch.UntypedStorage._new_shared(need)
        self.memory = torch.empty(0, dtype=torch.uint8).set_(storage)
        self.pinned = False
        if pin:
            _register(self.memory)
            self.pinned = True
            weakref.finalize(self.memory, _unregister, self.memory.data_ptr(), os.getpid())
        self._next = 0  # the ring's batches so far: the next one gets slot _next % slots
        self._copies: list[torch.cuda.Event | None] = [None] * slots
        self.last_iterator: weakref.ref | None = None  # the DataLoader iterator writing into it

    @classmethod
    def for_loader(
        cls,
        clips: int,
        frames: int,
        crop_size: int,
        num_workers: int,
        prefetch_factor: int | None = None,
        pin: bool = False,
    ) -> BatchRing:
        """The ring of a DataLoader with these workers whose batches hold ``clips`` uint8
        clips of ``frames`` × ``crop_size``² (:func:`slots_for` slots of a batch each)."""
        slot_bytes = clips * 3 * frames * crop_size * crop_size
        return cls(slots_for(num_workers, prefetch_factor), slot_bytes, pin=pin)

    def __getstate__(self) -> dict[str, Any]:
        # a worker needs the memory (shared: a fork inherits it, spawn passes its descriptor)
        return {"slots": self.slots, "slot_bytes": self.slot_bytes, "memory": self.memory}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, pinned=False, _next=0, _copies=[None] * state["slots"])
        self.last_iterator = None

    # ------------------------------------------------------------------ training process
    def acquire(self) -> int:
        """The slot of the next batch sent to a worker, once its last batch's copy is done."""
        slot = self._next % self.slots
        self._next += 1
        copy, self._copies[slot] = self._copies[slot], None
        if copy is not None:
            copy.synchronize()
        return slot

    def take(self, batch: dict) -> dict:
        """A worker's :meth:`pack`-ed batch as the copy path gives it: ``video`` the view of its
        slot, the small fields tensors again (and ``ring_slot`` set, for :meth:`released`)."""
        if isinstance(batch, dict) and KEY in batch:
            slot, shape, stride, small = batch.pop(KEY)
            for key, (values, dtype) in small.items():
                batch[key] = torch.tensor(values, dtype=getattr(torch, dtype))
            batch["video"] = torch.as_strided(self.memory, shape, stride, slot * self.slot_bytes)
            batch[SLOT_KEY] = slot
        return batch

    def released(self, batch: dict) -> dict:
        """After the batch's copy to the device is launched: the slot is free once it is done.

        Pops ``ring_slot``; records the copy's event on the current CUDA stream when the batch
        went to a GPU (on the CPU the view itself is the batch, used before the slot comes round).
        """
        slot = batch.pop(SLOT_KEY, None) if isinstance(batch, dict) else None
        video = batch.get("video") if slot is not None else None
        if slot is not None and torch.is_tensor(video) and video.is_cuda:
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(video.device))
            self._copies[slot] = event
        return batch

    def wait(self) -> None:
        """Wait for every launched copy out of the ring (before its memory is given back)."""
        for slot, copy in enumerate(self._copies):
            if copy is not None:
                copy.synchronize()
                self._copies[slot] = None

    # ------------------------------------------------------------------ worker
    def pack(self, batch: dict, slot: int, clips: Sequence[torch.Tensor]) -> dict:
        """A worker's batch with its ``clips`` written into ``slot`` (:meth:`write`).

        Its small tensors (labels, indices, flags) travel as lists: a tensor sent to the
        training process is moved to a shared-memory segment of its own, whose descriptor
        passing and mapping cost the training process about 0.5 ms each.
        """
        small = {
            key: (value.tolist(), str(value.dtype).removeprefix("torch."))
            for key, value in batch.items()
            if torch.is_tensor(value)
        }
        out = {key: value for key, value in batch.items() if key not in small}
        out[KEY] = (*self.write(slot, clips), small)
        return out

    def write(self, slot: int, clips: Sequence[torch.Tensor]) -> tuple[int, tuple, tuple]:
        """Stack ``clips`` (each (3, T, S, S), uint8) into ``slot`` in the first clip's memory
        order; returns ``(slot, shape, stride)``, what :meth:`take` makes the view from."""
        numel = len(clips) * clips[0].numel()
        if clips[0].dtype != torch.uint8 or numel > self.slot_bytes:
            raise ValueError(
                f"a batch of {len(clips)} {clips[0].dtype} clips of {tuple(clips[0].shape)} does "
                f"not fit a ring slot of {self.slot_bytes} bytes of uint8"
            )
        start = slot * self.slot_bytes
        out = stack_clips(clips, into=self.memory[start : start + numel])
        return slot, tuple(out.shape), tuple(out.stride())


class RingBatches:
    """The batch sampler the DataLoader sends: ``batches``' key lists, each with its ring slot
    (:meth:`BatchRing.acquire`, called as the DataLoader sends the batch to a worker)."""

    def __init__(self, batches: Any, ring: BatchRing) -> None:
        self.batches, self.ring = batches, ring

    def __iter__(self):
        for keys in self.batches:
            yield SlotKeys(keys, self.ring.acquire())

    def __len__(self) -> int:
        return len(self.batches)


def shared_memory_free() -> int | None:
    """Bytes free in :data:`SHARED_MEMORY`, or None where there is no such folder."""
    try:
        stat = os.statvfs(SHARED_MEMORY)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def slots_for(num_workers: int, prefetch_factor: int | None) -> int:
    """Slots a DataLoader with these settings needs (see the module doc)."""
    return max(1, num_workers) * (prefetch_factor or 2) + SPARE_SLOTS


def _register(memory: torch.Tensor) -> None:
    """Page-lock ``memory`` for the GPU (``cudaHostRegisterPortable``) or raise RuntimeError."""
    error = int(torch.cuda.cudart().cudaHostRegister(memory.data_ptr(), memory.numel(), 1))
    if error != 0 or not memory.is_pinned():
        raise RuntimeError(f"cudaHostRegister of {memory.numel()} bytes failed (error {error})")


def _unregister(data_ptr: int, pid: int) -> None:
    """Unpin in the process that pinned (a forked worker inherits the finalizer, not the pin)."""
    if os.getpid() != pid:
        return
    with contextlib.suppress(Exception):  # at interpreter exit the memory goes anyway
        torch.cuda.cudart().cudaHostUnregister(data_ptr)


class RingDataLoader(DataLoader):
    """A DataLoader whose workers write into ``ring`` where one is set (else a plain one).

    Its ``__iter__`` is a generator: the DataLoader's iterator (workers started, sampler read)
    is made at the first batch, and each batch comes out as :meth:`take` makes it.
    """

    ring: BatchRing | None = None

    def __iter__(self):
        for batch in super().__iter__():
            yield self.take(batch)

    def take(self, batch):
        """A worker's batch as handed on: its clips viewed in the ring where they were written."""
        return batch if self.ring is None else self.ring.take(batch)

    @property
    def _index_sampler(self):
        batches = super()._index_sampler
        if self.ring is None or not self._auto_collation:
            return batches
        return RingBatches(batches, self.ring)  # each batch sent with its ring slot

    def _get_iterator(self):
        ring = self.ring
        if ring is not None:
            # A non-persistent iterator left unfinished (max_steps, a stop mid-epoch), of this
            # loader or of one it replaced (reload_dataloaders_every_n_epochs), may still have
            # workers writing into the slots the next one reuses: stop them first.
            previous = ring.last_iterator() if ring.last_iterator is not None else None
            if previous is not None and hasattr(previous, "_shutdown_workers"):
                previous._shutdown_workers()
        iterator = super()._get_iterator()
        if ring is not None:
            ring.last_iterator = weakref.ref(iterator)
        return iterator
