"""Contract §6.12 steps 2-4: which offsets a resample makes, their directory names, and the checks."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bhds.errors import InputError
from bhds.types import DAY_MS, MS_PER, Interval, parse_interval

MINUTE_MS = MS_PER["m"]
ZERO_OFFSET = "0m"
# Binance's weekly candles open on Monday; the Unix epoch was a Thursday.
WEEK_ANCHOR_MS = 4 * DAY_MS


@dataclass(frozen=True)
class Offset:
    name: str  # directory name, e.g. `35m`
    blocks: int  # shift from the aligned window start, in blocks


@dataclass(frozen=True)
class ResamplePlan:
    """Windows of `interval` built from blocks of `block_ms` (or calendar months), at each offset."""

    interval: Interval
    block_ms: int  # 0 for calendar-month windows
    anchor_ms: int
    offsets: tuple[Offset, ...]

    @property
    def blocks_per_window(self) -> int:
        return 1 if self.block_ms == 0 else self.interval.ms // self.block_ms


def _unit_text(text: str) -> str:
    """The unit as the user typed it (`5T` → `T`): offset names keep it, like the legacy tool."""
    return re.sub(r"^\d+", "", text.strip())


def plan_resample(resample_interval: str, base_offset: str) -> ResamplePlan:
    """Check the arguments and list the offsets; bad input raises InputError (exit 2) saying what to use.

    `0m` gives the single offset `0m`; otherwise every multiple of the base offset below the
    interval (`1h 5m` → 0m, 5m … 55m). The legacy tool silently did nothing for an offset ≥ the
    interval and crashed on `0h`.
    """
    interval = parse_interval(resample_interval, what="resample interval")
    if not interval.is_calendar and interval.ms % MINUTE_MS:
        raise InputError(f"resample interval {resample_interval!r} is not a whole number of minutes: resampling starts from 1m klines, use e.g. 5m, 1h, 1d", exit_code=2)
    anchor = WEEK_ANCHOR_MS if interval.unit == "w" else 0
    if base_offset.strip() == ZERO_OFFSET:
        block = 0 if interval.is_calendar else interval.ms
        return ResamplePlan(interval, block, anchor, (Offset(ZERO_OFFSET, 0),))

    base = parse_interval(base_offset, what="base offset", allow_zero=True)
    if base.count == 0:
        raise InputError(f"base offset {base_offset!r} is zero: use 0m for windows without an offset", exit_code=2)
    if interval.is_calendar:
        raise InputError(f"resample interval {resample_interval!r} is a calendar period: only base offset 0m can be used with it", exit_code=2)
    if base.is_calendar or base.ms >= interval.ms:
        raise InputError(f"base offset {base_offset!r} is not shorter than the resample interval {resample_interval!r}: use a smaller offset, or 0m", exit_code=2)
    if base.ms % MINUTE_MS:
        raise InputError(f"base offset {base_offset!r} is not a whole number of minutes: use e.g. 5m, 15m, 1h", exit_code=2)
    if interval.ms % base.ms:
        raise InputError(f"base offset {base_offset!r} does not divide the resample interval {resample_interval!r}: use an offset that does, e.g. 5m or 15m for 1h", exit_code=2)
    unit = _unit_text(base.text)
    count = interval.ms // base.ms
    offsets = tuple(Offset(f"{i * base.count}{unit}", i) for i in range(count))
    return ResamplePlan(interval, base.ms, anchor, offsets)
