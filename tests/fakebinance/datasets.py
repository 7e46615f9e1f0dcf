"""Every dataset of data.binance.vision (binance-reference.md §1.4, §3) in its real shape.

`build_datasets(universe, root)` writes, for each symbol of the universe and each dataset its
market publishes, one daily zip per archive day and one monthly zip per month that is complete
before the publication cutoff (a month of listing counts from the first day), each with its
`.CHECKSUM`. A monthly file holds exactly the rows of the month's daily files, under one header.

Shapes, as Binance writes them:
- spot klines, trades, aggTrades: no header; times in ms before 2025-01-01, in µs from then on;
  booleans `True`/`False`; aggTrades and trades end with the `isBestMatch` column.
- futures: a header row; times in ms; booleans `true`/`false`; COIN-M trades carry `base_qty`.
- metrics and bookDepth: times as `YYYY-MM-DD HH:MM:SS` strings; daily files only.
- fundingRate: monthly files only; liquidationSnapshot, metrics, bookDepth: daily files only.
- indexPriceKlines on COIN-M is keyed by the pair (`BTCUSD`), premiumIndexKlines by the
  perpetuals only.

Row counts are small by default (a few hundred trades a day); every value is a deterministic
function of (seed, market, symbol, day), so a file rebuilt later has the same bytes.
"""

from __future__ import annotations

import calendar
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from .archive import (
    COMPRESS_LEVEL,
    MARKET_ROOT,
    SPOT_MICROSECONDS_FROM,
    UNIVERSE_FILE,
    ArchiveSummary,
    archive_days,
    funding_csv,
    kline_csv,
    write_zip_object,
)
from .series import (
    INTERVAL_MS,
    LIQUIDATION_HEADER,
    _day_path,
    _fmt_one,
    day_bars,
    liquidation_lines,
    minute_mask,
)
from .universe import EPOCH, MINUTE_MS, SymbolSpec, Universe, day_ms, iso_to_ms

DAILY, MONTHLY = "daily", "monthly"

TRADES_HEADER = {"um": "id,price,qty,quote_qty,time,is_buyer_maker",
                 "cm": "id,price,qty,base_qty,time,is_buyer_maker"}
AGG_TRADES_HEADER = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"
BOOK_TICKER_HEADER = "update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time"
BOOK_DEPTH_HEADER = "timestamp,percentage,depth,notional"
METRICS_HEADER = ("create_time,symbol,sum_open_interest,sum_open_interest_value,count_toptrader_long_short_ratio,"
                  "sum_toptrader_long_short_ratio,count_long_short_ratio,sum_taker_long_short_vol_ratio")
