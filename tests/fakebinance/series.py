"""Deterministic market series: klines, funding and liquidations of a `SymbolSpec`.

Every value is a pure function of (spec.seed, market, symbol, bar time): each UTC day's 1m
path is generated on its own from a seed derived from (seed, market, symbol, day), between
two deterministic daily anchors (so day d closes where day d+1 opens). Longer intervals
aggregate the 1m bars of the day, 1s bars refine each minute. Hence a REST window and an
archive file built at different times hold the same rows.

Internally values are integers in fixed decimal units (price ticks, quantity steps, ...),
so every text rendering (archive CSV, REST JSON) is exact and identical.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .universe import DAY_MS, EPOCH, MINUTE_MS, SymbolSpec, day_ms, ms_day

INTERVAL_MS: dict[str, int] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
}
KLINE_COLUMNS = (
    "open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
    "count", "taker_buy_volume", "taker_buy_quote_volume", "ignore",
)
MINUTES_PER_DAY = 1440


def intervals_for(market: str) -> tuple[str, ...]:
    """Intervals with daily archive files and REST support for a market (1s is spot only)."""
    return tuple(i for i in INTERVAL_MS if market == "spot" or i != "1s")


# =========================================================================================
# Integer-unit bars
# =========================================================================================


@dataclass
class Bars:
    """Kline rows in integer units: prices in ticks (10^-price_dec), volume in qty steps."""

    open_time: np.ndarray
    close_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    quote_volume: np.ndarray
    count: np.ndarray
    taker_buy_volume: np.ndarray
    taker_buy_quote_volume: np.ndarray
    price_dec: int
    qty_dec: int
    quote_dec: int

    _ARRAYS = ("open_time", "close_time", "open", "high", "low", "close", "volume", "quote_volume",
               "count", "taker_buy_volume", "taker_buy_quote_volume")

    def __len__(self) -> int:
        return len(self.open_time)

    def take(self, index) -> "Bars":
        return Bars(**{k: getattr(self, k)[index] for k in self._ARRAYS},
                    price_dec=self.price_dec, qty_dec=self.qty_dec, quote_dec=self.quote_dec)

    @classmethod
    def concat(cls, parts: list["Bars"], spec: SymbolSpec) -> "Bars":
        if not parts:
            return empty_bars(spec)
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        return cls(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in cls._ARRAYS},
                   price_dec=first.price_dec, qty_dec=first.qty_dec, quote_dec=first.quote_dec)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The 12 Binance columns as numpy arrays (times int64 ms, values float64)."""
        return {
            "open_time": self.open_time.astype(np.int64),
            "open": _scale(self.open, self.price_dec),
            "high": _scale(self.high, self.price_dec),
            "low": _scale(self.low, self.price_dec),
            "close": _scale(self.close, self.price_dec),
            "volume": _scale(self.volume, self.qty_dec),
            "close_time": self.close_time.astype(np.int64),
            "quote_volume": _scale(self.quote_volume, self.quote_dec),
            "count": self.count.astype(np.int64),
            "taker_buy_volume": _scale(self.taker_buy_volume, self.qty_dec),
            "taker_buy_quote_volume": _scale(self.taker_buy_quote_volume, self.quote_dec),
            "ignore": np.zeros(len(self), dtype=np.int64),
        }


def _scale(units: np.ndarray, dec: int) -> np.ndarray:
    # Division by a power of ten gives the double nearest to the decimal value.
    return units.astype(np.float64) / float(10 ** dec)


def quote_decimals(spec: SymbolSpec) -> int:
    if spec.market == "cm":
        return 8  # column 8 of COIN-M files is the base-asset volume
    return min(8, spec.price_decimals + spec.qty_decimals)


def empty_bars(spec: SymbolSpec) -> Bars:
    z = np.zeros(0, dtype=np.int64)
    return Bars(*(z for _ in range(11)), price_dec=spec.price_decimals, qty_dec=spec.qty_decimals,
                quote_dec=quote_decimals(spec))


# =========================================================================================
# Seeds and anchors
# =========================================================================================


