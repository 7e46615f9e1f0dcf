"""Worker-process entry points: rebuild one kline month partition, rebuild one funding file.

Tasks and results are small picklable records. Workers read zips and write their own output
file (atomically, through `bhds.storage`); they never touch the state database and never log:
the main process records what they return.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from bhds.errors import DataError
from bhds.parse import checks, funding, klines, partitions
from bhds.parse.sources import SourceZip
from bhds.parse.tasks import CHANGED, DONE, NEW, DaySource, FundingResult, FundingTask, MonthResult, MonthTask
from bhds.parse.timeline import DAY_MS, month_window
from bhds.parse.zipcsv import BadSourceFile, csv_body
from bhds.quality import footer
from bhds.schema import KLINE_SCHEMA, PARSED_FUNDING_SCHEMA
from bhds.storage import parquet_metadata, read_bytes, read_table, write_table, write_table_numeric


def _read_bodies(sources: list[SourceZip], result: MonthResult | FundingResult) -> Iterator[tuple[str, bytes]]:
    """Yield (name, CSV rows) of each zip, recording unreadable ones as failures."""
    for source in sources:
        try:
            data = read_bytes(source.path)
        except OSError as exc:
            result.failures.append((source.name, f"cannot read the file ({exc.strerror or exc})"))
            continue
        result.bytes_read += len(data)
        try:
            yield source.name, csv_body(data)
        except BadSourceFile as exc:
            result.failures.append((source.name, str(exc)))


def _existing(path: Path, schema: pa.Schema) -> tuple[pa.Table | None, int, str]:
    """(table, mtime_ns, problem) of an existing output file; (None, 0, "") when there is none."""
    try:
        mtime_ns = path.stat().st_mtime_ns
    except FileNotFoundError:
        return None, 0, ""
    try:
        return read_table(path, schema), mtime_ns, ""
    except DataError as exc:
        return None, 0, str(exc)
    except FileNotFoundError:
        return None, 0, ""


def update_month(task: MonthTask) -> MonthResult:
    """Parse the month's new and changed zips and merge them into its partition."""
    result = MonthResult()
    path = Path(task.partition)
    old, old_mtime_ns = None, 0
    if not task.rebuild:
        old, old_mtime_ns, result.partition_was_unreadable = _existing(path, KLINE_SCHEMA)

    to_parse: list[DaySource] = []
    legacy_days: set[int] | None = None
    for source in task.sources:
        if old is None or source.status == CHANGED:
            to_parse.append(source)
        elif source.status == DONE:
            result.unchanged += 1
        elif source.status == NEW:
            # A tree written by bhds.py has partitions but no ledger: a day it already holds is done,
            # unless the zip arrived after the partition was written.
            if legacy_days is None:
                legacy_days = partitions.days_with_rows(old)
            if source.day_ms // DAY_MS in legacy_days and source.zip.mtime_ns <= old_mtime_ns:
                result.adopted.append(source.zip)
            else:
                to_parse.append(source)
    if not to_parse:
        return result

    table, bad_files, row_sources = klines.parse_many(_read_bodies([s.zip for s in to_parse], result))
    result.failures.extend(bad_files)
    times = partitions.time_values(table)  # once: checks, owner, month window, strays and duplicates all use it
    screened = checks.screen_days(table, times, row_sources, {s.zip.name: s.day_ms for s in to_parse}, task.interval)
    result.failures.extend(screened.refused)
    result.rejected = screened.rejected
    result.rows_rejected = screened.rows_rejected
    owned = screened.owned
    if screened.keep is not None:
        table, times = table.filter(pa.array(screened.keep)), times[screened.keep]
    failed = {name for name, _ in result.failures}
    parsed = [s for s in to_parse if s.zip.name not in failed]
    if not parsed:
        return result
    result.parsed = [s.zip for s in parsed]
    result.rows_parsed = table.num_rows
    start, end = month_window(task.year, task.month)
    keep = (times >= start) & (times < end)
    inside = table
    if not keep.all():
        inside, times, owned = table.filter(pa.array(keep)), times[keep], owned[keep]
    result.rows_outside = table.num_rows - inside.num_rows
    # A re-parsed file replaces its whole day, so rows a corrected file no longer has do not linger.
    base, kept_days = None, None
    if old is not None:
        base = partitions.without_windows(old, [(s.day_ms, s.day_ms + DAY_MS) for s in parsed])
    elif task.rebuild and failed:
        # --force-update rebuilds from the zips, but a file that cannot be used keeps its day's rows.
        previous, _, _ = _existing(path, KLINE_SCHEMA)
        kept_days = {s.day_ms // DAY_MS for s in to_parse if s.zip.name in failed}
        if previous is not None:
            base = partitions.within_windows(previous, [(day * DAY_MS, (day + 1) * DAY_MS) for day in kept_days])
    # A row a file holds for another day (Binance's dailies rarely have one) is dropped when that
    # day has a zip of its own, and otherwise fills in only what the partition lacks: so a full
    # parse and a re-parse of any one day agree, whatever order the files come in.
    if owned.all():
        merged = partitions.merge(base, inside)
    else:
        file_days = np.array(sorted({s.day_ms for s in task.sources}), dtype=np.int64)
        orphan_day = ~np.isin(times - times % DAY_MS, file_days)
        strays, own = inside.filter(pa.array(~owned & orphan_day)), inside.filter(pa.array(owned))
        result.rows_outside += int((~owned & ~orphan_day).sum())
        parts = [t for t in (strays, base, own) if t is not None and t.num_rows]
        merged = partitions.dedup_sorted(pa.concat_tables(parts)) if parts else own  # the last copy of a time wins
    new_duplicates = footer.repeated_times_by_day(times)
    result.duplicates_dropped = sum(new_duplicates.values())
    kept_duplicates = _recorded_duplicates(path) if base is not None and base.num_rows else {}
    if kept_duplicates and kept_days is not None:
        kept_duplicates = {day: n for day, n in kept_duplicates.items() if day in kept_days}
    duplicates = _duplicates_after(kept_duplicates, {s.day_ms // DAY_MS for s in parsed}, new_duplicates)
    if old is not None and merged.equals(old) and duplicates == _recorded_duplicates(path):
        # Nothing new (rows and footer summary alike): a file with rejected rows is parsed again on
        # every run to report them again, but the partition keeps its bytes and mtime, so generate
        # sees nothing changed.
        return result
    # The month summary rides in the footer, so `quality report` need not decode the file.
    merged = footer.with_summary(merged, task.interval, duplicates)
    # Without dictionary pages: prices rarely repeat, and the write is ~2.5× faster and smaller.
    result.bytes_written = write_table_numeric(merged, path)
    result.rows_written = merged.num_rows
    result.written = True
    return result


def _recorded_duplicates(path: Path) -> dict[int, int] | None:
    """Per-day duplicate counts an earlier run stored in the partition's footer; None if it has none."""
    try:
        return footer.duplicates_by_day(parquet_metadata(path))
    except (OSError, pa.ArrowException):
        return None


def _duplicates_after(kept: dict[int, int] | None, reparsed_days: set[int], new: dict[int, int]) -> dict[int, int] | None:
    """The partition's per-day duplicate counts after re-parsing `reparsed_days` into it.

    Counts of days kept from the old partition carry over; re-parsed days get the new counts.
    Unknown (None) when the old partition kept rows but recorded no counts (an older writer).
    """
    if kept is None:
        return None
    counts = {day: n for day, n in kept.items() if day not in reparsed_days}
    counts.update(new)
    return counts


def build_funding(task: FundingTask) -> FundingResult:
    """Parse every zip, de-duplicate by funding time (later file wins), sort and write the file.

    Each parsed zip replaces its month. Months of the previous file that no zip replaced (a zip
    that failed, or one deleted since) are kept, so a bad file never loses history.
    """
    result = FundingResult()
    tables = []
    month_of = {z.name: (year, month) for z, year, month in task.sources}
    for name, body in _read_bodies([z for z, _, _ in task.sources], result):
        try:
            table = funding.parse_rows(body)
        except BadSourceFile as exc:
            result.failures.append((name, str(exc)))
            continue
        misfit = checks.funding_outside_month(partitions.time_values(table, "funding_time"), *month_of[name])
        if misfit:
            result.failures.append((name, f"{misfit}; the month keeps the rows it had"))
        else:
            tables.append(table)
    failed = {name for name, _ in result.failures}
    result.parsed = [z for z, _, _ in task.sources if z.name not in failed]
    new = pa.concat_tables(tables) if tables else funding.empty()
    result.rows_parsed = new.num_rows
    old, _, _ = _existing(Path(task.output), PARSED_FUNDING_SCHEMA)
    parts = []
    if old is not None:
        replaced = [month_window(y, m) for z, y, m in task.sources if z.name not in failed]
        kept = partitions.without_windows(old, replaced, column="funding_time")
        result.rows_kept = kept.num_rows
        parts.append(kept)
    parts.append(new)
    if not result.parsed:
        return result  # nothing new: the previous file stays as it is
    merged = partitions.dedup_sorted(pa.concat_tables(parts), column="funding_time").combine_chunks()
    result.bytes_written = write_table(merged, Path(task.output))
    result.rows_written = merged.num_rows
    result.written = True
    return result
