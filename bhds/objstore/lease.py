"""Leases: the lock of a published tree, an object created with a conditional PUT.

`<tree>/_lease` holds the owner (host, PID, a random token) and the lease's length. It is created
with `If-None-Match: *` (one creator wins), renewed by its holder every third of its length with
`If-Match: <its ETag>` (a holder that lost it finds out), and deleted with `If-Match` at the end.
A lease whose object was last written longer ago than its length, by the server's clock, belongs
to a dead holder: the next writer takes it over with `If-Match` on the dead lease's ETag, so two
waiters cannot both take it. A holder on this host whose PID is gone is dead at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator

from bhds.errors import LockBusy
from bhds.objstore.store import ObjectStore

log = logging.getLogger("bhds")
POLL_SECONDS = 0.5


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lease:
    """One lease object; `etag` is set while this process holds it."""

    def __init__(self, store: ObjectStore, key: str, seconds: float, owner: str, what: str) -> None:
        self.store, self.key, self.seconds, self.owner, self.what = store, key, seconds, owner, what
        self.etag: str | None = None
        self.lost = False
        self._renewals = 0

    def _body(self) -> bytes:
        return json.dumps({"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
                           "seconds": self.seconds, "renewals": self._renewals}).encode()

    def acquire(self, timeout: float) -> None:
        """Take the lease, waiting up to `timeout` seconds for a live holder; else LockBusy (exit 75)."""
        deadline = time.monotonic() + timeout
        while True:
            self.etag = self.store.create(self.key, self._body())
            if self.etag is not None:
                return
            head = self.store.head(self.key)
            current = self.store.read(self.key) if head is not None else None
            if current is None or head is None or current[1] != head.etag:
                continue  # released or renewed between the calls: look again
            try:
                holder = json.loads(current[0])
            except ValueError:
                holder = {}
            seconds = float(holder.get("seconds") or 0)
            same_host_dead = holder.get("host") == socket.gethostname() and not _alive(int(holder.get("pid") or 0))
            if head.age > seconds or same_host_dead:
                log.info("taking over the lease of %s from a dead holder (%s PID %s)", self.what, holder.get("host"), holder.get("pid"))
                self.etag = self.store.replace(self.key, self._body(), head.etag)
                if self.etag is not None:
                    return
                continue
            if time.monotonic() >= deadline:
                left = max(0.0, seconds - head.age)
                raise LockBusy(f"another bhds process ({holder.get('host')}, PID {holder.get('pid')}) holds the lease of "
                               f"{self.what} (it expires in {left:.0f} s unless renewed): wait for it to finish, "
                               "or set BHDS_LOCK_TIMEOUT=<seconds> to wait for it")
            time.sleep(POLL_SECONDS)

    def renew(self) -> bool:
        """Extend the lease; False (and `lost`) when someone else took it."""
        if self.etag is None or self.lost:
            return False
        self._renewals += 1
        etag = self.store.replace(self.key, self._body(), self.etag)
        if etag is None:
            self.lost = True
            log.warning("lost the lease of %s (not renewed in time): this run will not publish", self.what)
            return False
        self.etag = etag
        return True

    def release(self) -> None:
        if self.etag is not None and not self.lost:
            self.store.delete_if(self.key, self.etag)
        self.etag = None


@contextlib.contextmanager
def held(leases: list[Lease], timeout: float) -> Iterator[list[Lease]]:
    """Hold every lease (taken in key order, so overlapping waiters cannot deadlock), renewed in a thread."""
    leases = sorted(leases, key=lambda lease: lease.key)
    taken: list[Lease] = []
    stop = threading.Event()
    renewer: threading.Thread | None = None
    try:
        for lease in leases:
            lease.acquire(timeout)
            taken.append(lease)
        if taken:
            period = min(lease.seconds for lease in taken) / 3

            def renew_all() -> None:
                while not stop.wait(period):
                    for lease in taken:
                        try:
                            lease.renew()
                        except Exception as exc:  # noqa: BLE001 - a failed renewal is retried next period
                            log.warning("could not renew the lease of %s: %s", lease.what, exc)

            renewer = threading.Thread(target=renew_all, name="bhds-lease-renewal", daemon=True)
            renewer.start()
        yield taken
    finally:
        stop.set()
        if renewer is not None:
            renewer.join()
        for lease in reversed(taken):
            with contextlib.suppress(Exception):
                lease.release()
