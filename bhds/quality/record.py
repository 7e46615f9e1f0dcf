"""The per-symbol record of the quality report and its JSON form.

JSON schema `bhds-quality-report/1` (stable: fields are only ever added, with a new version).
Times are UTC ISO-8601 (`2024-01-31T23:59:00Z`), days `YYYY-MM-DD`; null means unknown or not
applicable. The document is::

    {"schema": "bhds-quality-report/1", "trade_type": "spot", "interval": "1m",
     "generated_at": "<time>", "data_dir": "<path>", "fail_under": <float|null>,
     "symbols": [<symbol>, ...]}            # worst first

and each <symbol> has exactly these keys, in this order:

    symbol                 str
    first_day, last_day    day|null   first/last day holding a candle or an archive zip
    days_behind            int|null   whole days from the end of the data (last_day; for intervals over
                                      a day the last candle's close) to yesterday; 0 = up to date, or
                                      no further candle could have closed yet
    days_expected          int|null   days in the expected window (null for intervals over 1d)
    days_in_archive        int        daily zips in the mirror
    days_verified          int        ... of which carry a `.verified` marker
    days_unparsed          int        archive days without any parsed candle
    days_from_api          int        days whose API day file holds candles
    days_api_empty         int        days the API answered without candles (an empty day file, or
                                      recorded so by the API stage) and no API file fills since
    days_missing           int|null   days of the window without any candle
    days_partial           int|null   days with some, not all, expected bars
    bars_expected          int        bars of the window (first candle to last, whole days for
                                      archive-only days)
    bars_present           int        distinct candles on the grid inside the window
    bars_missing           int        bars_expected - bars_present
    completeness_pct       float|null 100 * bars_present / bars_expected, rounded down to 2 decimals
                                      (100.0 only when no bar is missing)
    holes                  int        runs of missing bars between two candles
    longest_hole           {after: time, bars: int}|null   after = the candle before it
    duplicate_rows         int        rows repeating a time inside one Parquet file
    parse_duplicates       int|null   rows parse dropped for repeating a time, as recorded in each
                                      partition's footer (null = a partition written by bhds.py, an
                                      older bhds or another tool holds no such record)
    misaligned_rows        int        candles off the interval grid
    ohlc_violations        {rows, high_below_open_close, low_above_open_close, negative, nan}
                           (nan also counts rows without a time; they are otherwise ignored)
    zero_volume            {rows, runs, longest_run}   runs = consecutive zero-volume bars
    segments               [{name, first, last, rows}]   generated results files, in time order
    split_gaps             [{after, before, days}]       holes between consecutive segments
    funding                null (spot / no funding files) or {records, first, last, expected,
                           missing, coverage_pct, duplicates,
                           interval_changes: [{at, from_hours, to_hours}], api_records, api_last}
    archive_newest_mtime   time|null  newest zip's modification time on disk
    archive_last_modified  time|null  newest LastModified recorded by the archive stage
    errors                 [str]      files that could not be read
"""

from __future__ import annotations

from fractions import Fraction

from bhds.quality.funding import FundingFigures
from bhds.quality.grid import Grid, iso_day, iso_ms, percent_down
from bhds.quality.inventory import ArchiveFiles
from bhds.quality.segments import Segment, split_gaps
from bhds.quality.series import DayView, SeriesFigures
from bhds.types import DAY_MS

SCHEMA = "bhds-quality-report/1"
SYMBOL_KEYS = (
    "symbol", "first_day", "last_day", "days_behind", "days_expected", "days_in_archive", "days_verified",
    "days_unparsed", "days_from_api", "days_api_empty", "days_missing", "days_partial", "bars_expected",
    "bars_present", "bars_missing", "completeness_pct", "holes", "longest_hole", "duplicate_rows",
    "parse_duplicates", "misaligned_rows", "ohlc_violations", "zero_volume", "segments", "split_gaps", "funding",
    "archive_newest_mtime", "archive_last_modified", "errors",
)


