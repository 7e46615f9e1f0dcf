"""One symbol, end to end: list its files, read (or reuse) each month, stitch, add funding and segments.

Runs in a worker process: the task carries everything it needs and the result is plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bhds import storage
from bhds.errors import DataError
from bhds.paths import Layout
from bhds.quality import cache, footer, inventory
from bhds.quality.funding import funding_figures
from bhds.quality.grid import Grid
from bhds.quality.pieces import PieceStats, month_stats, read_piece
from bhds.quality.record import build_record
from bhds.quality.segments import Segment, read_segment
from bhds.quality.series import DayView, SeriesFigures, day_view, stitch
from bhds.types import TradeType, parse_interval


@dataclass(frozen=True)
class SymbolTask:
    data_dir: str
    trade_type: TradeType
    interval: str
    symbol: str
    files: inventory.KlineFiles
    results: list[tuple[str, str]]  # (name, path) of the generated segments
    cached: cache.Entries
    cached_archive: dict | None
    now_ns: int
    yesterday: int  # day number
    last_modified_ms: int | None
    api_empty_days: tuple[int, ...] = ()  # recorded by the API stage in the state DB
    deep: bool = False  # decode every file and check the footer summaries against the rows


@dataclass
class SymbolResult:
    record: dict
    view: DayView | None
    entries: cache.Entries
    archive: dict | None = None
    files_read: int = 0
    rows_read: int = 0
    bytes_read: int = 0
    summaries_used: int = 0  # months taken from a partition's footer instead of decoding it
    errors: list[str] = field(default_factory=list)


def analyse_symbol(task: SymbolTask) -> SymbolResult:
    layout = Layout(Path(task.data_dir))
    grid = Grid(parse_interval(task.interval))
    files = task.files
    errors = [f"{path}: not a parsed partition or API day file name" for path in files.bad_names]
    entries: cache.Entries = {}
    pieces: list[PieceStats] = []
    files_read = rows_read = bytes_read = summaries_used = 0

    for month, signature in cache.month_signatures(files).items():
        partition = files.parsed.get(month)
        api = [(day, files.api[day]) for day in files.api_days_in(month)]
        sigs = ([partition] if partition else []) + [sig for _, sig in api]
        stats = None if task.deep else cache.lookup(task.cached, month, signature)
        if stats is not None:
            pieces.append(stats)
            entries[month] = task.cached[month]
            continue
        # A month of the archive alone is summarised in its partition's footer; with API days the
        # rows must be merged, so it is decoded (usually only the last month or two).
        metadata = _footer(partition.path) if partition else None
        if metadata is not None and not api and not task.deep:
            stats = footer.stored_stats(metadata, task.interval)
            summaries_used += stats is not None
        if stats is None:
            try:
                stats, rows, partition_rows = read_piece(partition.path if partition else None,
                                                         [(day, sig.path) for day, sig in api], grid)
            except DataError as exc:
                errors.append(str(exc))
                continue
            files_read += len(sigs)
            rows_read += rows
            bytes_read += sum(sig.size for sig in sigs)
            if partition:
                stats.parse_duplicates = footer.parse_duplicates(metadata) if metadata is not None else None
            if task.deep and metadata is not None and partition_rows is not None and footer.has_summary(metadata, task.interval):
                alone = stats if not api else month_stats(partition_rows, [], grid)
                stored = footer.stored_stats(metadata, task.interval)
                if stored is None or stored != replace(alone, parse_duplicates=stored.parse_duplicates):
                    errors.append(f"{partition.path}: the summary in its footer disagrees with its rows: "
                                  "run parse with --force-update for this symbol")
        entries[month] = {"sig": signature, "stats": stats.to_json()}
        pieces.append(stats)

    fig = stitch(pieces, grid)
    fig.api_empty_days.update(task.api_empty_days)
    archive = inventory.archive_files(layout, task.trade_type, task.symbol, task.interval,
                                      cached=None if task.deep else task.cached_archive, now_ns=task.now_ns)
    view = day_view(fig, grid, archive.days)

    segments: list[Segment] = []
    for name, path in task.results:
        try:
            segments.append(read_segment(name, Path(path)))
        except DataError as exc:
            errors.append(str(exc))

    funding = None
    if TradeType(task.trade_type).is_futures:
        parsed_f = layout.parsed_funding_file(task.trade_type, task.symbol)
        api_f = layout.api_funding_file(task.trade_type, task.symbol)
        try:
            funding = funding_figures(parsed_f if parsed_f.is_file() else None, api_f if api_f.is_file() else None)
        except DataError as exc:
            errors.append(str(exc))

    record = build_record(
        task.symbol, grid, fig, view, archive, segments, funding,
        yesterday=task.yesterday,
        last_modified_ms=task.last_modified_ms,
        errors=errors,
    )
    listing = archive.to_json() if archive.dir_mtime_ns is not None else None
    return SymbolResult(record, view, entries, listing, files_read, rows_read, bytes_read, summaries_used, errors)


def failed_result(task: SymbolTask, message: str) -> SymbolResult:
    """The record of a symbol whose analysis failed: nothing known but the error."""
    grid = Grid(parse_interval(task.interval))
    record = build_record(task.symbol, grid, SeriesFigures(), None, inventory.ArchiveFiles(), [], None,
                          yesterday=task.yesterday, last_modified_ms=task.last_modified_ms, errors=[message])
    return SymbolResult(record, None, {}, errors=[message])


def _footer(path: str) -> pq.FileMetaData | None:
    """The partition's Parquet footer; None when unreadable (decoding it then names the problem)."""
    try:
        return storage.parquet_metadata(path)
    except (OSError, pa.ArrowException):
        return None
