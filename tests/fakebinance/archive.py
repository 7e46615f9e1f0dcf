"""Write a universe as the data.binance.vision key layout on disk, and mutate it for tests.

`build_archive(universe, root)` writes `root/<S3 key>` for every daily kline zip (+ CHECKSUM),
every complete month of funding and the daily liquidation snapshots, plus `root/universe.json`
(so the server can rebuild the same series). Bytes are deterministic: a fixed member
date_time and fixed compression, so the CHECKSUMs are reproducible run after run.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import time
import zipfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .series import (
    INTERVAL_MS,
    LIQUIDATION_HEADER,
    Bars,
    day_bars,
    decimal_strings,
    format_columns,
    funding_rows,
    int_strings,
    liquidation_lines,
    minute_mask,
)
from .universe import SymbolSpec, Universe, day_ms

MARKET_ROOT = {"spot": "data/spot", "um": "data/futures/um", "cm": "data/futures/cm"}
KLINE_HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,"
                "taker_buy_volume,taker_buy_quote_volume,ignore")
FUNDING_HEADER = "calc_time,funding_interval_hours,last_funding_rate"
SPOT_MICROSECONDS_FROM = date(2025, 1, 1)
UNIVERSE_FILE = "universe.json"
COMPRESS_LEVEL = 6


# ---- keys --------------------------------------------------------------------------------

def kline_key(market: str, symbol: str, interval: str, d: date) -> str:
    return f"{MARKET_ROOT[market]}/daily/klines/{symbol}/{interval}/{symbol}-{interval}-{d.isoformat()}.zip"


def funding_key(market: str, symbol: str, year: int, month: int) -> str:
    return f"{MARKET_ROOT[market]}/monthly/fundingRate/{symbol}/{symbol}-fundingRate-{year:04d}-{month:02d}.zip"


def liquidation_key(market: str, symbol: str, d: date) -> str:
    return (f"{MARKET_ROOT[market]}/daily/liquidationSnapshot/{symbol}/"
            f"{symbol}-liquidationSnapshot-{d.isoformat()}.zip")


def archive_days(universe: Universe, spec: SymbolSpec) -> list[date]:
    """Days with an archive file: days with bars up to the publication cutoff, minus missing days."""
    last = min(spec.last_day, universe.last_archive_day)
    out = []
    d = spec.first_day
    missing = set(spec.archive_missing_days)
    while d <= last:
        if d not in missing and minute_mask(spec, d, archive=True).any():
            out.append(d)
        d += timedelta(days=1)
    return out


def complete_months(universe: Universe, spec: SymbolSpec) -> list[tuple[int, int]]:
    """Months (year, month) holding funding that are complete before the publication cutoff."""
    months = []
    y, m = spec.first_day.year, spec.first_day.month
    last_day = min(spec.last_day, universe.last_archive_day)
    while True:
        nxt = date(y + (m == 12), m % 12 + 1, 1)
        if nxt - timedelta(days=1) > universe.last_archive_day:
            break
        if date(y, m, 1) > last_day:
            break
        months.append((y, m))
        y, m = nxt.year, nxt.month
    return months


# ---- CSV text ----------------------------------------------------------------------------

def _join_lines(cols: list[pa.Array], header: str | None) -> bytes:
    if len(cols[0]) == 0:
        return (header + "\n").encode() if header else b""
    lines = pc.binary_join_element_wise(*cols, ",")
    body = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()), lines), "\n")
    text = body[0].as_py() + "\n"
    if header:
        text = header + "\n" + text
    return text.encode()


def kline_csv(spec: SymbolSpec, bars: Bars, interval: str, d: date) -> bytes:
    """Archive CSV of one day: spot headerless with 8 decimals (µs from 2025), futures headered."""
    n = len(bars)
    if spec.market == "spot":
        pd = qd = qq = 8
        header = None
        if d >= SPOT_MICROSECONDS_FROM:
            open_t = bars.open_time * 1000
            close_t = open_t + INTERVAL_MS[interval] * 1000 - 1
        else:
            open_t, close_t = bars.open_time, bars.close_time
    else:
        pd, qd, qq = bars.price_dec, bars.qty_dec, bars.quote_dec
        header = KLINE_HEADER
        open_t, close_t = bars.open_time, bars.close_time
    zero = np.zeros(n, dtype=np.int64)
    cols = format_columns([
        (open_t, 0, 0),
        (bars.open, bars.price_dec, pd),
        (bars.high, bars.price_dec, pd),
        (bars.low, bars.price_dec, pd),
        (bars.close, bars.price_dec, pd),
        (bars.volume, bars.qty_dec, qd),
        (close_t, 0, 0),
        (bars.quote_volume, bars.quote_dec, qq),
        (bars.count, 0, 0),
        (bars.taker_buy_volume, bars.qty_dec, qd),
        (bars.taker_buy_quote_volume, bars.quote_dec, qq),
        (zero, 0, 0),
    ])
    return _join_lines(cols, header)


def funding_csv(spec: SymbolSpec, year: int, month: int) -> tuple[bytes, int]:
    start = day_ms(date(year, month, 1))
    end = day_ms(date(year + (month == 12), month % 12 + 1, 1))
    rows = funding_rows(spec, start, end, with_mark=False)
    cols = [int_strings(rows.time_ms), int_strings(rows.interval_hours), decimal_strings(rows.rate, 8)]
    return _join_lines(cols, FUNDING_HEADER), len(rows)


# ---- zips and objects --------------------------------------------------------------------

def make_zip(member: str, data: bytes, date_time: tuple[int, int, int, int, int, int],
             level: int = COMPRESS_LEVEL) -> bytes:
    """One deflated member, deterministic bytes (level 6 gives Binance's sizes to the byte)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo(member, date_time=date_time)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.create_system = 3
        info.external_attr = 0o100644 << 16
        zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=level)
    return buf.getvalue()