def _seed_int(spec: SymbolSpec, *parts: object) -> int:
    text = repr((spec.seed, spec.market, spec.symbol) + parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=16).digest(), "little")


def _rng(spec: SymbolSpec, *parts: object) -> np.random.Generator:
    return np.random.default_rng(_seed_int(spec, *parts))


_PERIODS = (5.0, 13.0, 37.0, 97.0, 331.0)
_AMPLITUDES = (0.008, 0.016, 0.035, 0.07, 0.16)


@lru_cache(maxsize=4096)
def _anchor_params(seed: int, market: str, symbol: str) -> tuple[np.ndarray, np.ndarray]:
    h = hashlib.blake2b(repr((seed, market, symbol, "anchor")).encode(), digest_size=16).digest()
    rng = np.random.default_rng(int.from_bytes(h, "little"))
    phases = rng.uniform(0, 2 * math.pi, len(_PERIODS))
    amps = np.array(_AMPLITUDES) * rng.uniform(0.6, 1.4, len(_PERIODS))
    return phases, amps


def _wave(spec: SymbolSpec, n: int) -> float:
    phases, amps = _anchor_params(spec.seed, spec.market, spec.symbol)
    x = 2 * math.pi * n / np.array(_PERIODS) + phases
    noise = float(_rng(spec, "anchor-noise", n).standard_normal()) * 0.006
    return float(np.dot(amps, np.sin(x))) + noise


def log_anchor(spec: SymbolSpec, n: int) -> float:
    """Log price at 00:00 UTC of day number n (days since 1970-01-01), before any jump."""
    n0 = (spec.first_day - EPOCH).days
    return math.log(spec.base_price) + spec.volatility * (_wave(spec, n) - _wave(spec, n0))


# =========================================================================================
# One day of 1m bars (the whole day; masks are applied later)
# =========================================================================================


