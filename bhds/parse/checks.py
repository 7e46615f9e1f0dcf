"""What parse refuses: files whose times do not fit their period, and rows no market can have.

A daily kline file holds the bars that open in its UTC day. Binance's dailies now and then also
carry a bar of the day before or after; up to `tolerated(rows)` such rows are accepted and placed
by `jobs.update_month`. A file whose times fit worse than that (times in seconds, the file of
another day, a clock shift, a shorter interval's bars) is refused whole, so its day keeps the rows
the partition had. In a file that fits, a row with a NaN, infinite or non-positive price, high
below low, a NaN, infinite or negative volume, or an open time off the interval's grid is dropped,
the rest is kept, and the file is reported with the count of each kind. A file left without a
usable row of its own day is refused whole instead, so a day is never emptied by a bad file.

Every check is a handful of vectorised numpy comparisons over the month; per-file counting is paid
only when some row fails.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from bhds.parse.timeline import DAY_MS, month_window
from bhds.quality.grid import Grid
from bhds.schema import HOUR_MS
from bhds.types import parse_interval

# ms times below this are before 1973-03: a file of today's bars with such times is in seconds.
_SECONDS_LIKE = 10**11


def tolerated(rows: int) -> int:
    """Rows of a neighbouring day (or off the grid) a daily file may hold and still be read: 1%, at least one."""
    return max(1, rows // 100)


@dataclass
class Screened:
    """The verdict on a batch of daily files parsed into one table."""

    refused: list[tuple[str, str]]  # (file, reason): none of its rows are used
    rejected: list[tuple[str, str]]  # (file, what was dropped): its other rows are used
    rows_rejected: int  # rows dropped from files that were used
    keep: np.ndarray | None  # rows to keep; None = all of them
    owned: np.ndarray  # per kept row: whether it lies in its own file's day


def screen_days(table: pa.Table, times: np.ndarray, files: list[tuple[str, int]], day_of_file: dict[str, int],
                interval: str) -> Screened:
    """Judge each daily file's rows (`files` = (name, rows) in table order) against its day and the grid."""
    counts = np.fromiter((rows for _, rows in files), dtype=np.int64, count=len(files))
    row_day = np.repeat(np.fromiter((day_of_file[name] for name, _ in files), dtype=np.int64, count=len(files)), counts)
    owned = (times >= row_day) & (times < row_day + DAY_MS)
    grid = Grid(parse_interval(interval))
    problem = _row_problems(table)
    off_grid = grid.misaligned(times)
    if owned.all() and problem is None and not off_grid.any():
        return Screened([], [], 0, None, owned)  # the usual case: nothing more to pay

    file_of_row = np.repeat(np.arange(len(files)), counts)
    n = len(files)
    bad_value = np.zeros(len(times), dtype=bool) if problem is None else problem >= 0
    usable = ~bad_value & ~off_grid
    stray = ~owned
    far = stray & ((times < row_day - DAY_MS) | (times >= row_day + 2 * DAY_MS))
    per_file = {key: np.bincount(file_of_row[mask], minlength=n)
                for key, mask in (("stray", stray), ("far", far), ("off_grid", off_grid), ("own_usable", owned & usable))}

    refused: list[tuple[str, str]] = []
    refused_index: list[int] = []
    for i, (name, rows) in enumerate(files):
        day = day_of_file[name]
        if per_file["far"][i] or per_file["stray"][i] > tolerated(rows):
            reason = _outside_reason(times[(file_of_row == i) & stray], per_file["stray"][i], rows, _day_text(day))
        elif per_file["off_grid"][i] > tolerated(rows):
            reason = (f"{per_file['off_grid'][i]} of {rows} rows are off the {interval} grid "
                      f"(a file of a shorter interval?)")
        elif per_file["own_usable"][i] == 0:
            rejects = _kinds(problem, off_grid, interval, (file_of_row == i) & ~usable)
            reason = f"no usable row of {_day_text(day)}" + (f" ({rejects})" if rejects else "")
        else:
            continue
        refused.append((name, f"{reason}; the day keeps the rows it had"))
        refused_index.append(i)

    in_used_file = ~np.isin(file_of_row, refused_index)
    keep = usable & in_used_file
    dropped = ~usable & in_used_file
    rejected = []
    for i in np.unique(file_of_row[dropped]):
        mask = dropped & (file_of_row == i)
        rejected.append((files[i][0], f"{int(mask.sum())} rows rejected ({_kinds(problem, off_grid, interval, mask)})"))
    return Screened(refused, rejected, int(dropped.sum()), None if keep.all() else keep, owned[keep])


