"""Work spread over processes that survives an item killing its process (`check-data`, `prepare`).

A crash in a decoding or encoding library, or the out-of-memory killer, ends a worker process.
``multiprocessing.Pool`` then lost that item and waited for its result for ever; a
``ProcessPoolExecutor`` reports it, but as a broken pool that fails every item it held.
:func:`map_surviving_crashes` runs the items those pools held again: the ones that were in a
process (the first ``workers + 1`` not finished, as the executor hands items on in order) each
alone, so the one that kills its process again is known, the rest in a new pool.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def _submit(pool: Any, fn: Callable, item: Any) -> Future:
    return pool.submit(fn, item)


def map_surviving_crashes(
    fn: Callable[[Item], Result],
    items: Sequence[Item],
    workers: int,
    on_crash: Callable[[Item], Result],
    pool: Callable[[int], Any] = lambda n: ProcessPoolExecutor(max_workers=n),
    submit: Callable[[Any, Callable, Item], Future] = _submit,
) -> Iterator[tuple[int, Result]]:
    """``(index, fn(item))`` for every item, in ``workers`` processes, as they finish; for an
    item whose run kills its process even alone, ``(index, on_crash(item))``.

    Args:
        pool: ``n`` -> a context manager giving an executor of ``n`` processes.
        submit: how an item is handed to that executor (e.g. with Ctrl-C ignored by the
            processes it starts).
    """
    todo = deque(range(len(items)))
    while todo:
        broken: list[int] = []
        with pool(workers) as executor:
            held: dict[Future, int] = {}
            while todo or held:
                while todo and len(held) < 2 * workers and not broken:
                    i = todo.popleft()
                    held[submit(executor, fn, items[i])] = i
                if not held:
                    break
                done, _ = wait(held, return_when=FIRST_COMPLETED)
                for future in done:
                    i = held.pop(future)
                    if isinstance(future.exception(), BrokenProcessPool):
                        broken.append(i)
                    else:
                        yield i, future.result()
                if broken:  # the pool is gone: what it still held failed with it
                    for future, i in held.items():
                        if future.done() and future.exception() is None:
                            yield i, future.result()
                        else:
                            broken.append(i)
                    break
        broken.sort()  # the order they were handed on in: the first were in a process
        for i in broken[: workers + 1]:
            with pool(1) as alone:
                try:
                    yield i, submit(alone, fn, items[i]).result()
                except BrokenProcessPool:
                    yield i, on_crash(items[i])
        todo.extendleft(reversed(broken[workers + 1 :]))
