"""Extend a symbol's latest result file by the months that changed, instead of rebuilding its history.

The daily case: a new day lands in the current month's partition (or starts a new one). Every
result row depends only on rows at or before it (the fill carries the last close forward, the
VWAP and funding are per candle, a gap is judged between a traded candle and the traded one
before it), so rows before the first changed month stay what they were. The latest file keeps
its row groups (one per month, `output.write_months`) up to there as raw bytes; the months from
there on are computed from the partitions and API days and encoded alone, then spliced in
(`splice`). A full build writes the same groups with the same settings, so it gives the same file.

Whenever that is not certain, `extend` returns None and the symbol is built from scratch:
different options, an input of an earlier month changed or vanished, an older file without the
record or month groups, a new gap (it would split the latest file), no traded candle on either
side of the boundary, funding of the kept months or earlier segments that would differ, calendar intervals.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa

from bhds import storage
from bhds.generate import frame
from bhds.generate.builds import FileStat, file_stat
from bhds.generate.frame import FUNDING, TIME, Columns
from bhds.generate.funding import funding_on_grid
from bhds.generate.gaps import fill, gap_starts
from bhds.generate.grid import month_start_ms, months_since_epoch
from bhds.generate.jobs import KlineJob, TaskResult
from bhds.generate.merge import merge, traded, vwap
from bhds.generate.output import group_time_ranges, write_extended
from bhds.generate.splice import SpliceError
from bhds.paths import PARQUET_SUFFIX, parquet_in
from bhds.schema import KLINE_SCHEMA, vwap_column
from bhds.types import DAY_MS, Interval, TradeType

log = logging.getLogger("bhds.generate")

Events = tuple[np.ndarray, np.ndarray]


def _month_of_name(name: str) -> int | None:
    """Epoch ms of the month an input file covers (`YYYYMM.pqt` partition, `YYYYMMDD.pqt` API day)."""
    stem = name[: -len(PARQUET_SUFFIX)] if name.endswith(PARQUET_SUFFIX) else name
    if not stem.isdigit() or len(stem) not in (6, 8):
        return None
    month = np.datetime64(f"{stem[:4]}-{stem[4:6]}", "M")
    return int(month.astype("datetime64[ms]").astype(np.int64))


def first_changed_ms(old: list[list], new: list[list]) -> int | None:
    """Start of the first month whose input files differ between two `files_signature` lists.

    Returns a time after every month when nothing differs, None when a name is not a month or day file.
    """
    before = {name: tuple(rest) for name, *rest in old}
    after = {name: tuple(rest) for name, *rest in new}
    changed = np.iinfo(np.int64).max
    for name in before.keys() | after.keys():
        if before.get(name) != after.get(name):
            month = _month_of_name(name)
            if month is None:
                return None
            changed = min(changed, month)
    return int(changed)


def _read_rows(paths: list[Path], since_ms: int) -> Columns | None:
    """The kline rows of `paths` from `since_ms` on, as one frame."""
    parts = []
    for path in paths:
        with storage.ParquetColumns(path) as source:
            cols = frame.from_table(source.read(KLINE_SCHEMA))
        keep = cols[TIME] >= since_ms
        if not keep.all():
            cols = frame.take(cols, keep)
        if len(cols[TIME]):
            parts.append(cols)
    return frame.concat(parts) if parts else None


# How many earlier versions of a latest file `lineage` remembers: a week of daily runs between two resamples
# (each costs ~35 bytes per symbol in the record every run loads: 1 MB for the full archive).
LINEAGE_DEPTH = 8


def lineage(old: dict, old_stat: FileStat | None, keep: int) -> list[list]:
    """`[[size, mtime_ns], groups]` for each earlier version of the extended file: its first `groups`
    row groups are byte for byte the new file's. `resample-type` keeps its bars from those (`resample_extend`)."""
    if old_stat is None:
        return []
    earlier = [[stat, min(int(groups), keep)] for stat, groups in old.get("lineage", [])]
    return [[list(old_stat), keep], *earlier][:LINEAGE_DEPTH]


def _column(table: pa.Table, name: str) -> np.ndarray:
    return frame.to_numpy(table.column(name))


