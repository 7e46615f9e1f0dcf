"""Parquet and file I/O that never leaves a half-written file, and the per-stage lock.

Every write goes to a temporary sibling and is renamed over the target with os.replace, which is
atomic on POSIX: a reader (or a run killed at any instant) sees the old file or the new one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bhds.errors import DataError, LockBusy
from bhds.paths import TEMP_MARKER, Layout, temp_path

PARQUET_COMPRESSION = "zstd"


def _disk_error(path: Path, exc: OSError) -> DataError:
    if exc.errno == errno.ENOSPC:
        return DataError(f"disk full while writing {path}: free some space and run the command again")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return DataError(f"cannot write {path} ({exc.strerror}): make the data directory writable or set CRYPTO_BASE_DIR")
    return DataError(f"cannot write {path}: {exc.strerror or exc}; check the disk and run the command again")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it over `path`, else delete it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _disk_error(path, exc) from exc
    tmp = temp_path(path, uuid.uuid4().hex[:8])
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise _disk_error(path, exc) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_table(table: pa.Table, path: Path) -> int:
    """Write `table` as Parquet atomically; return the file size."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=PARQUET_COMPRESSION)
        size = tmp.stat().st_size
    return size


def write_bytes(data: bytes, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def read_table(path: Path, schema: pa.Schema | None = None, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file, cast to `schema` (the contract's dtypes) when given.

    A file that cannot be read raises DataError naming it, so one bad partition is reported
    rather than crashing a whole run.
    """
    try:
        table = pq.read_table(path, columns=columns)
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read {path} ({exc}): delete the file and run the step that writes it again") from exc
    if schema is not None:
        wanted = pa.schema([schema.field(name) for name in (columns or schema.names)])
        try:
            table = table.select(wanted.names).cast(wanted)
        except (KeyError, pa.ArrowException) as exc:
            raise DataError(f"{path} does not have the expected columns ({exc}): delete it and run the step that writes it again") from exc
    return table


def sweep_temp_files(directory: Path) -> int:
    """Delete temporary files a killed run left under `directory`; return how many."""
    if not directory.exists():
        return 0
    removed = 0
    for leftover in directory.rglob(f"*{TEMP_MARKER}"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            removed += 1
    return removed


@contextlib.contextmanager
def stage_lock(layout: Layout, stage: str, timeout: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock for one stage of one data directory.

    A second bhds process wanting the same stage waits up to `timeout` seconds, then fails with a
    message naming the holder's PID. The lock is released by the kernel if the holder dies.
    """
    lock_path = layout.lock_file(stage)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+")
    except OSError as exc:
        raise _disk_error(lock_path, exc) from exc
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    raise LockBusy(
                        f"another bhds process (PID {holder}) is running the {stage} stage on {layout.root}: "
                        "wait for it to finish, or set BHDS_LOCK_TIMEOUT=<seconds> to wait for it"
                    ) from None
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()
