"""Training batches from two decoders at once: CPU DataLoader workers and NVDEC threads.

With ``decoder: nvdec`` and ``num_workers > 0`` the DataModules' train loader is a
:class:`MixedLoader`. Each epoch it reads the rank's keys from the sampler once (after
Lightning's ``set_epoch`` and a resume's :meth:`ShardedSampler.skip`), cuts them into batches as
a DataLoader would, and sends batch ``j`` of the epoch to NVDEC when :func:`nvdec_batches` says
so (a Bresenham spread of ``share``: every ``1/share``-th batch), to the CPU workers otherwise:

- CPU batches: a DataLoader over the CPU-decoder dataset, ``num_workers`` processes, fed the
  CPU batches' key lists through :class:`KeyBatches` (its batch sampler);
- NVDEC batches: ``threads`` background threads of the training process, each with its own
  NVDEC session (a copy of the NVDEC dataset), decoding whole batches round-robin (thread
  ``t`` makes NVDEC batches ``t, t + threads, ...``) up to :data:`NVDEC_PREFETCH` batches ahead
  into a bounded queue, on their own CUDA stream, so decoding overlaps the training step.

Batches come out in the epoch's order with the same keys, hence the same videos, augmentation
(a pure function of ``(seed, epoch, index)``) and bad-video replacement as the single-source
loader; only the decoder of a batch differs, and it is a fixed function of ``j``, so a resumed
run decodes each batch where an uninterrupted run would. An exception in a thread is raised in
the training process at that thread's next batch, after the other threads are stopped; the
threads are stopped and joined at the end of every epoch, on an exception, and by
:meth:`MixedLoader.close` (the DataModule's ``teardown``).

Imports only torch (no numpy), so ``benchmarks/bench_nvdec.py`` can drive it on a GPU host.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from fractions import Fraction
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

log = logging.getLogger(__name__)

NVDEC_PREFETCH = 2  # batches each NVDEC thread decodes ahead of the training loop
THREAD_NAME = "a2video-nvdec"  # prefix of the decoding threads' names
_JOIN_TIMEOUT_S = 30.0  # a thread finishes the sample it is decoding, then stops
_POLL_S = 0.1


def nvdec_batches(share: float, first: int, count: int) -> list[bool]:
    """Whether NVDEC decodes each of batches ``first .. first + count - 1`` of an epoch.

    Batch ``j`` goes to NVDEC when ``floor((j + 1) * share)`` exceeds ``floor(j * share)``
    (Bresenham), so any ``n`` consecutive batches hold ``share * n`` NVDEC batches, rounded
    either way, and the choice depends on ``j`` alone. ``share`` is taken as a fraction with a
    denominator of at most 1000, so no float rounding moves a batch.
    """
    frac = Fraction(share).limit_denominator(1000)
    p, q = frac.numerator, frac.denominator
    return [((j + 1) * p) // q > (j * p) // q for j in range(first, first + count)]


class KeyBatches(Sampler):
    """Batch sampler of the CPU share: the key lists :class:`MixedLoader` puts in ``batches``.

    Read in the main process when the CPU loader's iterator starts, so persistent workers see
    each epoch's new lists.
    """

    def __init__(self) -> None:
        self.batches: list[list] = []

    def __iter__(self) -> Iterator[list]:
        return iter(list(self.batches))

    def __len__(self) -> int:
        return len(self.batches)


class _Failure:
    """An exception raised in a decoding thread, on its way to the training process."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class NvdecPrefetcher:
    """``len(datasets)`` threads decoding ``batches`` round-robin into bounded queues.

    Args:
        datasets: one dataset per thread (each opens its own NVDEC session), indexed by key.
        batches: the key lists of the NVDEC batches, in the order :meth:`get` returns them.
        collate_fn: samples -> batch (the CPU loader's, so both give the same format).
        device: CUDA device index the threads decode on (the training process's), or None.
        depth: batches each thread may hold ready.
    """

    def __init__(
        self,
        datasets: Sequence[Any],
        batches: list[list],
        collate_fn: Callable[[list], Any],
        device: int | None = None,
        depth: int = NVDEC_PREFETCH,
    ) -> None:
        self._batches, self._collate, self._device = batches, collate_fn, device
        n = len(datasets)
        self._queues: list[queue.Queue] = [queue.Queue(maxsize=depth) for _ in range(n)]
        self._stop = threading.Event()
        self._next = 0
        self._threads = [
            threading.Thread(
                target=self._work, args=(t, datasets[t]), name=f"{THREAD_NAME}-{t}", daemon=True
            )
            for t in range(n)
        ]
        for thread in self._threads:
            thread.start()

    # ------------------------------------------------------------------ thread side
    def _work(self, t: int, dataset: Any) -> None:
        try:
            stream = None
            if self._device is not None:
                torch.cuda.set_device(self._device)  # a new thread starts on device 0
                stream = torch.cuda.Stream(self._device)
            with torch.cuda.stream(stream) if stream is not None else nullcontext():
                for i in range(t, len(self._batches), len(self._threads)):
                    samples = []
                    for key in self._batches[i]:
                        if self._stop.is_set():
                            return
                        samples.append(dataset[key])
                        if stream is not None:  # the decoder's frame buffer is reused next
                            stream.synchronize()
                    batch = self._collate(samples)
                    if stream is not None:
                        stream.synchronize()  # ready before the training stream reads it
                    if not self._put(t, batch):
                        return
        except BaseException as err:  # re-raised in the training process by get()
            self._put(t, _Failure(err))

    def _put(self, t: int, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queues[t].put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    # ------------------------------------------------------------------ training side
    def get(self) -> Any:
        """The next NVDEC batch in order; raises a thread's exception, in this thread."""
        t = self._next % len(self._threads)
        self._next += 1
        while True:
            try:
                item = self._queues[t].get(timeout=_POLL_S)
                break
            except queue.Empty:
                if not self._threads[t].is_alive() and self._queues[t].empty():
                    self.close()
                    raise RuntimeError(
                        f"NVDEC decoding thread {self._threads[t].name} ended without its batch "
                        f"{self._next - 1}"
                    ) from None
        if isinstance(item, _Failure):
            self.close()
            raise item.error
        if self._device is not None:  # made on the threads' stream, used on this one
            for value in item.values() if isinstance(item, dict) else ():
                if torch.is_tensor(value) and value.is_cuda:
                    value.record_stream(torch.cuda.current_stream(value.device))
        return item

    def close(self) -> None:
        """Stop the threads (each finishes its current sample) and join them."""
        self._stop.set()
        for q in self._queues:  # free the GPU batches they hold
            while True:
                try:
                    q.get_nowait()
                except queue.Empty:
                    break
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join(_JOIN_TIMEOUT_S)
                if thread.is_alive():
                    log.warning("%s did not stop within %.0f s", thread.name, _JOIN_TIMEOUT_S)


class MixedLoader:
    """The train loader of ``decoder: nvdec`` with ``num_workers > 0``: CPU workers + NVDEC threads.

    Looks like the single-source DataLoader to Lightning and to
    :class:`a2video.training.resume.ResumeState`: ``sampler`` (``set_epoch``, ``skip``),
    ``batch_size`` (videos per batch), ``dataset`` and ``len``.

    Args:
        sampler: the rank's keys of an epoch (:class:`ShardedSampler`), read once per epoch.
        batch_size: samples (videos) per batch, as the single-source loader's.
        cpu_loader: DataLoader over the CPU-decoder dataset whose ``batch_sampler`` is a
            :class:`KeyBatches`; its ``collate_fn`` also collates the NVDEC batches.
        nvdec_dataset: the same dataset with the NVDEC decoder (copied per thread and epoch).
        share: fraction of the batches NVDEC decodes (:func:`nvdec_batches`).
        threads: NVDEC decoding threads.
    """

    def __init__(
        self,
        sampler: Sampler,
        batch_size: int,
        cpu_loader: DataLoader,
        nvdec_dataset: Any,
        share: float,
        threads: int,
    ) -> None:
        if not isinstance(cpu_loader.batch_sampler, KeyBatches):
            raise TypeError("MixedLoader's cpu_loader needs batch_sampler=KeyBatches()")
        if not 0.0 <= share <= 1.0 or threads < 1:
            raise ValueError(f"need 0 <= share <= 1 and threads >= 1, got {share}, {threads}")
        self.sampler, self.batch_size, self.cpu_loader = sampler, batch_size, cpu_loader
        self.dataset = cpu_loader.dataset
        self.collate_fn = cpu_loader.collate_fn
        self.share, self.threads = share, threads
        self.nvdec_dataset = nvdec_dataset
        self._live: weakref.WeakSet[NvdecPrefetcher] = weakref.WeakSet()

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def __iter__(self) -> Iterator:
        # A generator: nothing is read or started until the first batch is asked for, i.e. after
        # Lightning's set_epoch and ResumeState's sampler.skip (both come after iter()).
        return self._epoch()

    def _epoch(self) -> Iterator:
        self.close()  # the threads of an earlier epoch left unfinished
        keys = list(self.sampler)
        b = self.batch_size
        done = max(0, len(self.sampler) - len(keys)) // b  # batches consumed before a resume
        batches = [keys[i : i + b] for i in range(0, len(keys), b)]
        on_nvdec = nvdec_batches(self.share, done, len(batches))
        cpu = [batch for batch, nv in zip(batches, on_nvdec, strict=True) if not nv]
        nvdec = [batch for batch, nv in zip(batches, on_nvdec, strict=True) if nv]
        self.cpu_loader.batch_sampler.batches = cpu
        # The workers fork now, before the NVDEC threads start: a fork while a thread holds a lock
        # (the import lock, a decoder's) leaves the worker waiting on it forever. DataLoader's own
        # __iter__, since the DataModule's loaders defer theirs to the first batch.
        cpu_batches = DataLoader.__iter__(self.cpu_loader) if cpu else None
        prefetcher = None
        try:
            if nvdec:
                device = torch.cuda.current_device() if torch.cuda.is_available() else None
                # one copy, so one NVDEC session, per thread and epoch (sessions stay in a thread)
                copies = [
                    _fresh_copy(self.nvdec_dataset) for _ in range(min(self.threads, len(nvdec)))
                ]
                prefetcher = NvdecPrefetcher(copies, nvdec, self.collate_fn, device)
                self._live.add(prefetcher)
            take = getattr(self.cpu_loader, "take", None) or (lambda batch: batch)
            for nv in on_nvdec:  # a CPU batch written into a ring is viewed there
                yield prefetcher.get() if nv else take(next(cpu_batches))
        finally:
            if prefetcher is not None:
                prefetcher.close()
            del cpu_batches  # a non-persistent iterator's workers stop with it

    def close(self) -> None:
        """Stop and join the decoding threads of any epoch still being iterated."""
        for prefetcher in list(self._live):
            prefetcher.close()
            self._live.discard(prefetcher)


def _fresh_copy(dataset: Any) -> Any:
    """A shallow copy without the decoder instance (each copy opens its own on first use)."""
    out = copy.copy(dataset)
    if hasattr(out, "_decoder"):
        out._decoder = None
    return out