KLINE_LIKE = ("klines", "markPriceKlines", "indexPriceKlines", "premiumIndexKlines")
BOOK_DEPTH_PERCENTAGES = (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Shape:
    """Which periods a dataset is published in, per market."""

    markets: tuple[str, ...]
    daily: bool = True
    monthly: bool = True


SHAPES: dict[str, Shape] = {
    "klines": Shape(("spot", "um", "cm")),
    "trades": Shape(("spot", "um", "cm")),
    "aggTrades": Shape(("spot", "um", "cm")),
    "markPriceKlines": Shape(("um", "cm")),
    "indexPriceKlines": Shape(("um", "cm")),
    "premiumIndexKlines": Shape(("um", "cm")),
    "bookTicker": Shape(("um", "cm")),
    "bookDepth": Shape(("um", "cm"), monthly=False),
    "metrics": Shape(("um", "cm"), monthly=False),
    "fundingRate": Shape(("um", "cm"), daily=False),
    "liquidationSnapshot": Shape(("um", "cm"), monthly=False),
}


def datasets_of(market: str) -> tuple[str, ...]:
    return tuple(name for name, shape in SHAPES.items() if market in shape.markets)


def dataset_symbol(spec: SymbolSpec, dataset: str) -> str | None:
    """The folder name a symbol's dataset lives under, or None where Binance publishes none."""
    perpetual = spec.is_perpetual
    if dataset == "indexPriceKlines":
        if spec.market == "cm":
            return spec.symbol.split("_")[0] if perpetual else None  # the pair, once
        return spec.symbol if perpetual else None
    if dataset in ("premiumIndexKlines", "fundingRate"):
        return spec.symbol if perpetual else None
    if dataset == "liquidationSnapshot":
        return spec.symbol if spec.liquidation else None
    return spec.symbol


def dataset_key(market: str, period: str, dataset: str, symbol: str, stamp: str, interval: str | None = None) -> str:
    """`data/<market>/<period>/<dataset>/<SYMBOL>/[<interval>/]<SYMBOL>-<interval|dataset>-<stamp>.zip`."""
    base = f"{MARKET_ROOT[market]}/{period}/{dataset}/{symbol}/"
    if dataset in KLINE_LIKE:
        return f"{base}{interval}/{symbol}-{interval}-{stamp}.zip"
    return f"{base}{symbol}-{dataset}-{stamp}.zip"


# ---- deterministic helpers -------------------------------------------------------------------

def _rng(spec: SymbolSpec, *parts: object) -> np.random.Generator:
    text = repr((spec.seed, spec.market, spec.symbol, "datasets") + parts).encode()
    return np.random.default_rng(int.from_bytes(hashlib.blake2b(text, digest_size=16).digest(), "little"))


def _microseconds(spec: SymbolSpec, d: date) -> bool:
    return spec.market == "spot" and d >= SPOT_MICROSECONDS_FROM


def _bool(spec: SymbolSpec, value: bool) -> str:
    if spec.market == "spot":
        return "True" if value else "False"
    return "true" if value else "false"


def _stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _price_dec(spec: SymbolSpec) -> int:
    return 8 if spec.market == "spot" else spec.price_decimals


def _price_text(spec: SymbolSpec, ticks: int) -> str:
    return _fmt_one(ticks * 10 ** (_price_dec(spec) - spec.price_decimals), _price_dec(spec))


def _qty_text(spec: SymbolSpec, units: int) -> str:
    if spec.market == "spot":
        return _fmt_one(units * 10 ** (8 - spec.qty_decimals), 8)
    return _fmt_one(units, spec.qty_decimals)


# ---- trades and aggTrades ------------------------------------------------------------------

@dataclass
class DayTrades:
    """One day's trades: fills grouped into taker orders (the aggTrades)."""

    ids: np.ndarray
    time: np.ndarray  # in the file's unit (ms, or µs for spot from 2025)
    price: np.ndarray  # ticks
    qty: np.ndarray  # quantity steps (contracts on COIN-M)
    buyer_maker: np.ndarray
    group: np.ndarray  # aggTrade index of each fill

    def __len__(self) -> int:
        return len(self.ids)


def day_trades(spec: SymbolSpec, d: date, per_day: int = 240) -> DayTrades:
    """About `per_day` fills on the minutes with bars, in taker orders of one to three fills.

    Prices stay inside each minute's high/low; ids continue from a per-day base, so aggTrade
    first/last ids are the fills they stand for.
    """
    minutes = np.flatnonzero(minute_mask(spec, d, archive=True))
    n_day = (d - EPOCH).days
    if len(minutes) == 0:
        z = np.zeros(0, dtype=np.int64)
        return DayTrades(z, z, z, z, z.astype(bool), z)
    rng = _rng(spec, "trades", n_day)
    orders = max(1, per_day // 2)
    at = np.sort(rng.choice(minutes, orders)) * MINUTE_MS + np.sort(rng.integers(0, MINUTE_MS, orders))
    at = np.sort(at)
    fills = rng.integers(1, 4, orders)
    path = _day_path(spec, n_day)
    minute = (at // MINUTE_MS).astype(np.int64)
    lo, hi = path["low"][minute], path["high"][minute]
    price = lo + (rng.random(orders) * (hi - lo + 1)).astype(np.int64).clip(0, hi - lo)
    side = rng.random(orders) < 0.5
    group = np.repeat(np.arange(orders), fills)
    n = len(group)
    step = max(1, 10 ** spec.qty_decimals // 1000)
    qty = rng.integers(1, 400, n) * step
    time = day_ms(d) + at[group]
    if _microseconds(spec, d):
        time = time * 1000 + rng.integers(0, 1000, orders)[group]
    base = 1_000_000 * n_day
    return DayTrades(base + np.arange(n, dtype=np.int64), time.astype(np.int64), price[group], qty, side[group], group)


def trades_lines(spec: SymbolSpec, d: date) -> list[str]:
    t = day_trades(spec, d)
    lines = []
    qd = spec.qty_decimals
    for i in range(len(t)):
        p, q = int(t.price[i]), int(t.qty[i])
        if spec.market == "cm":
            third = _fmt_one(round(q * spec.contract_size * 10 ** (8 + spec.price_decimals) / p), 8)  # base asset
        elif spec.market == "spot":
            third = _fmt_one(p * q * 10 ** (16 - spec.price_decimals - qd) // 10 ** 8, 8)
        else:
            third = _fmt_one(p * q, spec.price_decimals + qd)
        row = [str(int(t.ids[i])), _price_text(spec, p), _qty_text(spec, q), third, str(int(t.time[i])),
               _bool(spec, bool(t.buyer_maker[i]))]
        if spec.market == "spot":
            row.append("True")
        lines.append(",".join(row))
    return lines


def agg_trades_lines(spec: SymbolSpec, d: date) -> list[str]:
    t = day_trades(spec, d)
    if not len(t):
        return []
    starts = np.flatnonzero(np.concatenate(([True], t.group[1:] != t.group[:-1])))
    ends = np.concatenate((starts[1:], [len(t)])) - 1
    qty = np.add.reduceat(t.qty, starts)
    base = 1_000_000 * (d - EPOCH).days
    lines = []
    for j, (a, b) in enumerate(zip(starts, ends)):
        row = [str(base + j), _price_text(spec, int(t.price[a])), _qty_text(spec, int(qty[j])), str(int(t.ids[a])),
               str(int(t.ids[b])), str(int(t.time[a])), _bool(spec, bool(t.buyer_maker[a]))]
        if spec.market == "spot":
            row.append("True")
        lines.append(",".join(row))
    return lines


# ---- kline-like ------------------------------------------------------------------------------

def _kline_body(spec: SymbolSpec, dataset: str, interval: str, d: date) -> list[str]:
    bars = day_bars(spec, interval, d, archive=True)
    if not len(bars):
        return []
    if dataset == "klines":
        text = kline_csv(spec, bars, interval, d).decode()
        lines = text.splitlines()
        return lines[1:] if spec.market != "spot" else lines
    pd = spec.price_decimals
    out = []
    for i in range(len(bars)):
        o, h, lo, c = (int(getattr(bars, k)[i]) for k in ("open", "high", "low", "close"))
        if dataset == "premiumIndexKlines":
            # A premium index: small signed ratios, 8 decimals.
            vals = [_fmt_one((x % 2000) - 1000, 8) for x in (o, h, lo, c)]
            vals[1], vals[2] = max(vals, key=float), min(vals, key=float)
        else:
            shift = 1 if dataset == "markPriceKlines" else -1
            vals = [_fmt_one(max(1, x + shift), pd) for x in (o, h, lo, c)]
        out.append(",".join([str(int(bars.open_time[i])), *vals, "0", str(int(bars.close_time[i])), "0",
                             str(int(INTERVAL_MS[interval] // 1000)), "0", "0", "0"]))
    return out


# ---- order book, metrics ---------------------------------------------------------------------

def book_ticker_lines(spec: SymbolSpec, d: date, every_ms: int = 10 * MINUTE_MS) -> list[str]:
    mask = minute_mask(spec, d, archive=True)
    n_day = (d - EPOCH).days
    rng = _rng(spec, "bookTicker", n_day)
    path = _day_path(spec, n_day)
    lines = []
    for k, t in enumerate(range(0, 86_400_000, every_ms)):
        m = t // MINUTE_MS
        if not mask[m]:
            continue
        mid = int(path["close"][m])
        when = day_ms(d) + t + int(rng.integers(0, 1000))
        bid_q, ask_q = (int(x) for x in rng.integers(1, 5000, 2))
        lines.append(",".join([str(n_day * 100_000 + k), _price_text(spec, mid - 1), _qty_text(spec, bid_q),
                               _price_text(spec, mid + 1), _qty_text(spec, ask_q), str(when), str(when + 3)]))
    return lines


def book_depth_lines(spec: SymbolSpec, d: date, every_s: int = 1800) -> list[str]:
    mask = minute_mask(spec, d, archive=True)
    n_day = (d - EPOCH).days
    rng = _rng(spec, "bookDepth", n_day)
    path = _day_path(spec, n_day)
    lines = []
    for s in range(0, 86_400, every_s):
        m = s // 60
        if not mask[m]:
            continue
        stamp = _stamp(day_ms(d) + s * 1000 + int(rng.integers(0, 30)) * 1000)
        mid = int(path["close"][m]) * 10.0 ** -spec.price_decimals
        for pct in BOOK_DEPTH_PERCENTAGES:
            depth = abs(pct) * float(rng.uniform(100, 200))
            lines.append(f"{stamp},{pct},{depth:.3f},{depth * mid * (1 + pct / 100):.4f}")
    return lines


def metrics_lines(spec: SymbolSpec, d: date) -> list[str]:
    mask = minute_mask(spec, d, archive=True)
    n_day = (d - EPOCH).days
    rng = _rng(spec, "metrics", n_day)
    path = _day_path(spec, n_day)
    lines = []
    for m in range(0, 1440, 5):
        if not mask[m]:
            continue
        oi = float(rng.uniform(50_000, 60_000))
        price = int(path["close"][m]) * 10.0 ** -spec.price_decimals
        ratios = rng.uniform(0.5, 2.5, 4)
        lines.append(f"{_stamp(day_ms(d) + m * MINUTE_MS)},{spec.symbol},{oi:.4f},{oi * price:.8f},"
                     f"{ratios[0]:.10f},{ratios[1]:.5f},{ratios[2]:.10f},{ratios[3]:.5f}")
    return lines


# ---- one file's CSV ----------------------------------------------------------------------

def _header(spec: SymbolSpec, dataset: str) -> str | None:
    if spec.market == "spot":
        return None
    from .archive import FUNDING_HEADER, KLINE_HEADER

    return {"trades": TRADES_HEADER.get(spec.market), "aggTrades": AGG_TRADES_HEADER, "bookTicker": BOOK_TICKER_HEADER,
            "bookDepth": BOOK_DEPTH_HEADER, "metrics": METRICS_HEADER, "fundingRate": FUNDING_HEADER,
            "liquidationSnapshot": LIQUIDATION_HEADER}.get(dataset, KLINE_HEADER)


def day_lines(spec: SymbolSpec, dataset: str, d: date, interval: str | None = None) -> list[str]:
    """The rows (no header) a daily file of `dataset` holds for day `d`."""
    if dataset in KLINE_LIKE:
        return _kline_body(spec, dataset, interval or "1h", d)
    makers: dict[str, Callable[[SymbolSpec, date], list[str]]] = {
        "trades": trades_lines, "aggTrades": agg_trades_lines, "bookTicker": book_ticker_lines,
        "bookDepth": book_depth_lines, "metrics": metrics_lines, "liquidationSnapshot": liquidation_lines,
    }
    return makers[dataset](spec, d)


def file_csv(spec: SymbolSpec, dataset: str, days: Iterable[date], interval: str | None = None) -> tuple[bytes, int]:
    """(CSV bytes, rows) of a file covering `days`: the header once, then each day's rows."""
    rows: list[str] = []
    for d in days:
        rows.extend(day_lines(spec, dataset, d, interval))
    header = _header(spec, dataset)
    text = "\n".join(([header] if header else []) + rows)
    return (text + "\n").encode() if rows or header else b"", len(rows)


# ---- build -----------------------------------------------------------------------------------

def _months(days: list[date], last_archive_day: date) -> dict[tuple[int, int], list[date]]:
    """Months complete before the publication cutoff, with their archive days."""
    out: dict[tuple[int, int], list[date]] = {}
    for d in days:
        month_end = date(d.year, d.month, calendar.monthrange(d.year, d.month)[1])
        if month_end <= last_archive_day:
            out.setdefault((d.year, d.month), []).append(d)
    return out


def build_datasets(universe: Universe, root: Path, *, datasets: Iterable[str] | None = None,
                   interval: str = "1h", markets: Iterable[str] | None = None,
                   compress_level: int = COMPRESS_LEVEL) -> ArchiveSummary:
    """Write every dataset of every symbol (daily and monthly files) under `root`.

    `interval` is the one kline interval written for the kline-like datasets; `datasets` and
    `markets` restrict what is built. Also writes `root/universe.json`.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / UNIVERSE_FILE).write_text(universe.to_json())
    wanted = set(datasets) if datasets is not None else set(SHAPES)
    summary = ArchiveSummary(root=root)
    done: set[tuple[str, str, str]] = set()
    for spec in universe.symbols:
        if markets is not None and spec.market not in markets:
            continue
        days = archive_days(universe, spec)
        months = _months(days, universe.last_archive_day)
        for dataset in datasets_of(spec.market):
            symbol = dataset_symbol(spec, dataset)
            if dataset not in wanted or symbol is None or (spec.market, dataset, symbol) in done:
                continue
            done.add((spec.market, dataset, symbol))
            shape = SHAPES[dataset]
            step = interval if dataset in KLINE_LIKE else None
            jobs: list[tuple[str, list[date], date]] = []
            if shape.daily:
                jobs += [(dataset_key(spec.market, DAILY, dataset, symbol, d.isoformat(), step), [d], d + timedelta(days=1))
                         for d in days]
            if shape.monthly:
                for (y, m), month_days in months.items():
                    stamp = f"{y:04d}-{m:02d}"
                    published = date(y + (m == 12), m % 12 + 1, 1) + timedelta(days=1)
                    jobs.append((dataset_key(spec.market, MONTHLY, dataset, symbol, stamp, step), month_days, published))
            for key, file_days, published in jobs:
                if dataset == "fundingRate":
                    y, m = file_days[0].year, file_days[0].month
                    csv, rows = funding_csv(spec, y, m)
                else:
                    csv, rows = file_csv(spec, dataset, file_days, step)
                if not rows:
                    continue  # nothing traded: Binance publishes no file
                summary.zip_bytes += write_zip_object(root, key, csv, published, level=compress_level)
                summary.zips += 1
                summary.checksums += 1
                summary.csv_bytes += len(csv)
                summary.files_by_kind[f"{spec.market}/{dataset}"] += 1
    return summary


# ---- the universe of the dataset tests -------------------------------------------------------

DATASETS_NOW_MS = iso_to_ms("2025-01-04T12:00:00.000Z")  # last archive day: 2025-01-01


def datasets_universe(seed: int = 20250104) -> Universe:
    """A few symbols per market from 2024-11-30 (one day of November, all of December, and
    2025-01-01, where spot switches to microseconds); stablecoin and leveraged spot names for
    the filters; spot ETHUSDT listed on 2024-12-03 10:00; delivery contracts; liquidation
    snapshots for UM ETHUSDT (as before Binance removed them) and COIN-M BTCUSD_PERP."""
    first, today = date(2024, 11, 30), date(2025, 1, 4)

    def s(market: str, symbol: str, price: float, **kw) -> SymbolSpec:
        kw.setdefault("first_day", first)
        return SymbolSpec(market=market, symbol=symbol, base_price=price, last_day=today, **kw)

    eight = ((date(2019, 1, 1), 8),)
    symbols = (
        s("spot", "BTCUSDT", 94_500.0, price_decimals=2, qty_decimals=5, volume_scale=1_500_000),
        s("spot", "ETHUSDT", 3_380.0, price_decimals=2, qty_decimals=4, volume_scale=600_000,
          first_day=date(2024, 12, 3), first_day_start_minute=600),
        s("spot", "USDCUSDT", 1.0002, price_decimals=4, qty_decimals=0, volume_scale=300_000, volatility=0.01),
        s("spot", "BTCUPUSDT", 42.5, price_decimals=3, qty_decimals=2, volume_scale=5_000, volatility=3.0),
        s("um", "BTCUSDT", 94_560.0, price_decimals=1, qty_decimals=3, volume_scale=6_000_000,
          funding=True, funding_interval_hours=eight),
        s("um", "ETHUSDT", 3_382.0, price_decimals=2, qty_decimals=3, volume_scale=3_000_000,
          funding=True, funding_interval_hours=eight, liquidation=True),
        s("um", "BTCUSDT_250328", 96_450.0, price_decimals=1, qty_decimals=3, volume_scale=300_000),
        s("cm", "BTCUSD_PERP", 94_550.0, price_decimals=1, volume_scale=800_000,
          funding=True, funding_interval_hours=eight, liquidation=True),
        s("cm", "BTCUSD_250328", 96_780.0, price_decimals=1, volume_scale=150_000),
    )
    return Universe(seed=seed, symbols=symbols, now_ms=DATASETS_NOW_MS)
