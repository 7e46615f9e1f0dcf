"""Helpers shared by the parse tests (no tests here): synthetic archive zips and a data directory."""

from __future__ import annotations

import io
import os
import zipfile
from datetime import date, datetime, timezone
from pathlib import Path

from bhds.paths import Layout, verified_marker
from bhds.settings import Settings, load_settings
from bhds.types import TradeType

KLINE_HEADER = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"
FUNDING_HEADER = "calc_time,funding_interval_hours,last_funding_rate"
INTERVAL_MS = {"1s": 1_000, "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
               "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000,
               "12h": 43_200_000, "1d": 86_400_000, "3d": 3 * 86_400_000, "1w": 7 * 86_400_000}


def ms(*args: int) -> int:
    """Epoch ms of a UTC date-time."""
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


def kline_row(open_ms: int, interval_ms: int, *, micro: bool = False, bump: float = 0.0) -> str:
    """One Binance kline CSV line whose values are a function of its time (and `bump`)."""
    base = 100.0 + (open_ms // 60_000) % 1000 / 10 + bump
    unit = 1000 if micro else 1
    close_time = (open_ms + interval_ms) * unit - 1
    n = (open_ms // 1000) % 97
    return (f"{open_ms * unit},{base:.8f},{base + 1:.8f},{base - 1:.8f},{base + 0.5:.8f},{n + 0.25:.8f},"
            f"{close_time},{(n + 0.25) * base:.8f},{n},{n / 2:.8f},{n / 2 * base:.8f},0")


def kline_csv(times: list[int], interval: str = "1m", *, header: bool = False, micro: bool = False, bump: float = 0.0) -> bytes:
    lines = [KLINE_HEADER] if header else []
    lines += [kline_row(t, INTERVAL_MS.get(interval, 60_000), micro=micro, bump=bump) for t in times]
    return ("\n".join(lines) + "\n").encode()


def day_times(day: date, interval: str = "1m", count: int | None = None) -> list[int]:
    step = INTERVAL_MS[interval]
    start = ms(day.year, day.month, day.day)
    n = count if count is not None else max(1, 86_400_000 // step)
    return [start + i * step for i in range(n)]


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def put_zip(path: Path, data: bytes, *, verified: bool = True, mtime_ns: int | None = None) -> Path:
    """Write an archive zip (optionally its .verified marker); a given mtime makes versions distinct."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    if verified:
        verified_marker(path).touch()
    return path


def put_kline_day(layout: Layout, trade_type: TradeType, symbol: str, interval: str, day: date, csv: bytes, **kw) -> Path:
    name = f"{symbol}-{interval}-{day.isoformat()}"
    return put_zip(layout.aws_kline_dir(trade_type, symbol, interval) / f"{name}.zip", zip_bytes({f"{name}.csv": csv}), **kw)


def put_funding_month(layout: Layout, trade_type: TradeType, symbol: str, year: int, month: int, csv: bytes, **kw) -> Path:
    name = f"{symbol}-fundingRate-{year:04d}-{month:02d}"
    return put_zip(layout.aws_funding_dir(trade_type, symbol) / f"{name}.zip", zip_bytes({f"{name}.csv": csv}), **kw)


def make_settings(base: Path, n_jobs: int = 1) -> Settings:
    return load_settings({"CRYPTO_BASE_DIR": str(base), "CRYPTO_NJOBS": str(n_jobs), "BHDS_NOW": "2025-03-01T00:00:00Z"})


def env_for(base: Path, n_jobs: int = 1) -> dict[str, str]:
    return {"CRYPTO_BASE_DIR": str(base), "CRYPTO_NJOBS": str(n_jobs), "BHDS_NOW": "2025-03-01T00:00:00Z"}
