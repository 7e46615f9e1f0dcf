"""Per-item work as Dask tasks: the executor `bhds.parallel` uses when a scheduler is set.

The client only plans and collects: a task gets one item (paths and parameters), reads and writes
the store itself and returns the small summary the local pool would return. Tasks already write
through temp file + rename, so Dask re-running one whose worker died converges to the same bytes.
Dask is imported here only, and only once a command asks for a scheduler (`pip install 'bhds[dask]'`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bhds import paths, storage
from bhds.errors import ConfigError, DataError
from bhds.objstore import detached

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

    from bhds.objstore.detached import Snapshot
    from bhds.objstore.lazy import LazyContext
    from bhds.settings import StoreAccess

T = TypeVar("T")
R = TypeVar("R")

LOCAL_PREFIX = "local:"
CONNECT_TIMEOUT = "20s"  # how long to wait for a remote scheduler before giving up with one line
INSTALL_HINT = "pip install 'bhds[dask]'"

# The workers of a `local:N` cluster run like the pool's. Dask's nanny sets MALLOC_TRIM_THRESHOLD_
# in its workers, which turns off glibc's adaptive mmap threshold: every large pandas/pyarrow buffer
# is then mmapped and unmapped afresh, +30-40 % CPU (bench/dask_overhead.py). Its statistical
# profiler only feeds the dashboard, which a `local:N` cluster does not serve.
LOCAL_WORKER_CONFIG = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.worker.profile.enabled": False,
}

log = logging.getLogger("bhds")

_worker_ready = False  # per worker process: thread limits applied once


def require_dask(scheduler: str) -> None:
    """Fail at once, in one line, when a scheduler is asked for and Dask is not installed."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ConfigError(f"--scheduler/DASK_SCHEDULER_ADDRESS {scheduler} needs Dask, which is not installed: "
                          f"{INSTALL_HINT}") from None


def _holds_token(probe: str, token: str) -> bool:
    """On a worker: whether it sees the client's probe file (so the same data folder)."""
    try:
        return storage.read_bytes(Path(probe)) == token.encode()
    except OSError:
        return False


def _on_worker(func: Callable[[T], R], item: T, placeholders: LazyContext | None = None, snapshot: Snapshot | None = None) -> R:
    """Run one item on a Dask worker, with the pool's thread limits (one task per worker thread) and
    the client's placeholder index (`objstore.lazy`: a worker reading a placeholder fetches it).
    With a `snapshot`, a worker that does not see the client's folder works in its own copy."""
    global _worker_ready
    from bhds.objstore import lazy

    if not _worker_ready:
        from bhds.parallel import init_worker

        init_worker()
        _worker_ready = True
    if snapshot is not None:
        return detached.run_task(func, item, snapshot)
    with lazy.active_in_task(placeholders):
        return func(item)


