"""The verified archive zips of one folder, with the size and mtime that identify their version.

"Verified" is the legacy `<zip>.verified` marker beside the zip: the archive stage writes it after
the SHA-256 matched, and a tree made by bhds.py has it too, so the marker alone is enough.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from bhds import paths


@dataclass(frozen=True)
class SourceZip:
    """One verified zip; (size, mtime_ns) changes whenever the file is replaced."""

    path: str
    name: str
    size: int
    mtime_ns: int

    @property
    def fingerprint(self) -> tuple[int, int]:
        return (self.size, self.mtime_ns)


def verified_zips(directory: Path) -> list[SourceZip]:
    """Verified `*.zip` files directly in `directory`, sorted by name; none when it does not exist."""
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    names = {entry.name for entry in entries}
    found = []
    for entry in entries:
        if not entry.name.endswith(".zip") or entry.name.startswith("."):
            continue
        if entry.name + paths.VERIFIED_SUFFIX not in names:  # the name paths.verified_marker gives
            continue
        try:
            stat = entry.stat()
        except FileNotFoundError:  # deleted while we looked (a concurrent verify)
            continue
        if entry.is_file():
            found.append(SourceZip(entry.path, entry.name, stat.st_size, stat.st_mtime_ns))
    return sorted(found, key=lambda z: z.name)


def kline_zip_day(name: str, symbol: str, interval: str) -> date | None:
    """The date of `<SYMBOL>-<interval>-YYYY-MM-DD.zip`, or None for any other name."""
    try:
        day = date.fromisoformat(name[-len("YYYY-MM-DD.zip"):-len(".zip")])
    except ValueError:
        return None
    return day if paths.kline_zip_name(symbol, interval, day) == name else None


def funding_zip_month(name: str, symbol: str) -> tuple[int, int] | None:
    """(year, month) of `<SYMBOL>-fundingRate-YYYY-MM.zip`, or None for any other name."""
    stem = name[-len("YYYY-MM.zip"):-len(".zip")]
    try:
        year, month = int(stem[:4]), int(stem[5:7])
    except ValueError:
        return None
    if not 1 <= month <= 12:
        return None
    return (year, month) if paths.funding_zip_name(symbol, year, month) == name else None
