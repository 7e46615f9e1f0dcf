"""The per-stage locks of a data directory (flock on a lock file: released by the kernel if the holder dies)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from bhds.errors import LockBusy
from bhds.paths import Layout
from bhds.storage.files import _disk_error


@contextlib.contextmanager
def try_lock(lock_path: Path) -> Iterator[bool]:
    """Take the exclusive lock `lock_path` if it is free, without waiting; yield whether it was taken
    (False: another process is doing the same job right now). OSError when the lock file cannot be made."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


@contextlib.contextmanager
def stage_locks(layout: Layout, stages: Iterable[str], timeout: float = 0.0) -> Iterator[None]:
    """Hold the exclusive locks of several stages (e.g. one per interval of a download).

    They are taken in sorted order, so two runs waiting for overlapping sets cannot deadlock.
    """
    with contextlib.ExitStack() as stack:
        for stage in sorted(set(stages)):
            stack.enter_context(stage_lock(layout, stage, timeout))
        yield


@contextlib.contextmanager
def stage_lock(layout: Layout, stage: str, timeout: float = 0.0, *, shared: bool = False) -> Iterator[None]:
    """Hold the lock of one stage of one data directory: exclusive to write its output, `shared` to read it.

    A second bhds process wanting the same stage waits up to `timeout` seconds, then fails with a
    message naming the holder's PID. Readers (shared) exclude a writer but not each other. The lock
    is released by the kernel if the holder dies.
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
                fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip()
                    # Only a writer records its PID: readers share the lock, and the file is empty then.
                    who = f"another bhds process (PID {holder}) is running" if holder else "other bhds processes are reading"
                    raise LockBusy(
                        f"{who} the {stage} stage on {layout.root}: "
                        "wait for it to finish, or set BHDS_LOCK_TIMEOUT=<seconds> to wait for it"
                    ) from None
                time.sleep(0.2)
        if not shared:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
        try:
            yield
        finally:
            if not shared:  # a later reader-blocked writer must not name this finished process
                handle.truncate(0)
                handle.flush()
    finally:
        handle.close()