class DaskExecutor:
    """A connection to a Dask scheduler, opened on first use and closed with the command.

    `local:N` starts a LocalCluster of N worker processes of one thread each (the pool's shape)
    and closes it afterwards; any other value is the address of a running scheduler.
    """

    def __init__(self, scheduler: str, data_dir: Path | None = None) -> None:
        require_dask(scheduler)
        self.scheduler = scheduler
        self.data_dir = data_dir  # the folder tasks read and write: every worker must see it
        self._client: Client | None = None
        self._cluster: LocalCluster | None = None
        self.detached = False  # some workers do not see `data_dir`: tasks carry a snapshot (`objstore.detached`)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = self._connect()
            if self.data_dir is not None:
                try:
                    self._check_workers_see(self.data_dir)
                except BaseException:
                    self.close()
                    raise
        return self._client

    def _check_workers_see(self, data_dir: Path) -> None:
        """Fail in one line unless every worker sees `data_dir` (the working copy, for a bucket root).

        Tasks write their outputs there and the client publishes (or the user reads) that folder: a
        worker on a machine where it is another folder would report success for files nobody sees.
        """
        token = secrets.token_hex(8)
        probe = paths.worker_probe(data_dir, token)
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            storage.write_bytes(token.encode(), probe)
        except (OSError, DataError) as exc:  # a read-only root: nothing to compare with, and read-only work is safe
            log.debug("not checking that the Dask workers see %s: %s", data_dir, exc)
            return
        try:
            seen = self._client.run(_holds_token, str(probe), token)
        finally:
            storage.remove(probe)
        blind = sorted(worker for worker, ok in seen.items() if not ok)
        if blind and detached.current() is not None:
            # A bucket root: those workers keep copies of their own and send outputs through the bucket.
            self.detached = True
            log.info("%d of the %d Dask worker(s) do not see the working copy %s: they work in copies of their own "
                     "at that path and upload their outputs to the bucket", len(blind), len(seen), data_dir)
        elif blind:
            raise ConfigError(f"{len(blind)} of the {len(seen)} Dask worker(s) ({blind[0]}, ...) do not see the data folder "
                              f"{data_dir} that tasks read and write: give the workers that folder at the same path "
                              "(a shared filesystem; for a bucket root set BHDS_WORK_DIR to it), or use --scheduler local:N")

    def _connect(self) -> Client:
        from distributed import Client, LocalCluster

        if self.scheduler.startswith(LOCAL_PREFIX):
            import dask

            workers = int(self.scheduler[len(LOCAL_PREFIX):])
            log.info("starting a local Dask cluster of %d worker process(es)", workers)
            try:
                with dask.config.set(LOCAL_WORKER_CONFIG):
                    self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                 dashboard_address=":0", silence_logs=logging.ERROR)
            except (OSError, RuntimeError) as exc:
                raise ConfigError(f"could not start a local Dask cluster of {workers} worker(s) ({exc}): "
                                  "run without --scheduler to use the process pool") from None
            return Client(self._cluster)
        try:
            client = Client(self.scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {self.scheduler} ({exc}): start it "
                              "(`dask scheduler`, then `dask worker ADDRESS` on each machine) or fix --scheduler "
                              "/ DASK_SCHEDULER_ADDRESS") from None
        log.info("running on the Dask scheduler at %s", self.scheduler)
        return client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def slots(self) -> int:
        """Worker threads the scheduler has now (at least 1)."""
        return max(1, sum(self.client.nthreads().values()))

    def imap(self, func: Callable[[T], R], items: Iterable[T], *, max_pending: int | None = None
             ) -> Iterator[tuple[T, R | BaseException]]:
        """Yield `(item, result_or_exception)` as tasks finish, at most `max_pending` in flight.

        A task that raises is that item's exception; a task whose workers kept dying is Dask's
        KilledWorker (Dask re-runs it on another worker first, `distributed.scheduler.allowed-failures`).
        """
        from distributed import as_completed

        from bhds.objstore.lazy import LazyContext, current

        client = self.client
        # Without the store's keys: tasks cross the scheduler; workers take theirs from their own
        # environment (the AWS variables, a profile, an instance role), as any S3 client does.
        placeholders = current()
        if placeholders is not None:
            placeholders = LazyContext(placeholders.index, placeholders.url, _public(placeholders.access))
        session = detached.current() if self.detached else None
        # One snapshot per round of tasks (its listing in the bucket, read by each machine once).
        snapshot = detached.snapshot(session, _public(session.access)) if session is not None else None
        limit = max_pending or 2 * self.slots()
        queue = iter(items)
        pending: dict[Any, T] = {}
        finished = as_completed()

        def submit(item: T) -> None:
            # pure=False: the same item in another run is new work, never a cached result.
            future = client.submit(_on_worker, func, item, placeholders, snapshot, pure=False)
            pending[future] = item
            finished.add(future)

        for item in queue:
            submit(item)
            if len(pending) >= limit:
                break
        try:
            for future in finished:
                item = pending.pop(future)
                if future.status == "finished":
                    outcome: R | BaseException = future.result()
                    if isinstance(outcome, detached.Outputs):
                        assert session is not None
                        try:
                            outcome = detached.apply(session, outcome)
                        except Exception as exc:  # noqa: BLE001 - that item's failure, like the task's own
                            outcome = exc
                elif future.status == "cancelled":
                    outcome = RuntimeError("the Dask scheduler cancelled this task (was the cluster shut down?)")
                else:
                    outcome = _one_line(future.exception())
                future.release()
                yield item, outcome
                nxt = next(queue, _END)
                if nxt is not _END:
                    submit(nxt)
        finally:
            # Stopped early (error, Ctrl-C): nothing the client no longer waits for keeps running.
            if pending:
                client.cancel(list(pending))


def _public(access: StoreAccess | None) -> StoreAccess | None:
    return None if access is None else access.without_secrets()


_END: Any = object()


class TaskError(Exception):
    """A task's error whose message spanned lines (Dask's own are paragraphs), told on one line."""


def _one_line(exc: BaseException) -> BaseException:
    message = str(exc)
    if "\n" not in message:
        return exc
    folded = TaskError(f"{type(exc).__name__}: {' '.join(message.split())}")
    folded.__cause__ = exc
    return folded
