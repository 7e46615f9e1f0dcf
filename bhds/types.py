"""Enums, the interval type, and the summary every workflow returns."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from bhds.errors import InputError

if TYPE_CHECKING:
    import numpy as np


class TradeType(str, Enum):
    """The contract's trade types; values are what users type."""

    spot = "spot"
    um_futures = "um_futures"
    cm_futures = "cm_futures"

    @property
    def is_futures(self) -> bool:
        return self is not TradeType.spot


class ContractType(str, Enum):
    PERPETUAL = "PERPETUAL"
    DELIVERY = "DELIVERY"


MS_PER = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
# Aliases the legacy parser accepted for minutes and hours.
_UNIT_ALIASES = {"T": "m", "H": "h"}
ARCHIVE_INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1mo")
DAY_MS = 86_400_000
_INTERVAL_RE = re.compile(r"^(\d+)(mo|s|m|T|h|H|d|w)$")


@dataclass(frozen=True)
class Interval:
    """A kline interval such as `1m` or `1mo`. `text` is a path component: as typed, or for an archive
    interval as Binance spells it."""

    text: str
    count: int
    unit: str  # one of s m h d w mo

    @property
    def is_calendar(self) -> bool:
        """Months have no fixed length."""
        return self.unit == "mo"

    @property
    def ms(self) -> int:
        """Fixed length in milliseconds; months have none."""
        if self.is_calendar:
            raise InputError(f"interval {self.text} has no fixed length in milliseconds")
        return self.count * MS_PER[self.unit]

    @property
    def bars_per_day(self) -> int | None:
        """Whole bars in one UTC day, or None when the interval is a day or longer."""
        if self.is_calendar or self.ms > DAY_MS:
            return None
        return DAY_MS // self.ms

    def close_ms(self, opens_ms: np.ndarray) -> np.ndarray:
        """Where each bar opening at `opens_ms` (epoch ms) closes: the next bar's open, months counted
        on the calendar."""
        import numpy as np  # here, not at the top: the CLI imports this module to print --help

        opens_ms = np.asarray(opens_ms, dtype=np.int64)
        if not self.is_calendar:
            return opens_ms + self.ms
        months = opens_ms.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64) + self.count
        return months.astype("datetime64[M]").astype("datetime64[ms]").astype(np.int64)

    @property
    def rest_name(self) -> str:
        """The REST API spells one month `1M`."""
        return f"{self.count}M" if self.is_calendar else f"{self.count}{self.unit}"

    def __str__(self) -> str:
        return self.text


def parse_interval(text: str, *, what: str = "interval", archive: bool = False, allow_zero: bool = False) -> Interval:
    """Parse `1m`, `5m`, `1h`, `1d`, `1w`, `1mo`... With archive=True only Binance's intervals pass."""
    raw = (text or "").strip()
    match = _INTERVAL_RE.match(raw)
    if not match:
        raise InputError(
            f"{what} {text!r} is not an interval: use a number and a unit (s, m, h, d, w, mo), e.g. 1m, 5m, 1h, 1d",
            exit_code=2,
        )
    count, unit = int(match.group(1)), _UNIT_ALIASES.get(match.group(2), match.group(2))
    if count == 0 and not allow_zero:
        raise InputError(f"{what} {text!r} is zero: use a positive length, e.g. 1m", exit_code=2)
    # An archive interval is a path component of every stage: spelt as Binance does (`1H` -> `1h`),
    # so download, parse, the API and generate all meet in the same folder.
    interval = Interval(f"{count}{unit}" if archive else raw, count, unit)
    if archive and interval.text not in ARCHIVE_INTERVALS:
        raise InputError(
            f"{what} {text!r} is not published by Binance: use one of {', '.join(ARCHIVE_INTERVALS)}",
            exit_code=2,
        )
    return interval


@dataclass
class RunSummary:
    """What a workflow did, for the closing line and the exit code."""

    command: str
    files: int = 0
    rows: int = 0
    bytes: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    notes: dict[str, object] = field(default_factory=dict)
    # The run replaced or removed outputs (a swapped tree may add or drop folders without writing
    # a new file); not printed, read by follow-up steps such as the SQL catalog refresh.
    changed: bool = False

    def __post_init__(self) -> None:
        # Noted so that the CLI can still print the line of a run that stopped half-way.
        CREATED.append(self)

    def fail(self, what: str) -> None:
        """Record one failed item (file, symbol, day) with the reason."""
        self.failed += 1
        self.failures.append(what)

    def line(self) -> str:
        """One line for cron logs: files, rows, bytes, failures, time."""
        parts = [f"files={self.files}", f"rows={self.rows:,}", f"bytes={_human_bytes(self.bytes)}"]
        if self.skipped:
            parts.append(f"skipped={self.skipped}")
        parts += [f"{key}={value}" for key, value in self.notes.items()]
        parts += [f"failed={self.failed}", f"time={self.seconds:.1f}s"]
        return f"{self.command}: " + " ".join(parts)


# Every RunSummary made in this process, oldest first (the CLI clears it before each command).
CREATED: list[RunSummary] = []


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{n}B"
