"""Decide, per listed key, whether the local mirror already has it: the diff behind every download.

Inputs are the listing of one directory, a scan of its local copy and the manifest rows under
it; nothing here touches the network. A zip travels with its `.CHECKSUM` as one pair.

  skip   the manifest row matches the listing (size, LastModified) and the local file is there
  adopt  no row yet, but the local copy has the listed size, is not older than the listed
         LastModified, and carries the legacy `.verified` marker (trees made by bhds.py)
  check  the same without a marker: hash it locally before trusting it
  fetch  anything else: missing, re-uploaded (row differs from the listing), or partial
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bhds import storage
from bhds.archive.listing import ArchiveFile
from bhds.archive.manifest import Record
from bhds.paths import CHECKSUM_SUFFIX, PART_SUFFIX, VERIFIED_SUFFIX

SKIP, ADOPT, CHECK, FETCH = "skip", "adopt", "check", "fetch"
# File systems and copies round mtimes; a second of slack keeps a fresh copy from looking stale.
MTIME_SLACK_S = 1.0


@dataclass(frozen=True)
class LocalFile:
    size: int
    mtime: float


NO_STAT = LocalFile(0, 0.0)


@dataclass(frozen=True)
class Unit:
    """One thing to do: a zip with its CHECKSUM (either may be None) or a lone key."""

    action: str
    main: ArchiveFile
    checksum: ArchiveFile | None = None

    @property
    def is_zip(self) -> bool:
        return self.main.key.endswith(".zip")

    @property
    def keys(self) -> int:
        return 1 + (self.checksum is not None)


@dataclass
class Plan:
    units: list[Unit] = field(default_factory=list)

    def count(self, action: str) -> int:
        """How many keys (not units) are planned for `action`."""
        return sum(unit.keys for unit in self.units if unit.action == action)

    def of(self, action: str) -> list[Unit]:
        return [unit for unit in self.units if unit.action == action]


def scan_dir(directory: Path, *, sizes: bool = True, sweep: bool = True) -> tuple[dict[str, LocalFile], int]:
    """The files directly in `directory` by name, after deleting `.part` leftovers of killed runs.

    With `sizes=False` no file is stat'ed (size and mtime read 0): enough to see which exist.
    With `sweep=False` leftovers are passed over, not deleted (a dry run writes nothing).
    """
    found: dict[str, LocalFile] = {}
    swept = 0
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return found, 0
    for entry in entries:
        if entry.name.endswith(PART_SUFFIX):
            if not sweep:
                continue
            swept += storage.remove(entry.path)
            continue
        try:
            if not entry.is_file():
                continue
            if not sizes:
                found[entry.name] = NO_STAT
                continue
            stat = entry.stat()
        except FileNotFoundError:
            continue
        found[entry.name] = LocalFile(stat.st_size, stat.st_mtime)
    return found, swept


def listed_epoch(last_modified: str | None) -> float | None:
    """Seconds since the epoch of an S3 LastModified (`2025-01-11T08:06:34.000Z`), None if unreadable."""
    if not last_modified:
        return None
    try:
        return datetime.fromisoformat(last_modified.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _older_than_listing(local: LocalFile, listed: ArchiveFile) -> bool:
    uploaded = listed_epoch(listed.last_modified)
    return uploaded is not None and local.mtime + MTIME_SLACK_S < uploaded


def _current(record: Record | None, listed: ArchiveFile, local: LocalFile | None) -> bool:
    return (
        record is not None
        and local is not None
        and record.size == listed.size == local.size
        and record.last_modified == listed.last_modified
    )


def _unrecorded(record: Record | None) -> bool:
    # No row, or a row written by `verify` before any listing told us the server's attributes.
    return record is None or record.last_modified is None


def _plan_pair(zf: ArchiveFile, cf: ArchiveFile | None, local: dict[str, LocalFile], records: dict[str, Record],
               markers: bool) -> str:
    zip_local = local.get(zf.name)
    sum_local = local.get(cf.name) if cf else None
    if _current(records.get(zf.key), zf, zip_local) and (cf is None or _current(records.get(cf.key), cf, sum_local)):
        return SKIP
    usable = (
        _unrecorded(records.get(zf.key))
        and zip_local is not None
        and zip_local.size == zf.size
        and not _older_than_listing(zip_local, zf)
        and (cf is None or (sum_local is not None and sum_local.size == cf.size))
    )
    if not usable:
        return FETCH
    if markers and cf is not None and zf.name + VERIFIED_SUFFIX in local:
        return ADOPT
    return CHECK


def _plan_single(f: ArchiveFile, local: dict[str, LocalFile], records: dict[str, Record]) -> str:
    here = local.get(f.name)
    if _current(records.get(f.key), f, here):
        return SKIP
    if _unrecorded(records.get(f.key)) and here is not None and here.size == f.size and not _older_than_listing(here, f):
        return ADOPT
    return FETCH


def plan_directory(files: list[ArchiveFile], local: dict[str, LocalFile], records: dict[str, Record], *,
                   markers: bool) -> Plan:
    """Pair each zip with its CHECKSUM and decide what to do with every listed key."""
    by_name = {f.name: f for f in files}
    paired: set[str] = set()
    plan = Plan()
    for f in files:
        if not f.name.endswith(".zip"):
            continue
        checksum = by_name.get(f.name + CHECKSUM_SUFFIX)
        paired.add(f.name)
        if checksum is not None:
            paired.add(checksum.name)
        plan.units.append(Unit(_plan_pair(f, checksum, local, records, markers), f, checksum))
    for f in files:
        if f.name not in paired:
            plan.units.append(Unit(_plan_single(f, local, records), f))
    return plan


NEW, UPDATED, TO_CHECK = "new", "updated", "check"


@dataclass(frozen=True)
class Preview:
    """What a real run would do with one listed zip (or lone key): fetch it, or hash a local copy."""

    change: str  # NEW, UPDATED or TO_CHECK
    main: ArchiveFile
    size: int  # bytes a download would fetch: the zip and its CHECKSUM
    keys: int  # files a download would fetch: 2 with a CHECKSUM, else 1


def preview_directory(files: list[ArchiveFile], local: dict[str, LocalFile], records: dict[str, Record], *,
                      markers: bool) -> list[Preview]:
    """The units of `plan_directory` that are not skipped, told apart as new, updated or to check."""
    out = []
    for unit in plan_directory(files, local, records, markers=markers).units:
        if unit.action in (SKIP, ADOPT):
            continue
        size = unit.main.size + (unit.checksum.size if unit.checksum is not None else 0)
        if unit.action == CHECK:
            change = TO_CHECK
        else:
            change = UPDATED if unit.main.name in local or unit.main.key in records else NEW
        out.append(Preview(change, unit.main, size, unit.keys))
    return out
