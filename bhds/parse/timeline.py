"""UTC days and months as epoch milliseconds (plain integers: no pandas or pyarrow needed to plan)."""

from __future__ import annotations

from datetime import date

DAY_MS = 86_400_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def epoch_ms(day: date) -> int:
    """00:00 UTC of `day` in epoch ms."""
    return (day.toordinal() - _EPOCH_ORDINAL) * DAY_MS


def month_window(year: int, month: int) -> tuple[int, int]:
    """[first instant, first instant of the next month) in epoch ms; the month's last instant is inside."""
    return epoch_ms(date(year, month, 1)), epoch_ms(date(year + month // 12, month % 12 + 1, 1))
