"""What DataLoader worker processes do with a SIGTERM that the whole job received.

``scancel``, SLURM's time limit and pre-empting hosts signal every process of the job, the
loader workers too, from outside it. With PyTorch's own worker handler a worker died of that
signal, and the training process's DataLoader raised "DataLoader worker ... is killed by
signal" wherever it was, before :class:`~a2video.training.callbacks.SaveOnSigterm` could save,
sometimes inside the save. Here a worker leaves such a signal to the training process, which
saves and then shuts its workers down. A SIGTERM sent by the training process itself (the
DataLoader's or Python's shutdown of its workers) still ends the worker at once, as PyTorch's
handler does; a worker whose training process died exits too.

A Python signal handler cannot see who sent a signal, so SIGTERM is blocked in every thread
of the worker and one thread takes it with ``sigwaitinfo``, which names the sender. The
workers start with it blocked (:func:`sigterm_blocked` around their start: a thread inherits
its creator's mask, a forked or spawned worker its parent thread's), so the threads that
PyTorch and the imports make in a worker before ``worker_init_fn`` runs block it too (checked
for fork, spawn and forkserver). A thread that did not (a forkserver started earlier,
elsewhere) keeps PyTorch's handler: the old behaviour, never worse.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator

import torch

# Linux and the BSDs; not macOS or Windows, where PyTorch's handler stays
SUPPORTED = hasattr(signal, "sigwaitinfo") and hasattr(signal, "pthread_sigmask")


def worker_init(_: int) -> None:
    """The DataLoader's ``worker_init_fn``: one thread; SIGTERM left to the training process."""
    torch.set_num_threads(1)  # parallelism comes from the workers
    leave_sigterm_to_the_training_process()


@contextlib.contextmanager
def sigterm_blocked() -> Iterator[None]:
    """SIGTERM blocked in the calling thread while workers are started from it.

    A signal that comes meanwhile is not lost: it waits until the mask is restored, or another
    thread of the training process takes it.
    """
    if not SUPPORTED:
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def leave_sigterm_to_the_training_process() -> bool:
    """In a worker process: end on a SIGTERM from the training process, let others pass.

    Returns False, changing nothing, outside a ``multiprocessing`` child or where the platform
    has no ``sigwaitinfo``.
    """
    parent = multiprocessing.parent_process()  # the training process, under every start method
    if not SUPPORTED or parent is None or parent.pid is None:
        return False
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    waiter = threading.Thread(
        target=_take_sigterm, args=(parent,), name="a2video-sigterm", daemon=True
    )
    waiter.start()
    return True


def _take_sigterm(training: multiprocessing.process.BaseProcess) -> None:
    while True:
        sender = signal.sigwaitinfo({signal.SIGTERM}).si_pid
        if sender == training.pid or not training.is_alive():
            # as PyTorch's handler: exit 0, so the DataLoader does not report a killed worker
            os._exit(0)