def extend(job: KlineJob, interval: Interval, archive_files: list[Path], api_files: list[Path], record: dict,
           events: Events | None) -> TaskResult | None:
    """Write the symbol's files into `job.out_dir` by extending its latest file; None when a full build is needed."""
    if interval.is_calendar or DAY_MS % interval.ms or job.symbol not in job.previous or job.previous_dir is None:
        return None
    latest = parquet_in(job.previous_dir, job.symbol)
    try:
        source = storage.open_parquet(latest)
        latest_stat = file_stat(latest)  # before `kline` (one symbol, in place) replaces it
    except (OSError, pa.ArrowException):
        return None
    old = job.previous_inputs
    if not old or old.get("options") != record["options"]:
        return None
    changed = [first_changed_ms(old.get("parsed", []), record["parsed"]), first_changed_ms(old.get("api", []), record["api"])]
    if None in changed:
        return None
    groups = source.metadata.num_row_groups
    ranges = group_time_ranges(source.metadata)
    if ranges is None:
        return None
    starts = ranges[0].tolist()
    # Keep the months before the first changed one, and never the last month (its end may move).
    keep = sum(1 for i in range(1, groups) if starts[i] <= min(changed)) if groups > 1 else 0
    keep = min(keep, groups - 1)
    if keep < 1:
        return None
    since = starts[keep]
    if since != int(month_start_ms(months_since_epoch(np.array([since], dtype=np.int64)))[0]):
        return None

    # The boundary: the latest traded candle before `since`, and the close carried past it.
    last_month = source.read_row_group(keep - 1, columns=[TIME, "close", "volume"])
    times, closes, volumes = (_column(last_month, n) for n in (TIME, "close", "volume"))
    if not len(times) or int(times[-1]) + interval.ms != since:
        return None
    traded_before = np.flatnonzero(volumes > 0)
    if not len(traded_before):
        return None  # the gap scan would need to look further back
    previous_time, carried_close = int(times[traded_before[-1]]), float(closes[-1])

    if events is not None:
        # Funding of the kept months must be what it would be now (a funding file is rewritten whole).
        kept = source.read_row_groups(range(keep), columns=[TIME, FUNDING])
        if not np.array_equal(funding_on_grid(_column(kept, TIME), interval, events), _column(kept, FUNDING)):
            return None
        # So must that of the earlier segments, which are carried over as they are.
        for name in job.previous:
            if name == job.symbol:
                continue
            try:
                earlier = storage.open_parquet(parquet_in(job.previous_dir, name)).read(columns=[TIME, FUNDING])
            except (OSError, KeyError, pa.ArrowException):
                return None
            if not np.array_equal(funding_on_grid(_column(earlier, TIME), interval, events), _column(earlier, FUNDING)):
                return None

    months = [_month_of_name(p.name) for p in archive_files]
    if None in months:
        return None
    # A partition holds the rows of its month only (parse keeps them so), so earlier ones are not read.
    archive = _read_rows([p for p, month in zip(archive_files, months) if month >= since], since)
    if archive is None:
        return None
    cols = merge(archive, _read_rows(api_files, since))
    present = traded(cols)
    rows = np.flatnonzero(present)
    if not len(rows):
        return None
    if job.split_gaps:
        t = np.concatenate([[previous_time], cols[TIME][rows]])
        opens = np.concatenate([[np.nan], cols["open"][rows]])
        closes_traded = np.concatenate([[carried_close], cols["close"][rows]])
        if len(gap_starts(t, opens, closes_traded, min_days=job.min_days, min_price_chg=job.min_price_chg, interval=interval)):
            return None  # a new gap splits the latest file: rebuild
    end = int(rows[-1]) + 1

    vwap_name = vwap_column(job.interval) if job.with_vwap else None
    if vwap_name:
        cols[vwap_name] = vwap(cols, contract_size=job.contract_size if job.trade_type is TradeType.cm_futures else None)
    # A traded candle just before `since` carrying the close, so the fill starts from it; dropped after.
    seed = {name: np.array([carried_close if name in ("open", "high", "low", "close") else 0], dtype=values.dtype)
            for name, values in cols.items()}
    seed[TIME][0] = since - interval.ms
    tail = frame.concat([seed, frame.take(cols, slice(0, end))])
    filled, candles = fill(tail, np.concatenate([[True], present[:end]]), interval, vwap_name)
    filled, candles = frame.take(filled, slice(1, None)), candles[1:]
    schema = frame.result_schema(job.interval, with_vwap=vwap_name is not None, with_funding=events is not None)
    if events is not None:
        filled[FUNDING] = funding_on_grid(candles, interval, events)
    if not source.schema_arrow.equals(schema, check_metadata=False):
        return None

    try:
        size = write_extended(latest, keep, frame.to_table(filled, schema), parquet_in(job.out_dir, job.symbol))
    except SpliceError as exc:
        log.debug("%s: cannot extend (%s), building it again", job.symbol, exc)
        return None

    result = TaskResult(job.symbol, extended=True, inputs={**record, "lineage": lineage(old, latest_stat, keep)})
    for name in job.previous:  # the earlier segments lie before the latest file: unchanged
        if name == job.symbol:
            continue
        if job.out_dir != job.previous_dir:
            storage.link_or_copy(parquet_in(job.previous_dir, name), parquet_in(job.out_dir, name))
        result.files.append(name)
    result.files.append(job.symbol)
    result.rows = len(candles)
    result.bytes = size
    return result
