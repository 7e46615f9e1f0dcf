"""What the store holds for a symbol, from directory listings and stat() only (no file is opened)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bhds import storage
from bhds.paths import (CHECKSUM_SUFFIX, PARQUET_SUFFIX, PART_SUFFIX, VERIFIED_SUFFIX, Layout, list_files, list_subdirs,
                        partition_month)
from bhds.quality.grid import day_number
from bhds.types import TradeType

_SPLIT_NAME = re.compile(r"^SP(\d+)_(.+)$")
_SETTLE_NS = 2_000_000_000


@dataclass(frozen=True)
class FileSig:
    """A file and what identifies its content for the cache: size, mtime and inode (an atomic replace
    gives a new inode even within one mtime tick)."""

    path: str
    size: int
    mtime_ns: int
    inode: int

    @property
    def key(self) -> list[object]:
        return [os.path.basename(self.path), self.size, self.mtime_ns, self.inode]


@dataclass
class KlineFiles:
    """A symbol's parsed monthly partitions and API day files for one interval."""

    symbol: str
    parsed: dict[str, FileSig] = field(default_factory=dict)  # "YYYYMM" -> partition
    api: dict[int, FileSig] = field(default_factory=dict)  # day number -> API day file
    bad_names: list[str] = field(default_factory=list)

    def months(self) -> list[str]:
        """Every month holding a partition or an API day, in order."""
        api_months = {_month_of_day(day) for day in self.api}
        return sorted(set(self.parsed) | api_months)

    def api_days_in(self, month: str) -> list[int]:
        return sorted(day for day in self.api if _month_of_day(day) == month)


@dataclass
class ArchiveFiles:
    """The daily zips of a symbol in the archive mirror."""

    days: list[int] = field(default_factory=list)
    verified: int = 0
    checksum_missing: int = 0
    partial_downloads: int = 0
    newest_mtime_ns: int | None = None
    dir_mtime_ns: int | None = None  # the listing is valid while the directory's mtime is unchanged

    def to_json(self) -> dict:
        """Days as [first, last] ranges: five years of dailies are one pair."""
        ranges: list[list[int]] = []
        for day in self.days:
            if ranges and day == ranges[-1][1] + 1:
                ranges[-1][1] = day
            else:
                ranges.append([day, day])
        return {"dir_mtime_ns": self.dir_mtime_ns, "days": ranges, "verified": self.verified,
                "checksum_missing": self.checksum_missing, "partial_downloads": self.partial_downloads,
                "newest_mtime_ns": self.newest_mtime_ns}

    @classmethod
    def from_json(cls, data: dict) -> ArchiveFiles:
        days = [day for first, last in data["days"] for day in range(first, last + 1)]
        return cls(days, data["verified"], data["checksum_missing"], data["partial_downloads"], data["newest_mtime_ns"],
                   data["dir_mtime_ns"])


def _month_of_day(day: int) -> str:
    return str(np.datetime64(day, "D").astype("datetime64[M]")).replace("-", "")


def discover_symbols(layout: Layout, trade_type: TradeType, interval: str) -> list[str]:
    """Symbols with anything for this interval: archive, parsed, API or results."""
    names: set[str] = set()
    for root_dir, directory_of in (
        (layout.aws_kline_symbols_dir(trade_type), lambda s: layout.aws_kline_dir(trade_type, s, interval)),
        (layout.parsed_kline_symbols_dir(trade_type), lambda s: layout.parsed_kline_dir(trade_type, s, interval)),
        (layout.api_kline_symbols_dir(trade_type), lambda s: layout.api_kline_dir(trade_type, s, interval)),
    ):
        names.update(s for s in list_subdirs(root_dir) if directory_of(s).is_dir())
    for path in list_files(layout.results_kline_dir(trade_type, interval), PARQUET_SUFFIX):
        names.add(result_symbol(path.name[: -len(PARQUET_SUFFIX)]))
    return sorted(names)


def result_symbol(name: str) -> str:
    """`SP3_LUNAUSDT` -> `LUNAUSDT`; a plain name is the symbol itself."""
    match = _SPLIT_NAME.match(name)
    return match.group(2) if match else name


def split_index(name: str) -> int | None:
    match = _SPLIT_NAME.match(name)
    return int(match.group(1)) if match else None