# Kinds of bad row, in the order a row is classified (each row counts once, under its first kind).
_KINDS = ("NaN price", "infinite price", "non-positive price", "high below low", "NaN, infinite or negative volume")


def _row_problems(table: pa.Table) -> np.ndarray | None:
    """Per row, the index in `_KINDS` of its first problem (-1: none); None when no row has one."""
    o, h, low, c, v = (table.column(name).to_numpy() for name in ("open", "high", "low", "close", "volume"))
    with np.errstate(invalid="ignore"):
        # Comparisons with NaN are false, so this one pass also catches every NaN.
        fine = (low > 0) & (h >= low) & (h < np.inf) & (o > 0) & (o < np.inf) & (c > 0) & (c < np.inf) & (v >= 0) & (v < np.inf)
    if fine.all():
        return None
    kind = np.full(len(o), -1, dtype=np.int8)
    bad = np.flatnonzero(~fine)
    prices = np.stack([o[bad], h[bad], low[bad], c[bad]])
    with np.errstate(invalid="ignore"):
        tests = [
            np.isnan(prices).any(axis=0),
            np.isinf(prices).any(axis=0),
            (prices <= 0).any(axis=0),
            h[bad] < low[bad],
            ~((v[bad] >= 0) & (v[bad] < np.inf)),
        ]
    kind[bad] = np.argmax(np.stack(tests), axis=0)  # every failing row has a kind; the first one wins
    return kind


def _kinds(problem: np.ndarray | None, off_grid: np.ndarray, interval: str, mask: np.ndarray) -> str:
    """`2 NaN price, 1 off the 1m grid` for the rows in `mask`."""
    tally: Counter[str] = Counter()
    if problem is not None:
        for index, n in zip(*np.unique(problem[mask & (problem >= 0)], return_counts=True)):
            tally[_KINDS[index]] = int(n)
    grid_only = mask & off_grid & (problem < 0 if problem is not None else True)
    if grid_only.any():
        tally[f"off the {interval} grid"] = int(grid_only.sum())
    return ", ".join(f"{n} {kind}" for kind, n in tally.items())


def funding_outside_month(times: np.ndarray, year: int, month: int) -> str | None:
    """Why a monthly funding file does not fit its month (None when it does).

    Settlements are stamped a few ms after the hour; an hour either side of the month is allowed
    for that jitter, and such rows are kept.
    """
    start, end = month_window(year, month)
    outside = (times < start - HOUR_MS) | (times >= end + HOUR_MS)
    if not outside.any():
        return None
    return _outside_reason(times[outside], int(outside.sum()), len(times), f"{year:04d}-{month:02d}")


def _outside_reason(stray_times: np.ndarray, n_outside: int, rows: int, period: str) -> str:
    first, last = int(stray_times.min()), int(stray_times.max())
    hint = "; times in seconds?" if last < _SECONDS_LIKE else ""
    span = _when(first) if first == last else f"{_when(first)} to {_when(last)}"
    return f"{n_outside} of {rows} rows lie outside {period} UTC ({span}{hint})"


def _when(ms: int) -> str:
    return str(np.datetime64(ms, "ms"))[:16].replace("T", " ")


def _day_text(day_ms: int) -> str:
    return str(np.datetime64(day_ms // DAY_MS, "D"))