def build_record(
    symbol: str,
    grid: Grid,
    fig: SeriesFigures,
    view: DayView | None,
    archive: ArchiveFiles,
    segments: list[Segment],
    funding: FundingFigures | None,
    *,
    yesterday: int,
    last_modified_ms: int | None,
    errors: list[str],
) -> dict:
    days_with_data = set(archive.days) | fig.api_days
    if fig.first is not None:
        days_with_data |= {fig.first // DAY_MS, fig.last // DAY_MS}
    first_day = min(days_with_data) if days_with_data else None
    last_day = max(days_with_data) if days_with_data else None

    if view is not None:
        bars_expected = int(view.expected.sum())
        bars_present = int(view.present.sum())
        in_window = view.expected > 0
        days_expected = int(in_window.sum())
        days_missing = int((in_window & (view.present == 0)).sum())
        days_partial = int(((view.present > 0) & (view.present < view.expected)).sum())
    else:
        days_expected = days_missing = days_partial = None
        bars_present = fig.rows - fig.misaligned
        bars_expected = (grid.unit(fig.last) - grid.unit(fig.first)) // grid.step + 1 if fig.first is not None else 0
    # Rounded down: 1 bar missing of 43,200 is 99.99, never a reassuring 100.00.
    completeness = percent_down(bars_present, bars_expected) if bars_expected else None

    return {
        "symbol": symbol,
        "first_day": iso_day(first_day),
        "last_day": iso_day(last_day),
        "days_behind": _days_behind(grid, fig.last, last_day, yesterday),
        "days_expected": days_expected,
        "days_in_archive": len(archive.days),
        "days_verified": archive.verified,
        "days_unparsed": len(set(archive.days) - fig.parsed_days),
        "days_from_api": len(fig.api_days),
        "days_api_empty": len(fig.api_empty_days - fig.api_days),
        "days_missing": days_missing,
        "days_partial": days_partial,
        "bars_expected": int(bars_expected),
        "bars_present": int(bars_present),
        "bars_missing": int(bars_expected - bars_present),
        "completeness_pct": completeness,
        "holes": fig.holes,
        "longest_hole": {"after": iso_ms(fig.longest_hole_after), "bars": fig.longest_hole_bars} if fig.holes else None,
        "duplicate_rows": fig.duplicates,
        "parse_duplicates": fig.parse_duplicates,
        "misaligned_rows": fig.misaligned,
        "ohlc_violations": {
            "rows": fig.violation_rows,
            "high_below_open_close": fig.high_below,
            "low_above_open_close": fig.low_above,
            "negative": fig.negative,
            "nan": fig.nan,
        },
        "zero_volume": {"rows": fig.zero_rows, "runs": fig.zero_runs, "longest_run": fig.zero_longest},
        "segments": [s.to_json() for s in sorted(segments, key=lambda s: (s.first is None, s.first or 0, s.name))],
        "split_gaps": split_gaps(segments),
        "funding": funding.to_json() if funding is not None else None,
        "archive_newest_mtime": iso_ms(archive.newest_mtime_ns // 1_000_000) if archive.newest_mtime_ns is not None else None,
        "archive_last_modified": iso_ms(last_modified_ms),
        "errors": list(errors),
    }


def _days_behind(grid: Grid, last_open_ms: int | None, last_day: int | None, yesterday: int) -> int | None:
    """Whole days the data ends before yesterday. A candle of a week or a month covers the days to its
    close, and none is due while the next one could not have closed by yesterday's end."""
    if last_day is None:
        return None
    if last_open_ms is not None and (grid.is_months or grid.interval.ms > DAY_MS):
        close = int(grid.interval.close_ms([last_open_ms])[0])
        if (int(grid.interval.close_ms([close])[0]) - 1) // DAY_MS > yesterday:
            return 0
        last_day = max(last_day, (close - 1) // DAY_MS)
    return max(0, yesterday - last_day)


def is_below(record: dict, fail_under: float) -> bool:
    """Whether the symbol is less complete than `fail_under` percent, on the exact ratio (not the rounded
    figure); a symbol without any expected bar counts as below."""
    expected = record["bars_expected"]
    # Exact decimal arithmetic: with floats, 9018 of 10000 bars would be "below 90.18%".
    return not expected or 100 * record["bars_present"] < Fraction(str(fail_under)) * expected


def worst_first(record: dict) -> tuple:
    """Sort key: unreadable files, then lowest completeness, most missing days, most violations."""
    completeness = record["completeness_pct"]
    return (
        0 if record["errors"] else 1,
        -1.0 if completeness is None else completeness,
        -(record["days_missing"] or 0),
        -record["ohlc_violations"]["rows"],
        -record["duplicate_rows"],
        record["symbol"],
    )