def checksum_text(zip_bytes: bytes, zip_name: str) -> bytes:
    """`<sha256>  <name>` without a trailing newline, like Binance's."""
    return f"{hashlib.sha256(zip_bytes).hexdigest()}  {zip_name}".encode()


def _write(path: Path, data: bytes, mtime: float | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # a new inode: hard-linked copies of the archive stay untouched
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def _publication(d: date, hours: int = 6) -> tuple[float, tuple[int, int, int, int, int, int]]:
    dt = datetime(d.year, d.month, d.day, tzinfo=timezone.utc) + timedelta(hours=hours)
    return dt.timestamp(), (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second)


def write_zip_object(root: Path, key: str, csv_bytes: bytes, published: date, *,
                     checksum: bool = True, level: int = COMPRESS_LEVEL) -> int:
    """Write `key` (a .zip) and its .CHECKSUM, dated as published on `published`; returns zip size."""
    name = key.rsplit("/", 1)[-1]
    mtime, stamp = _publication(published)
    zip_bytes = make_zip(name[:-4] + ".csv", csv_bytes, stamp, level)
    _write(root / key, zip_bytes, mtime)
    if checksum:
        _write(root / (key + ".CHECKSUM"), checksum_text(zip_bytes, name), mtime)
    return len(zip_bytes)


# ---- build -------------------------------------------------------------------------------

@dataclass
class ArchiveSummary:
    """What `build_archive` wrote."""

    root: Path
    zips: int = 0
    checksums: int = 0
    zip_bytes: int = 0
    csv_bytes: int = 0
    kline_rows: int = 0
    funding_rows: int = 0
    files_by_kind: Counter = field(default_factory=Counter)  # "(market, kind)" -> zips
    seconds: float = 0.0

    def add(self, other: "ArchiveSummary") -> None:
        self.zips += other.zips
        self.checksums += other.checksums
        self.zip_bytes += other.zip_bytes
        self.csv_bytes += other.csv_bytes
        self.kline_rows += other.kline_rows
        self.funding_rows += other.funding_rows
        self.files_by_kind.update(other.files_by_kind)


def _build_symbol(universe: Universe, spec: SymbolSpec, root: Path, intervals: Sequence[str],
                  funding: bool, liquidation: bool, level: int) -> ArchiveSummary:
    out = ArchiveSummary(root=root)
    days = archive_days(universe, spec)
    for interval in intervals:
        if interval == "1s" and spec.market != "spot":
            continue
        for d in days:
            bars = day_bars(spec, interval, d, archive=True)
            if len(bars) == 0:
                continue  # halted all day: Binance publishes nothing
            csv = kline_csv(spec, bars, interval, d)
            out.zip_bytes += write_zip_object(root, kline_key(spec.market, spec.symbol, interval, d), csv,
                                              d + timedelta(days=1), level=level)
            out.zips += 1
            out.checksums += 1
            out.csv_bytes += len(csv)
            out.kline_rows += len(bars)
            out.files_by_kind[f"{spec.market}/klines/{interval}"] += 1
    if funding and spec.market != "spot" and spec.funding and spec.is_perpetual:
        for y, m in complete_months(universe, spec):
            csv, n = funding_csv(spec, y, m)
            if n == 0:
                continue
            nxt = date(y + (m == 12), m % 12 + 1, 1)
            out.zip_bytes += write_zip_object(root, funding_key(spec.market, spec.symbol, y, m), csv,
                                              nxt + timedelta(days=3), level=level)
            out.zips += 1
            out.checksums += 1
            out.csv_bytes += len(csv)
            out.funding_rows += n
            out.files_by_kind[f"{spec.market}/fundingRate"] += 1
    if liquidation and spec.market != "spot" and spec.liquidation:
        for d in days:
            lines = liquidation_lines(spec, d)
            if not lines:
                continue
            csv = (LIQUIDATION_HEADER + "\n" + "\n".join(lines) + "\n").encode()
            out.zip_bytes += write_zip_object(root, liquidation_key(spec.market, spec.symbol, d), csv,
                                              d + timedelta(days=1), level=level)
            out.zips += 1
            out.checksums += 1
            out.csv_bytes += len(csv)
            out.files_by_kind[f"{spec.market}/liquidationSnapshot"] += 1
    return out


def _build_task(args) -> ArchiveSummary:
    return _build_symbol(*args)


def build_archive(universe: Universe, root: Path, intervals: Iterable[str] = ("1m",),
                  markets: Iterable[str] | None = None, *, funding: bool = True,
                  liquidation: bool = True, jobs: int = 1,
                  compress_level: int = COMPRESS_LEVEL) -> ArchiveSummary:
    """Write the archive of `universe` under `root` (S3 keys as paths) plus `root/universe.json`.

    `intervals`: kline intervals written for every symbol (1s only for spot); `markets`: subset
    of spot/um/cm; `jobs` > 1 builds symbols in worker processes; `compress_level` 6 matches
    Binance's zip sizes, 1 is about four times faster (tests).
    """
    t0 = time.perf_counter()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    intervals = tuple(intervals)
    for i in intervals:
        if i not in INTERVAL_MS:
            raise ValueError(f"unknown interval {i!r}")
    wanted = set(markets) if markets is not None else None
    specs = [s for s in universe.symbols if wanted is None or s.market in wanted]
    (root / UNIVERSE_FILE).write_text(universe.to_json())
    summary = ArchiveSummary(root=root)
    tasks = [(universe, s, root, intervals, funding, liquidation, compress_level) for s in specs]
    if jobs > 1 and len(tasks) > 1:
        tasks.sort(key=lambda t: -len(archive_days(universe, t[1])))
        # spawn, not fork: the caller may run server threads (pytest) and fork would copy their locks
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for part in pool.map(_build_task, tasks):
                summary.add(part)
    else:
        for task in tasks:
            summary.add(_build_task(task))
    summary.seconds = time.perf_counter() - t0
    return summary


def load_universe(root: Path) -> Universe:
    return Universe.from_json((Path(root) / UNIVERSE_FILE).read_text())


# ---- mutations for tests -----------------------------------------------------------------

def _zip_key(key: str) -> str:
    return key[: -len(".CHECKSUM")] if key.endswith(".CHECKSUM") else key


def _next_mtime(previous: float | None) -> float:
    """A LastModified strictly later than before and than any download made until now.

    Steps of 2 s, the resolution of a zip member's date, so re-zipped bytes differ too.
    """
    stamp = float(int(time.time()) + 2)
    if previous is not None:
        stamp = max(stamp, float(int(previous) + 2))
    return stamp


def _bump_mtime(path: Path, previous: float | None) -> float:
    stamp = _next_mtime(previous)
    os.utime(path, (stamp, stamp))
    return stamp


def read_member(root: Path, key: str) -> bytes:
    """The CSV bytes inside the zip at `key`."""
    with zipfile.ZipFile(Path(root) / _zip_key(key)) as zf:
        return zf.read(zf.namelist()[0])


def corrupt_zip_keep_checksum(root: Path, key: str) -> None:
    """Damage the zip's compressed data (same size); the .CHECKSUM stays stale."""
    path = Path(root) / _zip_key(key)
    old = path.stat().st_mtime
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    for i in range(mid, min(mid + 32, len(data) - 30)):
        data[i] ^= 0xA5
    _write(path, bytes(data), None)
    _bump_mtime(path, old)


def corrupt_zip_with_valid_checksum(root: Path, key: str) -> None:
    """Damage the zip and publish a matching .CHECKSUM (the hash passes, the zip does not)."""
    zkey = _zip_key(key)
    corrupt_zip_keep_checksum(root, zkey)
    path = Path(root) / zkey
    _write(Path(root) / (zkey + ".CHECKSUM"), checksum_text(path.read_bytes(), path.name), None)
    _bump_mtime(Path(root) / (zkey + ".CHECKSUM"), path.stat().st_mtime - 1)


def remove_checksum(root: Path, key: str) -> None:
    """Delete the .CHECKSUM companion of `key`."""
    (Path(root) / (_zip_key(key) + ".CHECKSUM")).unlink()


def remove_key(root: Path, key: str) -> None:
    (Path(root) / key).unlink()


def reupload(root: Path, key: str, new: bytes | str | Sequence[Sequence[object]] | None = None) -> str:
    """Replace the zip at `key` with new content and a new .CHECKSUM; returns the new sha256.

    `new`: None re-zips the same CSV with a new member date (new bytes, same rows); zip bytes
    (starting with PK) are stored as they are; other bytes/str are the CSV text; a sequence of
    rows is joined with commas (the old header line is kept if the old CSV had one).
    """
    zkey = _zip_key(key)
    path = Path(root) / zkey
    old_csv = read_member(root, zkey) if path.exists() else b""
    old_mtime = path.stat().st_mtime if path.exists() else None
    mtime = _next_mtime(old_mtime)
    dt = datetime.fromtimestamp(mtime, tz=timezone.utc)
    stamp = (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second)
    if new is None:
        zip_bytes = make_zip(path.name[:-4] + ".csv", old_csv, stamp)
    elif isinstance(new, bytes) and new[:4] == b"PK\x03\x04":
        zip_bytes = new
    else:
        if isinstance(new, bytes):
            csv = new
        elif isinstance(new, str):
            csv = new.encode()
        else:
            lines = [",".join(str(v) for v in row) for row in new]
            first = old_csv.split(b"\n", 1)[0]
            if first[:1] and not first[:1].isdigit():
                lines.insert(0, first.decode())
            csv = ("\n".join(lines) + "\n").encode()
        zip_bytes = make_zip(path.name[:-4] + ".csv", csv, stamp)
    _write(path, zip_bytes, mtime)
    _write(Path(root) / (zkey + ".CHECKSUM"), checksum_text(zip_bytes, path.name), mtime)
    return hashlib.sha256(zip_bytes).hexdigest()


def reupload_corrected_hour(root: Path, key: str) -> str:
    """Re-upload a kline day with one hour (rows 600-659) of prices corrected by +1 %, as Binance does
    when it fixes a file; returns the new sha256."""
    rows = [line.split(",") for line in read_member(root, key).decode().splitlines() if line[:1].isdigit()]
    for row in rows[600:660]:
        row[1:5] = [f"{float(v) * 1.01:.8f}" for v in row[1:5]]
    return reupload(root, key, rows)
