"""Which datasets the store holds, their files per symbol, and each file's figures from its footer.

A dataset is one folder kind of one trade type (and interval, offset): parsed archive klines, API
klines, parsed and API funding, what `archive parse` wrote (kind = Binance's dataset name, as
`bhds.load(source=...)` takes it), generated results, resamples and bars built from trades. Figures (first and last time,
rows) come from the Parquet footer and row-group statistics, so listing a store opens no column.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bhds import storage
from bhds.errors import DataError, InputError
from bhds.paths import PARQUET_SUFFIX, Layout, list_files, list_subdirs, partition_month
from bhds.quality.inventory import result_symbol, split_index
from bhds.types import TradeType

TIME = "candle_begin_time"
FUNDING_TIME = "funding_time"

# Dataset kinds, in the order list-data shows them.
PARSED_KLINES = "parsed_klines"
API_KLINES = "api_klines"
FUNDING = "funding"
API_FUNDING = "api_funding"
RESULTS = "results"
RESAMPLED = "resampled"
TRADE_BARS = "trade_bars"
KINDS = (PARSED_KLINES, API_KLINES, FUNDING, API_FUNDING, RESULTS, RESAMPLED, TRADE_BARS)  # archive datasets after API_FUNDING

# Nanoseconds are the finest unit Parquet timestamps use; epoch ms = raw // divisor.
_MS_DIVISOR = {"s": None, "ms": 1, "us": 1_000, "ns": 1_000_000}


def trade_type_of(value: str | TradeType) -> TradeType:
    """The trade type, or a one-line InputError listing the known ones."""
    try:
        return TradeType(value)
    except ValueError:
        known = ", ".join(t.value for t in TradeType)
        raise InputError(f"trade type {value!r} is not known: use one of {known}", exit_code=2) from None


@dataclass(frozen=True)
class Dataset:
    """One folder kind of one trade type; `interval` and `offset` where the kind has them."""

    trade_type: TradeType
    kind: str
    interval: str | None = None
    offset: str | None = None

    @property
    def is_archive(self) -> bool:
        """A dataset `archive parse` wrote (monthly partitions per symbol)."""
        return self.kind not in KINDS

    @property
    def time_column(self) -> str:
        if self.is_archive:  # its first time column: `time` of trades, `open_time` of klines, ...
            from bhds.parse.datasets import csv_columns

            return next(c.name for c in csv_columns(self.trade_type.value, self.kind) if c.is_time)
        return FUNDING_TIME if self.kind in (FUNDING, API_FUNDING) else TIME

    def directory(self, layout: Layout) -> Path | None:
        """The one folder holding every file of the dataset; None for per-symbol folders (parsed, API klines)."""
        if self.kind == RESULTS:
            return layout.results_kline_dir(self.trade_type, self.interval or "")
        if self.kind == RESAMPLED:
            return layout.resampled_dir(self.trade_type, self.interval or "", self.offset or "")
        if self.kind == FUNDING:
            return layout.parsed_funding_dir(self.trade_type)
        if self.kind == API_FUNDING:
            return layout.api_funding_dir(self.trade_type)
        if self.kind == TRADE_BARS:
            return layout.trade_bars_dir(self.trade_type, self.interval or "")
        return None

    def files_by_symbol(self, layout: Layout) -> dict[str, list[Path]]:
        """Symbol -> its files: results and resamples in segment order (`SP0_`, `SP1_`, …, the plain name
        last), parsed partitions and API days in time order."""
        if self.kind in (PARSED_KLINES, API_KLINES):
            root = layout.parsed_kline_symbols_dir(self.trade_type) if self.kind == PARSED_KLINES else layout.api_kline_symbols_dir(self.trade_type)
            folder = layout.parsed_kline_dir if self.kind == PARSED_KLINES else layout.api_kline_dir
            out = {}
            for symbol in list_subdirs(root):
                files = list_files(folder(self.trade_type, symbol, self.interval or ""), PARQUET_SUFFIX)
                if files:
                    out[symbol] = files
            return out
        if self.is_archive:
            return _archive_files(layout, self.trade_type, self.kind, self.interval)
        directory = self.directory(layout)
        grouped: dict[str, list[Path]] = {}
        for path in list_files(directory, PARQUET_SUFFIX) if directory else []:
            grouped.setdefault(result_symbol(stem(path)), []).append(path)
        return {symbol: sorted(files, key=segment_order) for symbol, files in sorted(grouped.items())}


def _archive_files(layout: Layout, tt: TradeType, name: str, interval: str | None) -> dict[str, list[Path]]:
    """Symbol -> its monthly partitions (`YYYYMM.pqt`, in month order) of an `archive parse` dataset."""
    out = {}
    for symbol in list_subdirs(layout.parsed_dataset_symbols_dir(tt, name, interval)):
        files = [p for p in list_files(layout.parsed_dataset_dir(tt, name, symbol, interval), PARQUET_SUFFIX)
                 if partition_month(p.name)]
        if files:
            out[symbol] = sorted(files, key=lambda p: p.name)
    return out


def stem(path: Path) -> str:
    return path.name[: -len(PARQUET_SUFFIX)]


def segment_order(path: Path) -> tuple[int, int]:
    """`SP<i>_<SYM>` by i, then the plain `<SYM>` (the latest segment) last."""
    index = split_index(stem(path))
    return (1, 0) if index is None else (0, index)


def datasets(layout: Layout, trade_type: TradeType) -> list[Dataset]:
    """Every dataset of the trade type with at least one file, in `KINDS` order."""
    tt = TradeType(trade_type)
    found: list[Dataset] = []
    for kind, root, folder in ((PARSED_KLINES, layout.parsed_kline_symbols_dir(tt), layout.parsed_kline_dir),
                               (API_KLINES, layout.api_kline_symbols_dir(tt), layout.api_kline_dir)):
        intervals = {interval for symbol in list_subdirs(root) for interval in list_subdirs(root / symbol)
                     if list_files(folder(tt, symbol, interval), PARQUET_SUFFIX)}
        found += [Dataset(tt, kind, interval) for interval in sorted(intervals, key=interval_order)]
    for kind in (FUNDING, API_FUNDING):
        if list_files(Dataset(tt, kind).directory(layout), PARQUET_SUFFIX):  # type: ignore[arg-type]
            found.append(Dataset(tt, kind))
    found += archive_datasets(layout, tt)
    for interval in sorted(list_subdirs(layout.results_klines_root(tt)), key=interval_order):
        if list_files(layout.results_kline_dir(tt, interval), PARQUET_SUFFIX):
            found.append(Dataset(tt, RESULTS, interval))
    for interval in sorted(list_subdirs(layout.resampled_root(tt)), key=interval_order):
        for offset in sorted(list_subdirs(layout.resampled_interval_dir(tt, interval)), key=interval_order):
            if list_files(layout.resampled_dir(tt, interval, offset), PARQUET_SUFFIX):
                found.append(Dataset(tt, RESAMPLED, interval, offset))
    for interval in sorted(list_subdirs(layout.trade_bars_root(tt)), key=interval_order):
        if list_files(layout.trade_bars_dir(tt, interval), PARQUET_SUFFIX):
            found.append(Dataset(tt, TRADE_BARS, interval))
    return found


def archive_datasets(layout: Layout, tt: TradeType) -> list[Dataset]:
    """The datasets `archive parse` wrote for the trade type, in the archive catalogue's order
    (kline-like ones once per interval folder)."""
    from bhds.archive.catalog import datasets_of

    found = []
    for entry in datasets_of(tt):
        intervals = (sorted(list_subdirs(layout.parsed_dataset_symbols_dir(tt, entry.name)), key=interval_order)
                     if entry.has_interval else [None])
        found += [Dataset(tt, entry.name, interval) for interval in intervals
                  if _archive_files(layout, tt, entry.name, interval)]
    return found


def interval_order(text: str) -> tuple[int, str]:
    """1m < 5m < 1h < 1d by length (unknown spellings last, by name)."""
    from bhds.types import parse_interval

    try:
        interval = parse_interval(text, allow_zero=True)
    except InputError:
        return (1 << 62, text)
    length = 31 * 86_400_000 * interval.count if interval.is_calendar else interval.ms
    return (length, text)


@dataclass(frozen=True)
class FileFigures:
    """What a Parquet footer says about a file, plus its size and mtime."""

    path: Path
    first_ms: int | None
    last_ms: int | None
    rows: int
    bytes: int
    mtime_ns: int
    columns: tuple[str, ...]


def file_figures(path: Path, time_column: str = TIME) -> FileFigures:
    """First and last time and rows from the footer; the time column is decoded only when a row
    group has no min/max statistics (files written by other tools may lack them)."""
    import pyarrow as pa

    st = os.stat(path)
    try:
        meta = storage.parquet_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read {path} ({exc}): delete the file and run the step that writes it again") from exc
    columns = tuple(schema.names)
    if time_column not in columns or meta.num_rows == 0:
        return FileFigures(Path(path), None, None, meta.num_rows, st.st_size, st.st_mtime_ns, columns)
    field = schema.field(time_column)
    divisor = _MS_DIVISOR.get(field.type.unit) if pa.types.is_timestamp(field.type) else None
    index = meta.schema.names.index(time_column) if time_column in meta.schema.names else -1
    first = last = None
    for rg in range(meta.num_row_groups):
        group = meta.row_group(rg)
        if group.num_rows == 0:
            continue
        stats = group.column(index).statistics if index >= 0 else None
        if divisor is None or stats is None or not stats.has_min_max:
            first, last = _decoded_range(path, time_column)
            break
        low, high = int(stats.min_raw) // divisor, int(stats.max_raw) // divisor
        first = low if first is None else min(first, low)
        last = high if last is None else max(last, high)
    return FileFigures(Path(path), first, last, meta.num_rows, st.st_size, st.st_mtime_ns, columns)


def _decoded_range(path: Path, time_column: str) -> tuple[int | None, int | None]:
    import pyarrow.compute as pc

    from bhds.schema import TIMESTAMP

    times = storage.read_rows(path, columns=[time_column]).column(0).cast(TIMESTAMP)
    bounds = pc.min_max(times)
    low, high = bounds["min"], bounds["max"]
    if not low.is_valid:
        return None, None
    return low.cast("int64").as_py(), high.cast("int64").as_py()
