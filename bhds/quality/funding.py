"""Funding coverage: how many settlements the parsed archive and the API hold, against how many there should be.

Settlement times carry a few ms of jitter, so they are matched on the nearest minute. The expected
count walks consecutive settlements: a gap of k intervals means k-1 missing ones, where the
interval is the larger of the two neighbours' `funding_interval_hours` (so the switch from 8 h to
4 h is not counted as a miss). API records have no interval column; they take the last known one,
or, with no archive funding at all, the most common spacing of the API's own settlements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from bhds.errors import DataError
from bhds.quality.grid import iso_ms, percent_down
from bhds.quality.pieces import as_numpy, times_ms
from bhds.schema import HOUR_MS
from bhds.storage import open_parquet

MINUTE_MS = 60_000
DEFAULT_INTERVAL_HOURS = 8


@dataclass
class FundingFigures:
    records: int = 0
    duplicates: int = 0
    first: int | None = None
    last: int | None = None
    expected: int = 0
    missing: int = 0
    coverage_pct: float | None = None
    interval_changes: list[dict] = field(default_factory=list)
    api_records: int = 0
    api_last: int | None = None

    def to_json(self) -> dict:
        """The report's `funding` object (see bhds.quality.record)."""
        return {
            "records": self.records,
            "first": iso_ms(self.first),
            "last": iso_ms(self.last),
            "expected": self.expected,
            "missing": self.missing,
            "coverage_pct": self.coverage_pct,
            "duplicates": self.duplicates,
            "interval_changes": self.interval_changes,
            "api_records": self.api_records,
            "api_last": iso_ms(self.api_last),
        }


def _read(path: Path, columns: list[str]) -> pa.Table:
    try:
        return open_parquet(path).read(columns=columns, use_threads=False)
    except (OSError, pa.ArrowException, KeyError) as exc:
        raise DataError(f"cannot read {path} ({exc}): delete it and run the step that writes it again") from exc


def _int64(array: pa.Array, fill: int) -> np.ndarray:
    return as_numpy(array.fill_null(fill) if array.null_count else array)


def _minutes_and_mask(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Settlement times in whole minutes (nearest), and which rows had a time."""
    ms = _int64(times_ms(table.column("funding_time")), -1)
    valid = ms >= 0
    return (ms[valid] + MINUTE_MS // 2) // MINUTE_MS, valid


def _duplicates(minutes: np.ndarray) -> int:
    return int(len(minutes) - len(np.unique(minutes)))


def funding_figures(parsed: Path | None, api: Path | None) -> FundingFigures | None:
    """Figures from the parsed funding file and the API funding file; None when neither exists."""
    if parsed is None and api is None:
        return None
    out = FundingFigures()
    minutes = [np.empty(0, dtype=np.int64)]
    hours = [np.empty(0, dtype=np.int64)]
    if parsed is not None:
        table = _read(parsed, ["funding_time", "funding_interval_hours"])
        mins, valid = _minutes_and_mask(table)
        hrs = _int64(table.column("funding_interval_hours").combine_chunks().cast(pa.int64()), 0)[valid]
        out.duplicates += _duplicates(mins)
        order = np.argsort(mins, kind="stable")
        mins, hrs = mins[order], hrs[order]
        out.interval_changes = _changes(mins, hrs)
        minutes.append(mins)
        hours.append(hrs)
    if api is not None:
        mins = np.sort(_minutes_and_mask(_read(api, ["funding_time"]))[0])
        out.duplicates += _duplicates(mins)
        out.api_records = len(mins)
        out.api_last = int(mins[-1]) * MINUTE_MS if len(mins) else None
        minutes.append(mins)
        hours.append(np.zeros(len(mins), dtype=np.int64))  # unknown: filled from the neighbours

    all_minutes = np.concatenate(minutes)
    all_hours = np.concatenate(hours)
    if not len(all_minutes):
        return out
    # Keep one record per minute, preferring one that knows its interval.
    order = np.lexsort((-all_hours, all_minutes))
    all_minutes, all_hours = all_minutes[order], all_hours[order]
    first_of_minute = np.concatenate(([True], all_minutes[1:] != all_minutes[:-1]))
    times = all_minutes[first_of_minute]
    hrs = _fill_hours(all_hours[first_of_minute], times)

    out.records = len(times)
    out.first, out.last = int(times[0]) * MINUTE_MS, int(times[-1]) * MINUTE_MS
    if len(times) > 1:
        gap_hours = np.diff(times) * MINUTE_MS / HOUR_MS
        interval = np.maximum(hrs[1:], hrs[:-1])
        steps = np.maximum(1, np.rint(gap_hours / interval)).astype(np.int64)
        out.expected = int(steps.sum()) + 1
    else:
        out.expected = 1
    out.missing = out.expected - out.records
    out.coverage_pct = percent_down(out.records, out.expected)  # as completeness
    return out


def _fill_hours(hours: np.ndarray, minutes: np.ndarray) -> np.ndarray:
    """Unknown (0) intervals take the previous known one, then the next one; with none known, the
    most common whole-hour spacing of the settlements (8 h for fewer than two)."""
    known = hours > 0
    if not known.any():
        return np.full(len(hours), _typical_hours(minutes), dtype=np.int64)
    index = np.where(known, np.arange(len(hours)), -1)
    np.maximum.accumulate(index, out=index)
    filled = np.where(index >= 0, hours[np.maximum(index, 0)], hours[np.argmax(known)])
    return filled.astype(np.int64)


def _typical_hours(minutes: np.ndarray) -> int:
    gaps = np.rint(np.diff(minutes) / 60).astype(np.int64)
    gaps = gaps[gaps > 0]
    return int(np.argmax(np.bincount(gaps))) if len(gaps) else DEFAULT_INTERVAL_HOURS


def _changes(minutes: np.ndarray, hours: np.ndarray) -> list[dict]:
    """Where `funding_interval_hours` switches, e.g. 8 -> 4 at a settlement."""
    known = hours > 0
    minutes, hours = minutes[known], hours[known]
    if len(hours) < 2:
        return []
    at = np.flatnonzero(hours[1:] != hours[:-1]) + 1
    return [{"at": iso_ms(int(minutes[i]) * MINUTE_MS), "from_hours": int(hours[i - 1]), "to_hours": int(hours[i])} for i in at]