def kline_files(layout: Layout, trade_type: TradeType, symbol: str, interval: str) -> KlineFiles:
    """Parsed partitions `<YYYYMM>.pqt` and API day files `<YYYYMMDD>.pqt` of a symbol."""
    found = KlineFiles(symbol)
    for directory, api in ((layout.parsed_kline_dir(trade_type, symbol, interval), False),
                           (layout.api_kline_dir(trade_type, symbol, interval), True)):
        for entry in _parquet_entries(directory):
            stem = entry.name[: -len(PARQUET_SUFFIX)]
            sig = FileSig(entry.path, *_size_mtime(entry))
            if api:
                try:
                    found.api[day_number(stem)] = sig
                except ValueError:
                    found.bad_names.append(entry.path)
            elif partition_month(entry.name) is not None:
                found.parsed[stem] = sig
            else:
                found.bad_names.append(entry.path)
    return found


def _parquet_entries(directory: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(directory) as entries:
            return sorted((e for e in entries if e.name.endswith(PARQUET_SUFFIX) and not e.name.startswith(".") and e.is_file()),
                          key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _size_mtime(entry: os.DirEntry) -> tuple[int, int, int]:
    st = entry.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


def archive_files(layout: Layout, trade_type: TradeType, symbol: str, interval: str, *, cached: dict | None = None,
                  now_ns: int | None = None) -> ArchiveFiles:
    """Dates of `<SYM>-<interval>-YYYY-MM-DD.zip`, their markers, and the newest zip's mtime.

    Adding, removing or renaming an entry changes the directory's mtime, so a `cached` listing with
    the same directory mtime is reused. A directory changed in the last seconds is listed afresh
    and not marked reusable: a write within the same mtime tick could otherwise go unseen.
    """
    directory = layout.aws_kline_dir(trade_type, symbol, interval)
    found = ArchiveFiles()
    try:
        dir_fd = storage.open_dir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return found
    try:
        dir_mtime = os.fstat(dir_fd).st_mtime_ns
        settled = now_ns is None or now_ns - dir_mtime > _SETTLE_NS
        if cached and settled and cached.get("dir_mtime_ns") == dir_mtime:
            try:
                return ArchiveFiles.from_json(cached)
            except (KeyError, TypeError, ValueError):
                pass
        found.dir_mtime_ns = dir_mtime if settled else None
        names = os.listdir(dir_fd)
        present = set(names)
        prefix = f"{symbol}-{interval}-"
        cut = len(prefix)
        found.partial_downloads = sum(1 for name in names if name.endswith(PART_SUFFIX))
        zips = [name for name in names if name.endswith(".zip") and name.startswith(prefix)]
        days = _day_numbers([name[cut:-4] for name in zips])
        zips = [name for name, day in zip(zips, days) if day is not None]
        found.days = sorted(day for day in days if day is not None)
        found.verified = sum(1 for name in zips if name + VERIFIED_SUFFIX in present)
        found.checksum_missing = sum(1 for name in zips if name + CHECKSUM_SUFFIX not in present)
        newest = None
        for name in zips:
            try:  # relative to the open directory: no path to build or resolve per file
                mtime = os.stat(name, dir_fd=dir_fd).st_mtime_ns
            except OSError:
                continue
            if newest is None or mtime > newest:
                newest = mtime
    finally:
        os.close(dir_fd)
    found.newest_mtime_ns = newest
    return found


def _day_numbers(texts: list[str]) -> list[int | None]:
    """Day numbers of `YYYY-MM-DD` texts, None for any other text; in one numpy call when all are dates."""
    # numpy alone would also take ' 024-01-01' or '      2024': the shape is checked first.
    if texts and all(len(text) == 10 and text[4] == text[7] == "-" and text[:4].isdigit() for text in texts):
        try:
            return np.array(texts, dtype="datetime64[D]").astype(np.int64).tolist()
        except ValueError:
            pass
    out: list[int | None] = []
    for text in texts:
        try:
            out.append(day_number(text))
        except ValueError:
            out.append(None)
    return out


def result_files(layout: Layout, trade_type: TradeType, interval: str) -> dict[str, list[tuple[str, str]]]:
    """Symbol -> `(name, path)` of its generated files `SP<i>_<SYM>` and `<SYM>`, from one listing."""
    out: dict[str, list[tuple[str, str]]] = {}
    for path in list_files(layout.results_kline_dir(trade_type, interval), PARQUET_SUFFIX):
        name = path.name[: -len(PARQUET_SUFFIX)]
        out.setdefault(result_symbol(name), []).append((name, str(path)))
    return out