@lru_cache(maxsize=2048)
def _day_path(spec: SymbolSpec, n: int) -> dict[str, np.ndarray]:
    """All 1440 one-minute bars of day n in integer units, read-only arrays."""
    N = MINUTES_PER_DAY
    rng = _rng(spec, "day", n)
    t0 = n * DAY_MS
    open_ms = t0 + np.arange(N, dtype=np.int64) * MINUTE_MS
    a0, a1 = log_anchor(spec, n), log_anchor(spec, n + 1)
    sigma = 0.02 * spec.volatility / math.sqrt(N)
    w = np.cumsum(rng.standard_normal(N) * sigma)
    frac = np.arange(1, N + 1) / N
    log_close = a0 + w - frac * w[-1] + frac * (a1 - a0)
    mult = np.ones(N)
    if spec.jump is not None:
        mult[open_ms >= spec.jump[0]] = spec.jump[1]
    tick = 10.0 ** -spec.price_decimals
    close_f = np.exp(log_close) * mult
    prev_f = np.exp(np.concatenate(([a0], log_close[:-1]))) * mult
    o = np.maximum(np.rint(prev_f / tick), 1).astype(np.int64)
    c = np.maximum(np.rint(close_f / tick), 1).astype(np.int64)

    # A few bars per day without trades: flat at the previous close, volume 0.
    n_zero = int(rng.integers(1, 4))
    zero = np.sort(rng.choice(np.arange(3, N - 3, 3), n_zero, replace=False))
    for z in zero:
        c[z] = o[z]
        o[z + 1] = c[z]

    hl = np.abs(rng.standard_normal((2, N))) * sigma * 0.7
    price = c * tick
    h = np.maximum(o, c) + np.ceil(hl[0] * price / tick).astype(np.int64)
    lo = np.maximum(np.minimum(o, c) - np.floor(hl[1] * price / tick).astype(np.int64), 1)
    h[zero] = o[zero]
    lo[zero] = o[zero]
    vwap = np.clip(np.rint((o + h + lo + c) / 4.0).astype(np.int64), lo, h)

    hour = (np.arange(N) // 60).astype(np.float64)
    season = 1.0 + 0.6 * np.exp(-((hour - 14.5) ** 2) / 8.0)
    move = np.abs(np.diff(np.concatenate(([a0], log_close)))) / max(sigma, 1e-12)
    notional = spec.volume_scale * season * rng.lognormal(-0.25, 0.7, N) * (0.6 + 0.4 * move)
    taker_ratio = rng.uniform(0.25, 0.75, N)
    vwap_price = vwap * tick
    if spec.market == "cm":
        vol = np.maximum(np.rint(notional / spec.contract_size), 1).astype(np.int64)
        taker = np.rint(vol * taker_ratio).astype(np.int64)
        per_contract = spec.contract_size * 1e8 / vwap_price  # base units (1e-8) per contract
        quote = np.rint(vol * per_contract).astype(np.int64)
        taker_quote = np.rint(taker * per_contract).astype(np.int64)
    else:
        vol = np.maximum(np.rint(notional / vwap_price * 10 ** spec.qty_decimals), 1).astype(np.int64)
        taker = np.rint(vol * taker_ratio).astype(np.int64)
        excess = spec.price_decimals + spec.qty_decimals - quote_decimals(spec)
        quote = _div_round(vol * vwap, 10 ** excess)
        taker_quote = _div_round(taker * vwap, 10 ** excess)
    trade_size = spec.volume_scale / 400.0
    count = np.maximum(np.rint(notional / trade_size * rng.uniform(0.6, 1.4, N)), 1).astype(np.int64)
    for arr in (vol, taker, quote, taker_quote, count):
        arr[zero] = 0

    out = {"open_time": open_ms, "open": o, "high": h, "low": lo, "close": c, "volume": vol,
           "quote_volume": quote, "count": count, "taker_buy_volume": taker,
           "taker_buy_quote_volume": taker_quote}
    for arr in out.values():
        arr.setflags(write=False)
    return out


def _div_round(x: np.ndarray, div: int) -> np.ndarray:
    if div == 1:
        return x.astype(np.int64)
    return ((x + div // 2) // div).astype(np.int64)


def minute_mask(spec: SymbolSpec, d: date, *, archive: bool = False) -> np.ndarray:
    """Which of the day's 1440 minutes have a bar (listing, delisting, halts, holes)."""
    mask = np.zeros(MINUTES_PER_DAY, dtype=bool)
    if not spec.trades_on(d):
        return mask
    lo = spec.first_day_start_minute if d == spec.first_day else 0
    hi = spec.last_day_end_minute if d == spec.last_day else MINUTES_PER_DAY
    if archive and d in spec.partial_archive_days:
        hi = min(hi, spec.partial_archive_end_minute)
    mask[lo:hi] = True
    t0 = day_ms(d)
    for a, b in spec.halts:
        ia = max(0, -(-(a - t0) // MINUTE_MS))
        ib = min(MINUTES_PER_DAY, max(0, -(-(b - t0) // MINUTE_MS)))
        if ia < ib:
            mask[ia:ib] = False
    for hd, a, b in spec.hole_minutes:
        if hd == d:
            mask[a:b] = False
    return mask


def _partial(bars: Bars, i: int, frac: float) -> None:
    """Turn row i into a still-forming bar that has seen `frac` of its interval."""
    o = bars.open[i]
    c = o + int(round((bars.close[i] - o) * frac))
    bars.close[i] = c
    bars.high[i] = max(o, c, o + int((bars.high[i] - o) * frac))
    bars.low[i] = min(o, c, o - int((o - bars.low[i]) * frac))
    for name in ("volume", "quote_volume", "count", "taker_buy_volume", "taker_buy_quote_volume"):
        arr = getattr(bars, name)
        arr[i] = int(arr[i] * frac)


def _day_minutes(spec: SymbolSpec, d: date, now_ms: int | None, archive: bool) -> Bars:
    n = (d - EPOCH).days
    path = _day_path(spec, n)
    mask = minute_mask(spec, d, archive=archive)
    if now_ms is not None:
        mask &= path["open_time"] <= now_ms
    idx = np.flatnonzero(mask)
    bars = Bars(
        open_time=path["open_time"][idx],
        close_time=path["open_time"][idx] + (MINUTE_MS - 1),
        open=path["open"][idx], high=path["high"][idx], low=path["low"][idx], close=path["close"][idx],
        volume=path["volume"][idx], quote_volume=path["quote_volume"][idx], count=path["count"][idx],
        taker_buy_volume=path["taker_buy_volume"][idx],
        taker_buy_quote_volume=path["taker_buy_quote_volume"][idx],
        price_dec=spec.price_decimals, qty_dec=spec.qty_decimals, quote_dec=quote_decimals(spec),
    )
    if now_ms is not None and len(bars) and bars.open_time[-1] + MINUTE_MS > now_ms:
        _partial(bars, len(bars) - 1, (now_ms - bars.open_time[-1] + 1) / MINUTE_MS)
    return bars


def _aggregate(m: Bars, interval_ms: int) -> Bars:
    if interval_ms == MINUTE_MS or len(m) == 0:
        return m
    group = m.open_time // interval_ms
    starts = np.flatnonzero(np.concatenate(([True], group[1:] != group[:-1])))
    ends = np.concatenate((starts[1:], [len(m)])) - 1
    open_time = group[starts] * interval_ms
    return Bars(
        open_time=open_time,
        close_time=open_time + interval_ms - 1,
        open=m.open[starts], close=m.close[ends],
        high=np.maximum.reduceat(m.high, starts), low=np.minimum.reduceat(m.low, starts),
        volume=np.add.reduceat(m.volume, starts), quote_volume=np.add.reduceat(m.quote_volume, starts),
        count=np.add.reduceat(m.count, starts),
        taker_buy_volume=np.add.reduceat(m.taker_buy_volume, starts),
        taker_buy_quote_volume=np.add.reduceat(m.taker_buy_quote_volume, starts),
        price_dec=m.price_dec, qty_dec=m.qty_dec, quote_dec=m.quote_dec,
    )


def _seconds(spec: SymbolSpec, d: date, m: Bars, now_ms: int | None) -> Bars:
    """Refine a day's 1m bars into 1s bars (same open/close per minute, volume split exactly)."""
    M = len(m)
    if M == 0:
        return m
    rng = _rng(spec, "seconds", (d - EPOCH).days)
    sigma = 0.02 * spec.volatility / math.sqrt(86_400)
    w = np.cumsum(rng.standard_normal((M, 60)) * sigma, axis=1)
    frac = np.arange(1, 61) / 60.0
    target = np.log(m.close / m.open)[:, None]
    path = m.open[:, None] * np.exp(w - frac * w[:, -1:] + frac * target)
    c = np.clip(np.rint(path).astype(np.int64), m.low[:, None], m.high[:, None])
    c[:, -1] = m.close
    p = rng.dirichlet(np.ones(60) * 0.8, M)
    vol = rng.multinomial(m.volume, p) if M else np.zeros((0, 60), np.int64)
    cnt = rng.multinomial(m.count, p)
    vol = np.where(cnt == 0, 0, vol)
    cnt = np.where(vol == 0, 0, cnt)
    # no trade in a second: flat at the previous close
    has = vol > 0
    last = np.where(has, np.arange(60)[None, :], -1)
    last = np.maximum.accumulate(last, axis=1)
    c = np.where(last >= 0, np.take_along_axis(c, np.maximum(last, 0), axis=1), m.open[:, None])
    c[:, -1] = np.where(has[:, -1], m.close, c[:, -1])
    o = np.concatenate((m.open[:, None], c[:, :-1]), axis=1)
    wig = np.abs(rng.standard_normal((2, M, 60))) * sigma * 0.5 * m.open[:, None]
    h = np.minimum(np.maximum(o, c) + np.floor(wig[0]).astype(np.int64), m.high[:, None])
    lo = np.maximum(np.minimum(o, c) - np.floor(wig[1]).astype(np.int64), m.low[:, None])
    h = np.where(has, h, o)
    lo = np.where(has, lo, o)
    vwap = np.clip(np.rint((o + h + lo + c) / 4.0).astype(np.int64), lo, h)
    taker = np.rint(vol * rng.uniform(0.25, 0.75, (M, 60))).astype(np.int64)
    if spec.market == "cm":
        per = spec.contract_size * 1e8 / (vwap * 10.0 ** -spec.price_decimals)
        quote = np.rint(vol * per).astype(np.int64)
        tq = np.rint(taker * per).astype(np.int64)
    else:
        excess = spec.price_decimals + spec.qty_decimals - quote_decimals(spec)
        quote = _div_round(vol * vwap, 10 ** excess)
        tq = _div_round(taker * vwap, 10 ** excess)
    open_time = (m.open_time[:, None] + np.arange(60)[None, :] * 1000).ravel()
    bars = Bars(open_time=open_time, close_time=open_time + 999, open=o.ravel(), high=h.ravel(),
                low=lo.ravel(), close=c.ravel(), volume=vol.ravel(), quote_volume=quote.ravel(),
                count=cnt.ravel(), taker_buy_volume=taker.ravel(), taker_buy_quote_volume=tq.ravel(),
                price_dec=m.price_dec, qty_dec=m.qty_dec, quote_dec=m.quote_dec)
    if now_ms is not None:
        keep = bars.open_time <= now_ms
        if not keep.all():
            bars = bars.take(np.flatnonzero(keep))
    return bars


def day_bars(spec: SymbolSpec, interval: str, d: date, *, now_ms: int | None = None,
             archive: bool = False) -> Bars:
    """Every bar of one UTC day at an interval; `archive=True` applies partial archive days.

    With `now_ms`, bars opening after it are dropped and the bar holding it is still forming.
    """
    if interval not in INTERVAL_MS:
        raise ValueError(f"unknown interval {interval!r}")
    if interval == "1s" and spec.market != "spot":
        raise ValueError("1s klines exist for spot only")
    if interval == "1s":
        m = _day_minutes(spec, d, None, archive)
        return _seconds(spec, d, m, now_ms)
    return _aggregate(_day_minutes(spec, d, now_ms, archive), INTERVAL_MS[interval])


def _days(start_ms: int, end_ms: int) -> Iterator[date]:
    d = ms_day(start_ms)
    last = ms_day(end_ms - 1)
    while d <= last:
        yield d
        d += timedelta(days=1)


def kline_bars(spec: SymbolSpec, interval: str, start_ms: int, end_ms: int, *,
               now_ms: int | None = None, archive: bool = False) -> Bars:
    """Bars with open_time in [start_ms, end_ms), in integer units."""
    start_ms = max(start_ms, spec.start_ms - spec.start_ms % DAY_MS)
    end_ms = min(end_ms, spec.end_ms + DAY_MS)
    if now_ms is not None:
        end_ms = min(end_ms, now_ms + 1)
    parts = []
    for d in _days(start_ms, end_ms) if start_ms < end_ms else ():
        b = day_bars(spec, interval, d, now_ms=now_ms, archive=archive)
        if len(b) and (b.open_time[0] < start_ms or b.open_time[-1] >= end_ms):
            b = b.take(np.flatnonzero((b.open_time >= start_ms) & (b.open_time < end_ms)))
        if len(b):
            parts.append(b)
    return Bars.concat(parts, spec)


def klines(spec: SymbolSpec, interval: str, start_ms: int, end_ms: int, *,
           now_ms: int | None = None, archive: bool = False) -> dict[str, np.ndarray]:
    """The 12 Binance kline columns for open_time in [start_ms, end_ms), as numpy arrays."""
    return kline_bars(spec, interval, start_ms, end_ms, now_ms=now_ms, archive=archive).to_arrays()


def klines_table(spec: SymbolSpec, interval: str, start_ms: int, end_ms: int, **kw) -> pa.Table:
    """`klines` as a pyarrow Table."""
    return pa.table(klines(spec, interval, start_ms, end_ms, **kw))


# =========================================================================================
# Funding
# =========================================================================================


@dataclass
class FundingRows:
    """Funding settlements: nominal and reported (jittered) times, interval, rate, mark price."""

    nominal_ms: np.ndarray
    time_ms: np.ndarray  # calc_time / fundingTime, nominal + 0..9 ms
    interval_hours: np.ndarray
    rate: np.ndarray  # units of 1e-8
    mark: np.ndarray  # price ticks
    price_dec: int

    def __len__(self) -> int:
        return len(self.time_ms)

    def take(self, index) -> "FundingRows":
        return FundingRows(self.nominal_ms[index], self.time_ms[index], self.interval_hours[index],
                           self.rate[index], self.mark[index], self.price_dec)


@lru_cache(maxsize=8192)
def _funding_day(spec: SymbolSpec, n: int) -> tuple[np.ndarray, ...]:
    """(nominal, reported, interval_hours, rate) of day n's settlements."""
    d = EPOCH + timedelta(days=n)
    hours = spec.funding_hours_on(d)
    slots = np.arange(0, 24, hours, dtype=np.int64)
    nominal = n * DAY_MS + slots * 3_600_000
    rng = _rng(spec, "funding", n)
    k = len(slots)
    capped = rng.random(k) < 0.45
    rate = np.where(capped, 10_000, np.rint(rng.normal(9_000, 9_000 * spec.volatility, k))).astype(np.int64)
    jitter = rng.integers(0, 10, k)
    keep = np.array([spec.start_ms <= t < spec.end_ms and not spec.in_halt(t) for t in nominal], dtype=bool)
    return nominal[keep], nominal[keep] + jitter[keep], np.full(int(keep.sum()), hours, np.int64), rate[keep]


def _marks(spec: SymbolSpec, nominal: np.ndarray) -> np.ndarray:
    """Mark price (ticks) at each settlement: the open of the 1m bar at that minute."""
    out = np.zeros(len(nominal), dtype=np.int64)
    days = nominal // DAY_MS
    for n in np.unique(days):
        sel = days == n
        minute = (nominal[sel] - n * DAY_MS) // MINUTE_MS
        out[sel] = _day_path(spec, int(n))["open"][minute]
    return out


def funding_rows(spec: SymbolSpec, start_ms: int, end_ms: int, *, now_ms: int | None = None,
                 with_mark: bool = True) -> FundingRows:
    """Settlements with nominal time in [start_ms, end_ms) (and reported time <= now_ms).

    `with_mark=False` leaves mark prices at 0 (the archive CSV has none; it saves time).
    """
    empty = np.zeros(0, dtype=np.int64)
    if not spec.funding or not spec.is_perpetual:
        return FundingRows(empty, empty, empty, empty, empty, spec.price_decimals)
    start_ms = max(start_ms, spec.start_ms - spec.start_ms % DAY_MS)
    end_ms = min(end_ms, spec.end_ms)
    parts = [_funding_day(spec, (d - EPOCH).days) for d in _days(start_ms, end_ms)] if start_ms < end_ms else []
    if not parts:
        return FundingRows(empty, empty, empty, empty, empty, spec.price_decimals)
    cols = [np.concatenate([p[i] for p in parts]) for i in range(4)]
    keep = (cols[0] >= start_ms) & (cols[0] < end_ms)
    if now_ms is not None:
        keep &= cols[1] <= now_ms
    idx = np.flatnonzero(keep)
    nominal, reported, hours, rate = (c[idx] for c in cols)
    mark = _marks(spec, nominal) if with_mark else np.zeros(len(idx), dtype=np.int64)
    return FundingRows(nominal, reported, hours, rate, mark, spec.price_decimals)


def funding(spec: SymbolSpec, start_ms: int, end_ms: int, *, now_ms: int | None = None
            ) -> list[tuple[int, int, float, float]]:
    """(funding_time_ms, interval_hours, rate, mark_price) with nominal time in [start, end)."""
    r = funding_rows(spec, start_ms, end_ms, now_ms=now_ms)
    scale = 10.0 ** r.price_dec
    return [(int(t), int(h), float(x) / 1e8, float(m) / scale)
            for t, h, x, m in zip(r.time_ms, r.interval_hours, r.rate, r.mark)]


# =========================================================================================
# Liquidation snapshots
# =========================================================================================

LIQUIDATION_HEADER = ("time,side,order_type,time_in_force,original_quantity,price,average_price,"
                      "order_status,last_fill_quantity,accumulated_fill_quantity")


def liquidation_lines(spec: SymbolSpec, d: date) -> list[str]:
    """CSV lines (no header) of one day's liquidation orders, sorted by time."""
    mask = minute_mask(spec, d)
    minutes = np.flatnonzero(mask)
    if len(minutes) == 0:
        return []
    n = (d - EPOCH).days
    rng = _rng(spec, "liquidation", n)
    k = int(rng.poisson(6)) + 1
    pick = np.sort(rng.choice(minutes, k))
    path = _day_path(spec, n)
    t = day_ms(d) + pick * MINUTE_MS + rng.integers(0, MINUTE_MS, k)
    order = np.argsort(t, kind="stable")
    lines = []
    pd = spec.price_decimals
    for j in order:
        side = "SELL" if rng.random() < 0.5 else "BUY"
        px = int(path["close"][pick[j]])
        price = px + (-1 if side == "SELL" else 1) * int(rng.integers(1, 50))
        avg = px + (-1 if side == "SELL" else 1) * int(rng.integers(0, 20))
        if spec.market == "cm":
            qty = str(int(rng.integers(1, 300)))
            fill = str(int(rng.integers(1, int(qty) + 1)))
        else:
            units = int(rng.integers(1, 2000)) * max(1, 10 ** spec.qty_decimals // 1000)
            qty = _fmt_one(units, spec.qty_decimals)
            fill = _fmt_one(int(rng.integers(1, units + 1)), spec.qty_decimals)
        lines.append(f"{int(t[j])},{side},LIMIT,IOC,{qty},{_fmt_one(max(price, 1), pd)},"
                     f"{_fmt_one(max(avg, 1), pd)},FILLED,{fill},{qty}")
    return lines


# =========================================================================================
# Exact decimal text
# =========================================================================================


def _fmt_one(units: int, dec: int) -> str:
    if dec <= 0:
        return str(units)
    sign = "-" if units < 0 else ""
    a = abs(units)
    return f"{sign}{a // 10 ** dec}.{a % 10 ** dec:0{dec}d}"


def decimal_strings(units: np.ndarray, dec: int, out_dec: int | None = None) -> pa.Array:
    """Integer units of 10^-dec rendered with `out_dec` decimals (default `dec`), vectorised."""
    out_dec = dec if out_dec is None else out_dec
    units = np.asarray(units, dtype=np.int64)
    if out_dec > dec:
        units = units * 10 ** (out_dec - dec)
    elif out_dec < dec:
        units = _div_round(units, 10 ** (dec - out_dec))
    if out_dec == 0:
        return pc.cast(pa.array(units), pa.string())
    neg = units < 0
    a = np.abs(units)
    p = 10 ** out_dec
    ip = pc.cast(pa.array(a // p), pa.string())
    fp = pc.utf8_lpad(pc.cast(pa.array(a % p), pa.string()), width=out_dec, padding="0")
    text = pc.binary_join_element_wise(ip, fp, ".")
    if neg.any():
        text = pc.if_else(pa.array(neg), pc.binary_join_element_wise("-", text, ""), text)
    return text


def format_columns(columns: list[tuple[np.ndarray, int, int]]) -> list[pa.Array]:
    """Render several `(units, dec, out_dec)` columns at once (one pass per distinct out_dec)."""
    groups: dict[int, list[int]] = {}
    scaled: list[np.ndarray] = []
    for i, (units, dec, out_dec) in enumerate(columns):
        u = np.asarray(units, dtype=np.int64)
        if out_dec > dec:
            u = u * 10 ** (out_dec - dec)
        elif out_dec < dec:
            u = _div_round(u, 10 ** (dec - out_dec))
        scaled.append(u)
        groups.setdefault(out_dec, []).append(i)
    out: list[pa.Array | None] = [None] * len(columns)
    for out_dec, idx in groups.items():
        text = decimal_strings(np.concatenate([scaled[i] for i in idx]), out_dec)
        offset = 0
        for i in idx:
            n = len(scaled[i])
            out[i] = text.slice(offset, n)
            offset += n
    return out  # type: ignore[return-value]


def int_strings(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())
