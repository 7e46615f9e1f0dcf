"""Mirror archive directories: list them, diff against the local tree, fetch what is missing.

Listing and downloading overlap: each directory is planned as soon as its listing arrives and
its work joins one queue served by `concurrency` workers on a single HTTP session. For a zip,
the `.CHECKSUM` comes first, then the zip (read whole when small, streamed to `.part` and hashed
on the way when large). The disk half (hash check, zip test, writing, renaming, the marker)
runs in worker threads so the event loop keeps the connections busy; on this kind of disk
creating a file costs more CPU than transferring a daily zip. The manifest row is written last,
by the event loop, so a run killed at any instant leaves old files or new ones, never a marker
vouching for bytes nobody checked.

With `on_cluster` settings (a Dask scheduler is set), the fetches and local checks are not queued
here: once every directory is planned they run as batches of Dask tasks (`bhds.archive.remote`),
each a `Mirror` over its units on a worker, and their rows come back to this manifest.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import io
import logging
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from bhds import storage
from bhds.archive.checksum import BrokenZip, ChecksumFormatError, check_zip, parse_checksum, sha256_file, verify_with_checksum_file
from bhds.archive.download import fetch_body, fetch_to
from bhds.archive.http import NotPublished, describe
from bhds.archive.listing import ArchiveFile, list_prefix
from bhds.archive.manifest import Manifest, Record
from bhds.archive.markers import MarkerWriter
from bhds.archive.plan import ADOPT, CHECK, SKIP, Unit, plan_directory, scan_dir
from bhds.errors import DiskFull, disk_full, is_disk_full
from bhds.net import DEFAULT_POLICY, RetryPolicy
from bhds.paths import Layout, checksum_path, key_url, part_path
from bhds.progress import bar

if TYPE_CHECKING:
    from bhds.settings import Settings

log = logging.getLogger("bhds.archive")

# A zip whose hash disagrees with its CHECKSUM is fetched again (both files) this many times in
# all: a CDN can serve a stale copy of one of the two for a while.
HASH_ATTEMPTS = 3
# Directory listings in flight at once; they are small and share the download connections.
MAX_LISTINGS = 16
# Zips up to this size are read into memory in one go (a daily 1m kline zip is ~60 KB); bigger
# ones stream to `.part` while they hash, so memory stays flat at any file size.
SMALL_BODY_BYTES = 1 << 20


@dataclass
class MirrorReport:
    """What one mirror run did; the workflow turns it into a RunSummary."""

    directories: int = 0
    listed: int = 0
    downloaded: int = 0
    bytes: int = 0
    skipped: int = 0
    adopted: int = 0
    unverified: int = 0
    swept: int = 0
    empty: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def add_fetched(self, other: MirrorReport) -> None:
        """Add what `other` fetched and checked (a Dask batch's report: it neither listed nor planned)."""
        for name in ("downloaded", "bytes", "skipped", "adopted", "unverified"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures += other.failures


class Mirror:
    """One run's collaborators: session, layout, manifest, the zip-test threads and the policy."""

    def __init__(self, session: aiohttp.ClientSession, *, base_url: str, layout: Layout, manifest: Manifest,
                 executor: Executor, concurrency: int, markers: bool, policy: RetryPolicy = DEFAULT_POLICY,
                 desc: str = "download", on_cluster: Settings | None = None) -> None:
        self.session = session
        self.base_url = base_url
        self.layout = layout
        self.manifest = manifest
        self.executor = executor
        self.concurrency = max(1, concurrency)
        self.markers = markers
        self.policy = policy
        self.desc = desc
        self.on_cluster = on_cluster
        self._for_cluster: list[Unit] = []  # the units to fetch or check, when they go to Dask
        self.report = MirrorReport()
        self._markers = MarkerWriter(layout)
        self._made_dirs: set[Path] = set()
        self._bar = None

    # ---- the pipeline ---------------------------------------------------------------------

    async def run(self, prefixes: Iterable[str]) -> MirrorReport:
        """Mirror every file directly under each prefix; per-item problems land in the report."""
        prefixes = list(dict.fromkeys(prefixes))
        gate = asyncio.Semaphore(min(MAX_LISTINGS, self.concurrency))
        return await self._pipeline(lambda queue: [self._list_and_plan(prefix, gate, queue) for prefix in prefixes])

    async def run_listed(self, listed: Iterable[tuple[str, list[ArchiveFile]]]) -> MirrorReport:
        """Mirror the given files of each directory, listed (and picked) by the caller beforehand."""

        async def plan(prefix: str, files: list[ArchiveFile], queue: asyncio.Queue) -> None:
            self._plan(prefix, files, queue)

        return await self._pipeline(lambda queue: [plan(prefix, files, queue) for prefix, files in listed])

    async def run_units(self, units: Iterable[Unit]) -> MirrorReport:
        """Fetch (or check) units planned elsewhere: a batch of a Dask download, on a worker."""

        async def enqueue(queue: asyncio.Queue) -> None:
            for unit in units:
                queue.put_nowait(unit)

        return await self._pipeline(lambda queue: [enqueue(queue)])

    async def _pipeline(self, producers: Callable[[asyncio.Queue], list[Awaitable[None]]]) -> MirrorReport:
        """Run the planning coroutines that `producers(queue)` makes, with the download workers."""
        queue: asyncio.Queue[Unit | None] = asyncio.Queue()
        with bar(total=0, desc=self.desc, unit="file") as progress:
            self._bar = progress
            workers = [] if self.on_cluster else [asyncio.create_task(self._worker(queue)) for _ in range(self.concurrency)]
            try:
                await asyncio.gather(*producers(queue))
            except BaseException:
                # Interrupted (Ctrl-C, a bug): stop at once rather than drain the queue.
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                raise
            else:
                for _ in workers:
                    queue.put_nowait(None)
                await asyncio.gather(*workers)
                if self.on_cluster:
                    from bhds.archive.remote import fetch_on_cluster

                    # Blocks this loop while the tasks run: it has nothing else to do by now.
                    fetch_on_cluster(self, self._for_cluster, self.on_cluster)
            finally:
                self.manifest.flush()
        return self.report

    async def _list_and_plan(self, prefix: str, gate: asyncio.Semaphore, queue: asyncio.Queue) -> None:
        async with gate:
            try:
                listing = await list_prefix(self.session, self.base_url, prefix, self.policy)
            except Exception as exc:  # noqa: BLE001 - one directory failing must not stop the others
                self.report.failures.append(f"{prefix}: listing failed ({describe(exc)})")
                return
        self._plan(prefix, listing.files, queue)

    def _plan(self, prefix: str, files: list[ArchiveFile], queue: asyncio.Queue) -> None:
        report = self.report
        report.directories += 1
        report.listed += len(files)
        if not files:
            report.empty.append(prefix)
            return
        local, swept = scan_dir(self.layout.local_for_key(prefix))
        report.swept += swept
        records = self.manifest.under(prefix)
        plan = plan_directory(files, local, records, markers=self.markers)
        self._grow(len(files))
        for unit in plan.units:
            if unit.action == SKIP:
                report.skipped += unit.keys
                self.advance(unit.keys)
            elif unit.action == ADOPT:
                self._adopt(unit, records)
            elif self.on_cluster:
                self._for_cluster.append(unit)
            else:
                queue.put_nowait(unit)

    async def _worker(self, queue: asyncio.Queue) -> None:
        while True:
            unit = await queue.get()
            if unit is None:
                return
            try:
                if unit.action == CHECK and await self._check_local(unit):
                    continue
                if unit.is_zip:
                    await self._fetch_pair(unit.main, unit.checksum)
                else:
                    await self._fetch_single(unit.main)
            except DiskFull:
                raise  # every further file would fail the same way: stop the run, say so once
            except Exception as exc:  # noqa: BLE001 - isolate the item, keep the run going
                if is_disk_full(exc):
                    raise disk_full(self.layout.aws_root, exc) from exc
                log.debug("unexpected error on %s", unit.main.key, exc_info=True)
                self.report.failures.append(f"{unit.main.key}: {type(exc).__name__}: {describe(exc)}")
            finally:
                self.advance(unit.keys)

    # ---- local copies that only need recording ---------------------------------------------

    def _adopt(self, unit: Unit, records: dict[str, Record]) -> None:
        """Record a local file (marked verified by bhds.py, or a lone key) without downloading it."""
        # A hash is kept only if bhds computed it (verify); bhds.py's marker vouches for no hash.
        known = records.get(unit.main.key)
        self._record(unit.main, known.sha256 if known is not None and known.size == unit.main.size else None)
        if unit.checksum is not None:
            self._record(unit.checksum, None)
        self.report.adopted += unit.keys
        self.report.skipped += unit.keys
        self.advance(unit.keys)

    async def _check_local(self, unit: Unit) -> bool:
        """Hash and test a local zip found without a marker; True if it is good and now recorded."""
        path = self.layout.local_for_key(unit.main.key)
        loop = asyncio.get_running_loop()
        if unit.checksum is not None:
            verdict = await loop.run_in_executor(self.executor, contextvars.copy_context().run, verify_with_checksum_file, path, checksum_path(path))
            if not verdict.ok:
                log.info("%s: local copy not usable (%s); fetching it again", unit.main.key, verdict.reason)
                return False
            sha = verdict.sha256
        else:
            try:
                sha, _ = await loop.run_in_executor(self.executor, contextvars.copy_context().run, _hash_and_test, path)
            except (OSError, BrokenZip):
                return False
            self.report.unverified += 1
        self._install_marker(path, verified=unit.checksum is not None)
        self._record(unit.main, sha)
        if unit.checksum is not None:
            self._record(unit.checksum, None)
        self.report.adopted += unit.keys
        self.report.skipped += unit.keys
        return True

    # ---- downloads --------------------------------------------------------------------------

    async def _fetch_pair(self, zf: ArchiveFile, cf: ArchiveFile | None) -> None:
        """CHECKSUM first, then the zip; hash, zip test and install happen in a worker thread."""
        zip_path = self.layout.local_for_key(zf.key)
        self._ensure_dir(zip_path.parent)
        loop = asyncio.get_running_loop()
        small = zf.size <= SMALL_BODY_BYTES
        try:
            for attempt in range(1, HASH_ATTEMPTS + 1):
                sum_body: bytes | None = None
                expected: str | None = None
                if cf is not None:
                    try:
                        sum_body = await fetch_body(self.session, self._url(cf.key), expected_size=cf.size, policy=self.policy)
                    except NotPublished:
                        self.report.failures.append(f"{cf.key}: listed but not published (HTTP 404); its zip is kept unverified")
                        cf = None
                    else:
                        try:
                            expected = parse_checksum(sum_body)
                        except ChecksumFormatError as exc:
                            self.report.failures.append(f"{cf.key}: {describe(exc)}; zip not installed")
                            return
                try:
                    if small:
                        body = await fetch_body(self.session, self._url(zf.key), expected_size=zf.size, policy=self.policy)
                        staged = Staged(body=body, size=len(body))
                    else:
                        got = await fetch_to(self.session, self._url(zf.key), part_path(zip_path), expected_size=zf.size,
                                             policy=self.policy)
                        staged = Staged(part=got.path, sha256=got.sha256, size=got.size)
                except NotPublished:
                    self.report.failures.append(f"{zf.key}: listed but no longer published (HTTP 404)")
                    return
                outcome = await loop.run_in_executor(self.executor, contextvars.copy_context().run, finish_pair, zip_path, staged, sum_body, expected,
                                                     self._markers if self.markers else None)
                if outcome.status == MISMATCH:
                    log.warning("%s: SHA-256 differs from its CHECKSUM (try %d of %d)", zf.key, attempt, HASH_ATTEMPTS)
                    continue
                if outcome.status == BROKEN:
                    self.report.failures.append(f"{zf.key}: {outcome.reason}; not installed")
                    return
                self._record(zf, outcome.sha256)
                if cf is not None and sum_body is not None:
                    self._record(cf, None)
                self.report.downloaded += 1 + (sum_body is not None)
                self.report.bytes += staged.size + (len(sum_body) if sum_body is not None else 0)
                if expected is None:
                    self.report.unverified += 1
                    log.warning("%s has no CHECKSUM to check against; kept, but not marked verified", zf.key)
                return
            self.report.failures.append(f"{zf.key}: SHA-256 differs from its CHECKSUM after {HASH_ATTEMPTS} downloads; not installed")
        except Exception as exc:  # noqa: BLE001 - network or disk failure after every retry: report, go on
            self.report.failures.append(f"{zf.key}: download failed ({describe(exc)})")

    async def _fetch_single(self, f: ArchiveFile) -> None:
        path = self.layout.local_for_key(f.key)
        self._ensure_dir(path.parent)
        try:
            got = await fetch_to(self.session, self._url(f.key), part_path(path), expected_size=f.size, policy=self.policy)
        except NotPublished:
            self.report.failures.append(f"{f.key}: listed but no longer published (HTTP 404)")
            return
        except Exception as exc:  # noqa: BLE001
            self.report.failures.append(f"{f.key}: download failed ({describe(exc)})")
            return
        storage.replace_file(got.path, path)
        self._record(f, got.sha256)
        self.report.downloaded += 1
        self.report.bytes += got.size

    # ---- small helpers ----------------------------------------------------------------------

    def _install_marker(self, zip_path: Path, *, verified: bool) -> None:
        if verified and self.markers:
            self._markers.mark(zip_path)

    def _record(self, f: ArchiveFile, sha256: str | None) -> None:
        self.manifest.put(f.key, f.size, f.last_modified, f.etag or None, sha256)

    def _url(self, key: str) -> str:
        return key_url(self.base_url, key)

    def _ensure_dir(self, directory: Path) -> None:
        if directory not in self._made_dirs:
            directory.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(directory)

    def _grow(self, n: int) -> None:
        if self._bar is not None and n:
            self._bar.total += n
            self._bar.refresh()

    def advance(self, n: int) -> None:
        """Move the progress bar by `n` keys done."""
        if self._bar is not None:
            self._bar.update(n)


def _hash_and_test(path: Path) -> tuple[str, int]:
    digest = sha256_file(path)
    check_zip(path)
    return digest


# ---- the disk half of a download, run in a worker thread ------------------------------------

INSTALLED, MISMATCH, BROKEN = "installed", "mismatch", "broken"


@dataclass(frozen=True)
class Staged:
    """A fetched zip: its body in memory (small files) or a `.part` file already hashed."""

    body: bytes | None = None
    part: Path | None = None
    sha256: str | None = None
    size: int = 0


@dataclass(frozen=True)
class Outcome:
    status: str
    sha256: str
    reason: str = ""


def _write_part(target: Path, data: bytes) -> Path:
    part = part_path(target)
    with storage.open_scratch(part) as handle:
        handle.write(data)
    return part


def finish_pair(zip_path: Path, staged: Staged, sum_body: bytes | None, expected: str | None,
                markers: MarkerWriter | None) -> Outcome:
    """Check a fetched zip against `expected`, test it, and put it (and its CHECKSUM) in place.

    Order on disk: the old marker goes, the CHECKSUM lands, the zip lands, the new marker is
    made. A crash at any point leaves at worst an unmarked file, which the next run checks
    again; never a marker vouching for bytes nobody checked.
    """
    written: list[Path] = [staged.part] if staged.part is not None else []
    try:
        sha = staged.sha256 or hashlib.sha256(staged.body or b"").hexdigest()
        if expected is not None and sha != expected:
            return Outcome(MISMATCH, sha)
        try:
            check_zip(io.BytesIO(staged.body) if staged.body is not None else staged.part)
        except BrokenZip as exc:
            return Outcome(BROKEN, sha, str(exc) + ("" if expected is None else ", although its checksum matches"))
        zip_part = staged.part if staged.part is not None else _write_part(zip_path, staged.body or b"")
        written.append(zip_part)
        sum_part = _write_part(checksum_path(zip_path), sum_body) if sum_body is not None else None
        if sum_part is not None:
            written.append(sum_part)
        if markers is not None:
            markers.unmark(zip_path)
        if sum_part is not None:
            storage.replace_file(sum_part, checksum_path(zip_path))
        storage.replace_file(zip_part, zip_path)
        written.clear()
        if markers is not None and expected is not None:
            markers.mark(zip_path)
        return Outcome(INSTALLED, sha)
    finally:
        storage.remove_all(written)
