"""Verify local zips on every core: find the unmarked ones, fetch missing CHECKSUMs, hash them.

Hashing and reading release the GIL, so one thread per core verifies at close to the machine's
hashing speed without the start-up and pickling cost of a process pool. At most a few files per
thread are in flight and each is streamed, so memory stays flat whatever the file sizes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from bhds import parallel, storage
from bhds.archive.checksum import ChecksumFormatError, Verdict, read_checksum, verify_with_checksum_file
from bhds.archive.plan import scan_dir
from bhds.paths import CHECKSUM_SUFFIX, VERIFIED_SUFFIX, checksum_path, key_url, part_path

if TYPE_CHECKING:  # the network half is imported only when a CHECKSUM has to be fetched
    import aiohttp

    from bhds.net import RetryPolicy


@dataclass(frozen=True)
class Candidate:
    """A local zip without a `.verified` marker, and its S3 key."""

    key: str
    path: Path
    has_checksum: bool


@dataclass
class Survey:
    """The zips of some directories: those to verify, and how many are already marked verified."""

    candidates: list[Candidate]
    marked: int = 0
    swept: int = 0


def survey(directories: Iterable[tuple[str, Path]]) -> Survey:
    """Scan `(key prefix, local directory)` pairs for zips that have no `.verified` marker."""
    result = Survey([])
    for prefix, directory in directories:
        local, swept = scan_dir(directory, sizes=False)
        result.swept += swept
        for name in sorted(local):
            if not name.endswith(".zip"):
                continue
            if name + VERIFIED_SUFFIX in local:
                result.marked += 1
            else:
                result.candidates.append(Candidate(prefix + name, directory / name, name + CHECKSUM_SUFFIX in local))
    return result


def _verify_batch(batch: list[Candidate], on_ok: Callable[[Path], None] | None) -> list[tuple[Candidate, Verdict]]:
    out = []
    for item in batch:
        try:
            verdict = verify_with_checksum_file(item.path, checksum_path(item.path))
            if verdict.ok and on_ok is not None:
                on_ok(item.path)
        except Exception as exc:  # noqa: BLE001 - one odd file must not take its batch down
            verdict = Verdict(item.path, False, "", 0, f"could not verify ({str(exc) or type(exc).__name__})")
        out.append((item, verdict))
    return out


def verify_all(candidates: list[Candidate], n_jobs: int, *, on_ok: Callable[[Path], None] | None = None,
               batch_size: int = 16) -> Iterator[tuple[Candidate, Verdict]]:
    """Verify each candidate against its local CHECKSUM on `n_jobs` threads, yielding as they finish.

    `on_ok(zip_path)` runs in the worker right after a file passes (writing its marker there
    keeps that syscall off the caller's thread). Files go to the threads in small batches:
    per-task overhead is then negligible next to hashing a typical 60 KB daily zip, and at most
    a few batches per thread are in flight.
    """
    jobs = max(1, n_jobs)
    size = max(1, min(batch_size, len(candidates) // (jobs * 4) or 1))
    batches = (candidates[i:i + size] for i in range(0, len(candidates), size))
    if parallel.on_dask():  # each batch a task on the cluster's workers, which read the zips themselves
        for batch, outcome in parallel.imap_isolated(partial(_verify_batch, on_ok=on_ok), batches, jobs):
            if isinstance(outcome, BaseException):
                reason = f"could not verify ({str(outcome) or type(outcome).__name__})"
                outcome = [(item, Verdict(item.path, False, "", 0, reason)) for item in batch]
            yield from outcome
        return
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="bhds-verify") as pool:
        pending: set[Future] = set()
        while True:
            for batch in batches:
                pending.add(pool.submit(_verify_batch, batch, on_ok))
                if len(pending) >= 2 * jobs:
                    break
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield from future.result()


@dataclass(frozen=True)
class ChecksumFetch:
    candidate: Candidate
    error: str = ""  # empty on success


async def fetch_checksums(session: aiohttp.ClientSession, base_url: str, candidates: list[Candidate], *,
                          concurrency: int, policy: RetryPolicy | None = None) -> list[ChecksumFetch]:
    """Download the missing `.CHECKSUM` of each candidate next to its zip (via `.part`)."""
    from bhds.archive.download import fetch_to
    from bhds.archive.http import NotPublished, describe
    from bhds.net import DEFAULT_POLICY

    policy = policy or DEFAULT_POLICY
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(candidate: Candidate) -> ChecksumFetch:
        target = checksum_path(candidate.path)
        async with gate:
            try:
                got = await fetch_to(session, key_url(base_url, candidate.key + CHECKSUM_SUFFIX), part_path(target),
                                     policy=policy)
            except NotPublished:
                return ChecksumFetch(candidate, "no CHECKSUM is published for it (HTTP 404)")
            except Exception as exc:  # noqa: BLE001 - report, never delete data for a network failure
                return ChecksumFetch(candidate, f"its CHECKSUM could not be fetched ({describe(exc)})")
        try:
            read_checksum(got.path)
        except (OSError, ChecksumFormatError) as exc:
            storage.remove(got.path)
            return ChecksumFetch(candidate, f"the fetched CHECKSUM is unreadable ({describe(exc)})")
        storage.replace_file(got.path, target)
        return ChecksumFetch(candidate)

    return list(await asyncio.gather(*(one(c) for c in candidates)))
