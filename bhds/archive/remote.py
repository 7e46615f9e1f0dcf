"""Archive downloads as Dask tasks: the client lists and plans, workers fetch batches of files.

The client keeps what must happen in one place: the listing (cheap, and it decides what is new
against the local tree and the manifest), the stage locks and the SQLite manifest (one writer). Each
task is one `Batch` of planned units: the worker opens its own HTTP session with the client's
settings (proxy, timeouts, base URL, retry policy), fetches each zip with its CHECKSUM, checks the
SHA-256 and the zip, installs them with `.part` + rename and marks them, exactly as `Mirror` does
locally (it runs a `Mirror` over the batch). It returns counts, failures and the manifest rows,
which the client writes. A worker killed mid-batch has the whole batch re-run by Dask: the retry
deletes the dead attempt's `.part` files first, fetches every unit again (same bytes, same names)
and only the finished attempt's rows reach the manifest, so the end state is the same.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from bhds import parallel, storage
from bhds.archive.http import describe
from bhds.archive.plan import Unit
from bhds.errors import DiskFull
from bhds.paths import Layout, part_path
from bhds.settings import Settings

if TYPE_CHECKING:
    from bhds.archive.mirror import Mirror, MirrorReport
    from bhds.net import RetryPolicy

# A batch is cut at this many units (a zip and its CHECKSUM are one unit) or bytes, whichever comes
# first. 256 daily 1m zips are ~15 MB and a few seconds of transfer, so a task's fixed costs (the
# scheduler's round trip, a new session's connections) stay small; and a worker killed mid-batch
# re-fetches at most that much. Trade and aggTrade zips run to hundreds of MB: the byte cap keeps
# their batches to a few files, so one batch never holds a worker for long.
MAX_BATCH_UNITS = 256
MAX_BATCH_BYTES = 256 << 20
# Below the caps, batches are cut smaller so that every worker thread gets several of them (a short
# run of a few hundred files is still spread over the cluster), but not below this many units.
BATCHES_PER_SLOT = 4
MIN_BATCH_UNITS = 8
# Threads of a task for the disk half (hash, zip test, rename): the event loop keeps the sockets busy.
TASK_DISK_THREADS = 2

log = logging.getLogger("bhds.archive")


@dataclass(frozen=True)
class Batch:
    """One task: planned units of the mirror, and what a worker needs to fetch them like the client."""

    settings: Settings
    policy: RetryPolicy
    markers: bool
    units: tuple[Unit, ...]

    @property
    def keys(self) -> int:
        return sum(unit.keys for unit in self.units)


@dataclass
class BatchResult:
    """What a task sends back: its mirror report and the manifest rows for the client to write."""

    report: MirrorReport
    records: list[tuple] = field(default_factory=list)


class _Rows:
    """Stands in for the manifest on a worker: the rows `Mirror` would write, kept for the client."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def put(self, key: str, size: int, last_modified: str | None, etag: str | None, sha256: str | None) -> None:
        self.rows.append((key, size, last_modified, etag, sha256))

    def flush(self) -> None:
        pass


def _unit_bytes(unit: Unit) -> int:
    return max(0, unit.main.size) + (max(0, unit.checksum.size) if unit.checksum is not None else 0)


def cut(units: list[Unit], slots: int) -> Iterator[tuple[Unit, ...]]:
    """Consecutive units (listing order: one folder's files together) in batches within the caps."""
    per_batch = max(MIN_BATCH_UNITS, min(MAX_BATCH_UNITS, math.ceil(len(units) / (BATCHES_PER_SLOT * max(1, slots)))))
    batch: list[Unit] = []
    size = 0
    for unit in units:
        if batch and (len(batch) >= per_batch or size + _unit_bytes(unit) > MAX_BATCH_BYTES):
            yield tuple(batch)
            batch, size = [], 0
        batch.append(unit)
        size += _unit_bytes(unit)
    if batch:
        yield tuple(batch)


def fetch_batch(batch: Batch) -> BatchResult:
    """On a worker: fetch, check and install one batch in the shared data folder."""
    from bhds.archive.mirror import Mirror
    from bhds.net import make_session

    settings = batch.settings
    layout = Layout(settings.data_dir)
    # A previous attempt of this batch may have died mid-write: its `.part` files go first.
    for unit in batch.units:
        for f in (unit.main, unit.checksum):
            if f is not None:
                storage.remove(part_path(layout.local_for_key(f.key)))
    rows = _Rows()

    async def run() -> MirrorReport:
        concurrency = max(1, min(settings.concurrency, len(batch.units)))
        async with make_session(settings, connections=concurrency) as session:
            with ThreadPoolExecutor(max_workers=TASK_DISK_THREADS, thread_name_prefix="bhds-ziptest") as executor:
                mirror = Mirror(session, base_url=settings.aws_url, layout=layout, manifest=rows,  # type: ignore[arg-type]
                                executor=executor, concurrency=concurrency, markers=batch.markers, policy=batch.policy)
                return await mirror.run_units(batch.units)

    return BatchResult(asyncio.run(run()), rows.rows)


def fetch_on_cluster(mirror: Mirror, units: list[Unit], settings: Settings) -> None:
    """On the client: run `units` as Dask tasks and fold their results into `mirror` (report, manifest)."""
    if not units:
        return
    # Workers get what they fetch with, not the object store's credentials.
    shipped = replace(settings, store=None, store_url=None)
    batches = [Batch(shipped, mirror.policy, mirror.markers, units) for units in cut(units, parallel.dask_slots())]
    log.info("fetching %d file(s) in %d Dask task(s)", sum(batch.keys for batch in batches), len(batches))
    report = mirror.report
    for batch, outcome in parallel.imap_isolated(fetch_batch, batches, settings.n_jobs):
        mirror.advance(batch.keys)
        if isinstance(outcome, DiskFull):
            raise outcome  # every further file would fail the same way: stop the run, say so once
        if isinstance(outcome, BaseException):
            report.failures += [f"{unit.main.key}: download task failed ({describe(outcome)})" for unit in batch.units]
            continue
        report.add_fetched(outcome.report)
        for row in outcome.records:
            mirror.manifest.put(*row)
