"""The S3 ListObjects (V1) listing of the archive bucket, with paging, as `ArchiveFile` records.

One "directory" is a prefix ending in `/` listed with `delimiter=/`: sub-directories come back
as CommonPrefixes, files as Contents (a page may hold both). Pages hold at most 1000 entries;
the next page starts after NextMarker, or after the last entry when S3 leaves NextMarker out.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

from yarl import URL

if TYPE_CHECKING:  # the network is imported on first use: plan and verify read ArchiveFile only
    import aiohttp

    from bhds.net import RetryPolicy

# A runaway listing (a server that never stops saying IsTruncated) is cut off here.
MAX_PAGES = 100_000


@dataclass(frozen=True)
class ArchiveFile:
    """One listed key with the attributes that tell a re-upload: size, LastModified, ETag."""

    key: str
    size: int
    last_modified: str
    etag: str

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


@dataclass
class ListingPage:
    """One parsed ListBucketResult page."""

    prefixes: list[str] = field(default_factory=list)
    files: list[ArchiveFile] = field(default_factory=list)
    is_truncated: bool = False
    next_marker: str | None = None
    folder_keys: list[str] = field(default_factory=list)  # zero-byte "dir/" objects: not files, but page entries

    @property
    def last_entry(self) -> str | None:
        """The greatest key or prefix on the page: where the next page starts when NextMarker is absent."""
        candidates = self.prefixes[-1:] + [f.key for f in self.files[-1:]] + self.folder_keys[-1:]
        return max(candidates) if candidates else None


@dataclass
class Listing:
    """Everything under one prefix: sub-directory prefixes and files, each sorted."""

    prefix: str
    prefixes: list[str] = field(default_factory=list)
    files: list[ArchiveFile] = field(default_factory=list)
    pages: int = 0

    @property
    def names(self) -> list[str]:
        """The last path component of each sub-directory (e.g. the symbols under `.../klines/`)."""
        return [p[len(self.prefix):].strip("/") for p in self.prefixes if p.startswith(self.prefix) and p != self.prefix]


class BadListing(Exception):
    """The answer was not a ListBucketResult (an S3 error document, an HTML page...)."""


def _local(tag: str) -> str:
    # Strip the S3 namespace: `{http://s3.amazonaws.com/doc/2006-03-01/}Key` → `Key`.
    return tag.rsplit("}", 1)[-1]


def _child_text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return child.text or ""
    return None


def parse_page(body: bytes) -> ListingPage:
    """Parse one page of ListBucketResult XML; raise BadListing on anything else."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise BadListing(f"listing is not XML ({exc})") from None
    if _local(root.tag) != "ListBucketResult":
        code = _child_text(root, "Code") or _local(root.tag)
        raise BadListing(f"listing answered {code} instead of a ListBucketResult")
    page = ListingPage()
    for child in root:
        tag = _local(child.tag)
        if tag == "CommonPrefixes":
            prefix = _child_text(child, "Prefix")
            if prefix:
                page.prefixes.append(prefix)
        elif tag == "Contents":
            key = _child_text(child, "Key")
            if key and key.endswith("/"):  # a zero-byte "folder" object is no file to fetch
                page.folder_keys.append(key)
            elif key:
                size_text = _child_text(child, "Size") or "0"
                page.files.append(ArchiveFile(
                    key=key,
                    size=int(size_text) if size_text.strip().isdigit() else -1,
                    last_modified=(_child_text(child, "LastModified") or "").strip(),
                    etag=(_child_text(child, "ETag") or "").strip().strip('"'),
                ))
        elif tag == "IsTruncated":
            page.is_truncated = (child.text or "").strip().lower() == "true"
        elif tag == "NextMarker":
            page.next_marker = (child.text or "").strip() or None
    return page


def page_url(base_url: str, prefix: str, marker: str | None = None) -> URL:
    """The listing URL, with prefix and marker percent-encoded (keeping `/`), sent as is."""
    query = f"delimiter=%2F&prefix={quote(prefix, safe='/')}"
    if marker:
        query += f"&marker={quote(marker, safe='/')}"
    return URL(f"{base_url.rstrip('/')}?{query}", encoded=True)


async def fetch_page(session: aiohttp.ClientSession, url: URL, policy: RetryPolicy | None = None) -> ListingPage:
    """GET and parse one page, retried as one unit (a cut-off XML body is retried too)."""
    from bhds.archive.http import RETRY_ON, check_status, with_archive_retries
    from bhds.net import DEFAULT_POLICY

    async def attempt() -> ListingPage:
        async with session.get(url) as response:
            check_status(response)
            body = await response.read()
        return parse_page(body)

    return await with_archive_retries(attempt, policy or DEFAULT_POLICY, retry_on=RETRY_ON + (BadListing,), what=f"listing {url}")


async def list_prefix(session: aiohttp.ClientSession, base_url: str, prefix: str,
                      policy: RetryPolicy | None = None) -> Listing:
    """Every sub-directory and file directly under `prefix` (which must end with `/`)."""
    if not prefix.endswith("/"):
        prefix += "/"
    listing = Listing(prefix)
    marker: str | None = None
    while True:
        page = await fetch_page(session, page_url(base_url, prefix, marker), policy)
        listing.pages += 1
        listing.prefixes.extend(page.prefixes)
        listing.files.extend(page.files)
        if not page.is_truncated:
            break
        following = page.next_marker or page.last_entry
        if not following or (marker is not None and following <= marker) or listing.pages >= MAX_PAGES:
            raise BadListing(f"listing of {prefix} says it is truncated but gives no usable marker after {marker!r}")
        marker = following
    listing.prefixes = sorted(set(listing.prefixes))
    # Keyed by name so a repeated entry across pages (a server bug) counts once.
    listing.files = sorted({f.key: f for f in listing.files}.values(), key=lambda f: f.key)
    return listing
