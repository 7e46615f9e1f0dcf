"""Run CPU-bound work on all cores with per-item error isolation.

One failing item is returned as its exception, never aborting the others (the legacy tool lost
every running task when one failed). With one job everything runs in-process.

Inside `executor(settings)` with a Dask scheduler set (--scheduler, DASK_SCHEDULER_ADDRESS), every
item runs as a Dask task instead (`bhds.cluster`), with the same isolation and bounded in-flight work;
without one the pool below runs exactly as before.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from bhds.cluster import DaskExecutor
    from bhds.objstore.lazy import LazyContext
    from bhds.settings import Settings
    from bhds.types import RunSummary

T = TypeVar("T")
R = TypeVar("R")

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def init_worker(placeholders: LazyContext | None = None) -> None:
    """Set up a worker process: thread limits, and the command's placeholder index (`objstore.lazy`)."""
    if placeholders is not None:
        from bhds.objstore import lazy

        lazy.activate(placeholders)
    # One process per core already: extra library threads would only fight over the cores.
    for name in _THREAD_VARIABLES:
        os.environ[name] = "1"
    try:
        import pyarrow

        pyarrow.set_cpu_count(1)
        pyarrow.set_io_thread_count(1)
    except ImportError:  # pragma: no cover
        pass


_dask: DaskExecutor | None = None  # the running command's Dask connection, if it asked for one


@contextmanager
def executor(settings: Settings) -> Iterator[None]:
    """Run the enclosed command's per-item work on `settings.scheduler` (Dask) if set, else on the pool.

    The Dask connection (or `local:N` cluster) opens at the first item and closes on the way out.
    """
    global _dask
    if settings.scheduler is None:
        yield
        return
    from bhds.cluster import DaskExecutor

    _dask = DaskExecutor(settings.scheduler, settings.data_dir)
    try:
        yield
    finally:
        dask, _dask = _dask, None
        dask.close()


def on_dask() -> bool:
    """Whether the running command sends its per-item work to a Dask scheduler."""
    return _dask is not None


def dask_slots() -> int:
    """Worker threads of the running command's Dask cluster (1 without one): how wide to cut work."""
    return _dask.slots() if _dask is not None else 1


def imap_isolated(func: Callable[[T], R], items: Iterable[T], n_jobs: int, *, max_pending: int | None = None) -> Iterator[tuple[T, R | BaseException]]:
    """Yield `(item, result_or_exception)` as items finish, on up to `n_jobs` processes.

    At most `max_pending` items are in flight (default 2 × n_jobs), which bounds memory. Under a
    Dask scheduler every item is a task, whatever `n_jobs`: the cluster, not this machine, sizes the work.
    """
    if _dask is not None:
        yield from _dask.imap(func, items, max_pending=max_pending)
        return
    items = list(items)
    if n_jobs <= 1 or len(items) <= 1:
        for item in items:
            try:
                yield item, func(item)
            except Exception as exc:  # noqa: BLE001 - isolation is the point
                yield item, exc
        return
    # forkserver: workers start from a clean process, not a fork of one with live threads.
    context = multiprocessing.get_context("forkserver")
    limit = max_pending or 2 * n_jobs
    from bhds.objstore.lazy import current

    with ProcessPoolExecutor(max_workers=min(n_jobs, len(items)), mp_context=context, initializer=init_worker,
                             initargs=(current(),)) as pool:
        pending: dict[Future, T] = {}
        queue = iter(items)
        for item in queue:
            pending[pool.submit(func, item)] = item
            if len(pending) >= limit:
                break
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                item = pending.pop(future)
                exc = future.exception()
                yield item, (exc if exc is not None else future.result())
                nxt = next(queue, None)
                if nxt is not None:
                    pending[pool.submit(func, nxt)] = nxt


def write_outputs(func: Callable[[T], tuple[int, int]], tasks: list[T], n_jobs: int, summary: RunSummary, *,
                  target: Callable[[T], str], kept: str) -> None:
    """Run tasks that each write one output file and return `(rows, bytes)`, adding them to `summary`.

    A task that fails is one failure naming its output and what was `kept` in its place.
    """
    for task, outcome in imap_isolated(func, tasks, n_jobs):
        if isinstance(outcome, BaseException):
            summary.fail(f"{target(task)}: {outcome}; {kept}")
            continue
        rows, size = outcome
        summary.files += 1
        summary.rows += rows
        summary.bytes += size
