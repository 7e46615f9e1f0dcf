"""Which listed files a date range needs: monthly files for whole months, daily files for the rest.

A file's days come from its name (`…-2024-12-31.zip` one day, `…-2024-12.zip` one month; an
un-padded month such as `2020-8` reads too). A monthly file is taken for a month that lies
wholly inside the range, unless every daily file of that month is already on disk (a mirror
made by the daily-only legacy commands); the daily files of the chosen months are then left
out, so no day is fetched twice. Datasets published monthly only take every month the range
touches. A `.CHECKSUM` follows its zip.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Mapping
from datetime import date

from bhds.archive.listing import ArchiveFile
from bhds.archive.plan import LocalFile
from bhds.paths import CHECKSUM_SUFFIX

_STAMP_RE = re.compile(r"-(\d{4})-(\d{1,2})(?:-(\d{1,2}))?\.zip$")

Span = tuple[date, date]


def zip_name(name: str) -> str:
    """The zip a name belongs to (itself, or the zip of a `.CHECKSUM`)."""
    return name[: -len(CHECKSUM_SUFFIX)] if name.endswith(CHECKSUM_SUFFIX) else name


def file_span(name: str) -> Span | None:
    """(first day, last day) a daily or monthly file covers, from its name; None if unreadable."""
    match = _STAMP_RE.search(zip_name(name))
    if not match:
        return None
    year, month = int(match.group(1)), int(match.group(2))
    try:
        if match.group(3):
            day = date(year, month, int(match.group(3)))
            return day, day
        return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])
    except ValueError:
        return None


def overlaps(span: Span, start: date | None, end: date | None) -> bool:
    return (start is None or span[1] >= start) and (end is None or span[0] <= end)


def inside(span: Span, start: date | None, end: date | None) -> bool:
    return (start is None or span[0] >= start) and (end is None or span[1] <= end)


def in_range(files: Iterable[ArchiveFile], start: date | None, end: date | None) -> list[ArchiveFile]:
    """The files whose days touch [start, end] (names without a date are left out)."""
    out = []
    for f in files:
        span = file_span(f.name)
        if span is not None and overlaps(span, start, end):
            out.append(f)
    return out


def _month(name: str) -> tuple[int, int]:
    """(year, month) of a file that `in_range` kept (so its name has a date)."""
    first = file_span(name)[0]  # type: ignore[index]
    return first.year, first.month


def choose(daily: list[ArchiveFile], monthly: list[ArchiveFile], *, start: date | None, end: date | None,
           monthly_only: bool, local_daily: Mapping[str, LocalFile]) -> tuple[list[ArchiveFile], list[ArchiveFile]]:
    """(daily files, monthly files) to mirror for [start, end], never both for the same day.

    `monthly_only`: the dataset has no daily folder (fundingRate, 3d/1w/1mo klines), so every
    month touching the range is taken. `local_daily`: the files already in the daily folder
    (name → size), to keep a month that is complete there in its daily form.
    """
    monthly = in_range(monthly, start, end)
    if monthly_only:
        return [], monthly
    daily = in_range(daily, start, end)
    daily_zips_by_month: dict[tuple[int, int], list[ArchiveFile]] = {}
    for f in daily:
        if f.name.endswith(".zip"):
            daily_zips_by_month.setdefault(_month(f.name), []).append(f)
    chosen_months: set[tuple[int, int]] = set()
    for f in monthly:
        span = file_span(f.name)
        if not f.name.endswith(".zip") or span is None or not inside(span, start, end):
            continue
        days_here = daily_zips_by_month.get(_month(f.name), [])
        complete_locally = bool(days_here) and all(
            (local := local_daily.get(d.name)) is not None and local.size == d.size for d in days_here)
        if not complete_locally:
            chosen_months.add(_month(f.name))
    return ([f for f in daily if _month(f.name) not in chosen_months],
            [f for f in monthly if _month(f.name) in chosen_months])
