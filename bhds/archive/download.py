"""Fetch one archive key to `<name>.part`, hashing while the body streams in.

The body is never held in memory whole and never written to its final name here: the caller
checks the hash and renames. A body shorter than the listing said (or than its Content-Length)
is retried like a 5xx; a 404 is final and raised as NotPublished.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bhds import storage
from bhds.archive.http import IncompleteBody, check_status, with_archive_retries
from bhds.errors import disk_full, is_disk_full
from bhds.net import DEFAULT_POLICY, RetryPolicy

# Bytes handed over per read: big enough for few Python round trips, small enough for flat memory.
STREAM_CHUNK = 1 << 18


@dataclass(frozen=True)
class Fetched:
    """A body now on disk at `path` (a `.part` file), with its size and SHA-256."""

    path: Path
    size: int
    sha256: str


async def fetch_to(session: aiohttp.ClientSession, url: str, part: Path, *, expected_size: int | None = None,
                   policy: RetryPolicy = DEFAULT_POLICY) -> Fetched:
    """GET `url` into `part`, retried per `policy`; the part file is removed if every try fails."""

    async def attempt() -> Fetched:
        digest = hashlib.sha256()
        size = 0
        async with session.get(url) as response:
            check_status(response)
            with storage.open_scratch(part) as handle:
                async for chunk in response.content.iter_chunked(STREAM_CHUNK):
                    digest.update(chunk)
                    handle.write(chunk)
                    size += len(chunk)
        if expected_size is not None and expected_size >= 0 and size != expected_size:
            raise IncompleteBody(f"{url}: got {size} bytes, the listing says {expected_size}")
        return Fetched(part, size, digest.hexdigest())

    try:
        return await with_archive_retries(attempt, policy, what=url)
    except BaseException as exc:
        storage.remove(part)
        if is_disk_full(exc):
            raise disk_full(part, exc) from exc
        raise



async def fetch_body(session: aiohttp.ClientSession, url: str, *, expected_size: int | None = None,
                     policy: RetryPolicy = DEFAULT_POLICY) -> bytes:
    """GET a small body (the caller knows it is small from the listing) into memory, retried."""

    async def attempt() -> bytes:
        async with session.get(url) as response:
            check_status(response)
            body = await response.read()
        if expected_size is not None and expected_size >= 0 and len(body) != expected_size:
            raise IncompleteBody(f"{url}: got {len(body)} bytes, the listing says {expected_size}")
        return body

    return await with_archive_retries(attempt, policy, what=url)
