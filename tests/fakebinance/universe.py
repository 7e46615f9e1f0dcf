"""The symbol universe of the fake Binance: which symbols trade when, and their quirks.

Everything here is plain data (frozen dataclasses) so a universe can be written to
`<root>/universe.json` by the archive builder and rebuilt by the server.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, timedelta, timezone
from functools import cached_property
from typing import Any

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
EPOCH = date(1970, 1, 1)

MARKETS = ("spot", "um", "cm")
PERPETUAL_DELIVERY_DATE = 4133404800000  # what Binance sends as deliveryDate of perpetuals

# Quote assets tried (longest first) when splitting a name into base and quote.
_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "BTC", "ETH", "BNB", "USD")


def day_ms(d: date) -> int:
    """Milliseconds at 00:00 UTC of a day."""
    return (d - EPOCH).days * DAY_MS


def ms_day(ms: int) -> date:
    """UTC day holding an epoch-ms instant."""
    return EPOCH + timedelta(days=ms // DAY_MS)


def ms_to_iso(ms: int) -> str:
    """`2025-01-13T12:34:56.789Z` for an epoch-ms instant."""
    dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def iso_to_ms(text: str) -> int:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(round(dt.timestamp() * 1000))


def split_symbol(market: str, symbol: str) -> tuple[str, str]:
    """(base, quote) guessed from the name; CM quotes are always USD."""
    pair = symbol.split("_")[0]
    if market == "cm":
        return pair[:-3], "USD"
    for quote in _QUOTES:
        if pair.endswith(quote) and len(pair) > len(quote):
            return pair[: -len(quote)], quote
    return pair[:-4], pair[-4:]


def _auto_price_decimals(price: float) -> int:
    # About six significant digits, like most Binance tick sizes.
    return int(min(8, max(0, 5 - math.floor(math.log10(price)))))


@dataclass(frozen=True)
class SymbolSpec:
    """One symbol of one market and everything that shapes its history.

    Times: days are UTC dates; `*_minute` are minutes of the UTC day (0..1440);
    `halts` are `[start_ms, end_ms)` windows without any bar (neither archive nor REST);
    `hole_minutes` are `(day, start_min, end_min)` exchange gaps (no bar anywhere either);
    `archive_missing_days` have no archive file but full REST data; `partial_archive_days`
    have an archive file that stops at `partial_archive_end_minute` while REST has the day.
    `jump = (at_ms, factor)` multiplies every price from the bar at `at_ms` on.
    `seed` is stamped in by `Universe`, so the series is a pure function of the spec.
    """

    market: str
    symbol: str
    first_day: date
    last_day: date
    base_price: float
    first_day_start_minute: int = 0
    last_day_end_minute: int = 1440
    archive_missing_days: tuple[date, ...] = ()
    partial_archive_days: tuple[date, ...] = ()
    partial_archive_end_minute: int = 456  # 07:36, like the spot files of 2025-04-22
    halts: tuple[tuple[int, int], ...] = ()
    jump: tuple[int, float] | None = None
    hole_minutes: tuple[tuple[date, int, int], ...] = ()
    funding: bool = False
    funding_interval_hours: tuple[tuple[date, int], ...] = ((date(2019, 1, 1), 8),)
    contract_size: float = 0.0
    liquidation: bool = False
    price_decimals: int | None = None
    qty_decimals: int | None = None
    volume_scale: float = 200_000.0  # typical notional per minute, in the quote asset
    volatility: float = 1.0  # 1.0 ≈ 2 % per day
    base_asset: str = ""
    quote_asset: str = ""
    delivery_day: date | None = None  # delivery contracts: settlement day (08:00 UTC)
    underlying_type: str = "COIN"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.market not in MARKETS:
            raise ValueError(f"market must be one of {MARKETS}, not {self.market!r}")
        if not self.base_asset or not self.quote_asset:
            base, quote = split_symbol(self.market, self.symbol)
            object.__setattr__(self, "base_asset", self.base_asset or base)
            object.__setattr__(self, "quote_asset", self.quote_asset or quote)
        if self.price_decimals is None:
            object.__setattr__(self, "price_decimals", _auto_price_decimals(self.base_price))
        if self.qty_decimals is None:
            qd = 0 if self.market == "cm" else int(min(8, max(0, math.floor(math.log10(self.base_price)) + 1)))
            object.__setattr__(self, "qty_decimals", qd)
        if self.market == "cm":
            object.__setattr__(self, "qty_decimals", 0)  # whole contracts
            if not self.contract_size:
                object.__setattr__(self, "contract_size", 100.0 if self.base_asset == "BTC" else 10.0)
        if self.delivery_day is None and "_" in self.symbol:
            suffix = self.symbol.split("_", 1)[1]
            if suffix.isdigit() and len(suffix) == 6:
                object.__setattr__(self, "delivery_day", date(2000 + int(suffix[:2]), int(suffix[2:4]), int(suffix[4:])))

    # ---- derived facts -------------------------------------------------------------------
    @property
    def tick(self) -> float:
        return 10.0 ** -self.price_decimals

    @property
    def is_perpetual(self) -> bool:
        return self.market != "spot" and self.delivery_day is None

    @property
    def start_ms(self) -> int:
        """Open time of the first bar ever."""
        return day_ms(self.first_day) + self.first_day_start_minute * MINUTE_MS

    @property
    def end_ms(self) -> int:
        """End (exclusive) of the last bar ever (before clamping to `now`)."""
        return day_ms(self.last_day) + self.last_day_end_minute * MINUTE_MS

    def trades_on(self, d: date) -> bool:
        """True if the day has at least one bar (ignores halts/holes)."""
        return self.first_day <= d <= self.last_day

    def funding_hours_on(self, d: date) -> int:
        hours = 8
        for since, h in sorted(self.funding_interval_hours):
            if since <= d:
                hours = h
        return hours

    def in_halt(self, ms: int) -> bool:
        return any(a <= ms < b for a, b in self.halts)


@dataclass(frozen=True)
class Universe:
    """A seed, the symbols, and the fake "current time" the REST API lives at."""

    seed: int
    symbols: tuple[SymbolSpec, ...]
    now_ms: int

    def __post_init__(self) -> None:
        stamped = tuple(s if s.seed == self.seed else replace(s, seed=self.seed) for s in self.symbols)
        object.__setattr__(self, "symbols", stamped)
        if len(self._index) != len(stamped):
            raise ValueError("duplicate (market, symbol) in the universe")

    @cached_property
    def _index(self) -> dict[tuple[str, str], SymbolSpec]:
        return {(s.market, s.symbol): s for s in self.symbols}

    # ---- look-ups ------------------------------------------------------------------------
    def get(self, market: str, symbol: str) -> SymbolSpec | None:
        return self._index.get((market, symbol))

    def spec(self, market: str, symbol: str) -> SymbolSpec:
        found = self.get(market, symbol)
        if found is None:
            raise KeyError(f"{market}:{symbol}")
        return found

    def market(self, market: str) -> tuple[SymbolSpec, ...]:
        return tuple(s for s in self.symbols if s.market == market)

    @property
    def now_iso(self) -> str:
        return ms_to_iso(self.now_ms)

    @property
    def today(self) -> date:
        return ms_day(self.now_ms)

    @property
    def publication_cutoff(self) -> date:
        """Daily archive files exist only for days strictly before this one (now − 2 days)."""
        return ms_day(self.now_ms - 2 * DAY_MS)

    @property
    def last_archive_day(self) -> date:
        return self.publication_cutoff - timedelta(days=1)

    # ---- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "now_ms": self.now_ms,
            "now": self.now_iso,
            "symbols": [_spec_to_dict(s) for s in self.symbols],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Universe":
        return cls(
            seed=int(data["seed"]),
            symbols=tuple(_spec_from_dict(d) for d in data["symbols"]),
            now_ms=int(data["now_ms"]),
        )

    @classmethod
    def from_json(cls, text: str) -> "Universe":
        return cls.from_dict(json.loads(text))


def _encode(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


def _spec_to_dict(spec: SymbolSpec) -> dict[str, Any]:
    return {f.name: _encode(getattr(spec, f.name)) for f in fields(spec)}


def _d(text: str) -> date:
    return date.fromisoformat(text)


_DECODERS = {
    "first_day": _d,
    "last_day": _d,
    "archive_missing_days": lambda v: tuple(_d(x) for x in v),
    "partial_archive_days": lambda v: tuple(_d(x) for x in v),
    "halts": lambda v: tuple((int(a), int(b)) for a, b in v),
    "jump": lambda v: None if v is None else (int(v[0]), float(v[1])),
    "hole_minutes": lambda v: tuple((_d(d), int(a), int(b)) for d, a, b in v),
    "funding_interval_hours": lambda v: tuple((_d(d), int(h)) for d, h in v),
    "delivery_day": lambda v: None if v is None else _d(v),
}


def _spec_from_dict(data: dict[str, Any]) -> SymbolSpec:
    known = {f.name for f in fields(SymbolSpec)}
    kwargs = {k: _DECODERS.get(k, lambda v: v)(v) for k, v in data.items() if k in known}
    return SymbolSpec(**kwargs)


# =========================================================================================
# The default universe: small, every quirk once, days straddling 2025-01-01.
# =========================================================================================

DEFAULT_FIRST_DAY = date(2024, 12, 25)
DEFAULT_LAST_ARCHIVE_DAY = date(2025, 1, 10)
DEFAULT_NOW_MS = iso_to_ms("2025-01-13T12:34:56.789Z")


def default_universe(seed: int = 20250113) -> Universe:
    """The universe of the test fixtures (see tests/fakebinance/__init__.py for a tour)."""
    first = DEFAULT_FIRST_DAY
    today = date(2025, 1, 13)

    def s(market: str, symbol: str, price: float, **kw: Any) -> SymbolSpec:
        kw.setdefault("first_day", first)
        kw.setdefault("last_day", today)
        return SymbolSpec(market=market, symbol=symbol, base_price=price, **kw)

    halt = (day_ms(date(2025, 1, 2)), day_ms(date(2025, 1, 5)))
    eight = ((date(2019, 1, 1), 8),)
    spot = [
        s("spot", "BTCUSDT", 94_500.0, price_decimals=2, qty_decimals=5, volume_scale=1_500_000,
          hole_minutes=((date(2025, 1, 2), 120, 210),)),
        s("spot", "ETHUSDT", 3_380.0, price_decimals=2, qty_decimals=4, volume_scale=600_000,
          archive_missing_days=(date(2024, 12, 28), date(2025, 1, 3), date(2025, 1, 4))),
        s("spot", "BTCUSDC", 94_480.0, price_decimals=2, qty_decimals=5, volume_scale=150_000,
          partial_archive_days=(date(2025, 1, 7),)),
        s("spot", "ETHBTC", 0.03578, price_decimals=5, qty_decimals=4, volume_scale=8.0),
        s("spot", "BTCFDUSD", 94_520.0, price_decimals=2, qty_decimals=5, volume_scale=900_000),
        s("spot", "USDCUSDT", 1.0002, price_decimals=4, qty_decimals=0, volume_scale=300_000, volatility=0.01),
        s("spot", "BTCUPUSDT", 42.5, price_decimals=3, qty_decimals=2, volume_scale=5_000, volatility=3.0),
        s("spot", "JUPUSDT", 0.8512, price_decimals=4, qty_decimals=2, volume_scale=40_000),
        s("spot", "WAVESUSDT", 1.062, price_decimals=4, qty_decimals=2, volume_scale=20_000,
          last_day=date(2025, 1, 5), last_day_end_minute=180),
        s("spot", "PENGUUSDT", 0.03512, price_decimals=5, qty_decimals=0, volume_scale=80_000,
          first_day=date(2024, 12, 30), first_day_start_minute=480),
        s("spot", "LUNAUSDT", 0.4512, price_decimals=4, qty_decimals=2, volume_scale=15_000,
          halts=(halt,), jump=(halt[1], 1.35)),
    ]
    um = [
        s("um", "BTCUSDT", 94_560.0, price_decimals=1, qty_decimals=3, volume_scale=6_000_000,
          funding=True, funding_interval_hours=eight, liquidation=True),
        s("um", "ETHUSDT", 3_382.0, price_decimals=2, qty_decimals=3, volume_scale=3_000_000,
          funding=True, funding_interval_hours=((date(2019, 1, 1), 8), (date(2024, 12, 29), 4)),
          liquidation=True, archive_missing_days=(date(2025, 1, 2),)),
        s("um", "1000PEPEUSDT", 0.019012, price_decimals=7, qty_decimals=0, volume_scale=500_000,
          funding=True, funding_interval_hours=eight),
        s("um", "BTCDOMUSDT", 3_215.0, price_decimals=1, qty_decimals=3, volume_scale=20_000,
          funding=True, funding_interval_hours=eight, underlying_type="INDEX"),
        s("um", "ETHBTC", 0.03580, price_decimals=5, qty_decimals=2, volume_scale=4.0,
          funding=True, funding_interval_hours=eight),
        s("um", "BTCUSDC", 94_540.0, price_decimals=1, qty_decimals=3, volume_scale=400_000,
          funding=True, funding_interval_hours=eight),
        s("um", "WAVESUSDT", 1.064, price_decimals=4, qty_decimals=1, volume_scale=30_000,
          funding=True, funding_interval_hours=eight, last_day=date(2025, 1, 5), last_day_end_minute=180),
        s("um", "BTCUSDT_250328", 96_450.0, price_decimals=1, qty_decimals=3, volume_scale=300_000),
    ]
    cm = [
        s("cm", "BTCUSD_PERP", 94_550.0, price_decimals=1, volume_scale=800_000,
          funding=True, funding_interval_hours=eight, liquidation=True),
        s("cm", "ETHUSD_PERP", 3_381.0, price_decimals=2, volume_scale=300_000,
          funding=True, funding_interval_hours=eight, liquidation=True,
          archive_missing_days=(date(2025, 1, 8),)),
        s("cm", "BTCUSD_250328", 96_780.0, price_decimals=1, volume_scale=150_000),
    ]
    return Universe(seed=seed, symbols=tuple(spot + um + cm), now_ms=DEFAULT_NOW_MS)


# =========================================================================================
# The bench universe: shaped like the "main" dataset of shared/bench-baseline.md.
# =========================================================================================

BENCH_BASES = (
    ("BTC", 60_000.0), ("ETH", 3_300.0), ("BNB", 560.0), ("SOL", 150.0), ("XRP", 0.55),
    ("DOGE", 0.12), ("ADA", 0.42), ("LINK", 13.5), ("AVAX", 27.0), ("LTC", 72.0),
    ("DOT", 6.2), ("TRX", 0.13), ("BCH", 380.0), ("ATOM", 7.1), ("ETC", 23.0),
    ("FIL", 4.3), ("NEAR", 5.6), ("APT", 7.4), ("UNI", 8.1), ("XLM", 0.095),
    ("ARB", 0.72), ("OP", 1.7), ("SUI", 0.88), ("AAVE", 96.0), ("INJ", 22.0),
    ("ALGO", 0.15), ("EOS", 0.55), ("SAND", 0.31), ("MANA", 0.33), ("AXS", 5.6),
)


def _bench_base(i: int) -> tuple[str, float]:
    if i < len(BENCH_BASES):
        return BENCH_BASES[i]
    letters = "".join(chr(ord("A") + (i // 26 ** k) % 26) for k in range(3))
    return f"X{letters}", 1.0 + (i % 17)


def bench_universe(n_symbols: int = 10, n_days: int = 365, start: date = date(2024, 7, 1),
                   seed: int = 7) -> Universe:
    """N base assets × (spot XXXUSDT, UM XXXUSDT, CM XXXUSD_PERP) over n_days from `start`.

    Quirks (positions scale with n_days; exact at 365): the last symbol is listed 91 days in
    from 08:00, the one before is delisted after 220 days (last day ends 03:00), the one
    before that halts 5 days and reopens ~40 % higher; symbols 0..2 each miss 3 isolated
    archive days and symbol 0 also 3 consecutive ones (12 in all); every symbol has a
    90-minute hole 02:00-03:30 on one day; funding every 8 h.
    """
    end = start + timedelta(days=n_days - 1)
    now_ms = day_ms(end + timedelta(days=3)) + 12 * HOUR_MS
    today = ms_day(now_ms)

    def at(frac_days: int) -> int:
        return max(0, min(n_days - 1, round(frac_days * n_days / 365)))

    listed = n_symbols - 1 if n_symbols >= 1 else None
    delisted = n_symbols - 2 if n_symbols >= 2 else None
    halted = n_symbols - 3 if n_symbols >= 3 else None
    missing_owners = [i for i in range(min(3, n_symbols)) if i not in (listed, delisted, halted)]

    symbols: list[SymbolSpec] = []
    for i in range(n_symbols):
        base, price = _bench_base(i)
        kw: dict[str, Any] = {"first_day": start, "last_day": today}
        special_days: set[int] = set()
        if i == listed and n_symbols > 1:
            kw["first_day"] = start + timedelta(days=at(91))
            kw["first_day_start_minute"] = 480
            special_days.add(at(91))
        if i == delisted:
            kw["last_day"] = start + timedelta(days=at(220) - 1)
            kw["last_day_end_minute"] = 180
            special_days.add(at(220) - 1)
        if i == halted:
            h0 = start + timedelta(days=at(150))
            halt = (day_ms(h0), day_ms(h0 + timedelta(days=5)))
            kw["halts"] = (halt,)
            kw["jump"] = (halt[1], 1.4)
            special_days.update(range(at(150), at(150) + 5))
        missing: list[int] = []
        if i in missing_owners:
            k = missing_owners.index(i)
            missing = [at(30) + 3 * k, at(120) + 5 * k, at(250) + 7 * k]
            if k == 0:
                missing += [at(300), at(300) + 1, at(300) + 2]
            missing = [m for m in missing if 0 <= m < n_days]
            special_days.update(missing)
        lo = (kw["first_day"] - start).days
        hi = min(n_days - 1, (kw["last_day"] - start).days)
        hole_day = lo + (at(100) + 11 * i - lo) % max(1, hi - lo + 1)
        for _ in range(n_days):
            if hole_day not in special_days and lo < hole_day < hi:
                break
            hole_day = lo + (hole_day + 1 - lo) % max(1, hi - lo + 1)
        hole = ((start + timedelta(days=hole_day), 120, 210),)
        missing_days = tuple(start + timedelta(days=m) for m in sorted(set(missing)))
        bp_dec = _auto_price_decimals(price)
        common = dict(kw, archive_missing_days=missing_days, hole_minutes=hole)
        symbols.append(SymbolSpec(market="spot", symbol=f"{base}USDT", base_price=price,
                                  price_decimals=bp_dec, volume_scale=400_000, **common))
        symbols.append(SymbolSpec(market="um", symbol=f"{base}USDT", base_price=price * 1.0005,
                                  price_decimals=bp_dec, volume_scale=1_500_000, funding=True, **common))
        symbols.append(SymbolSpec(market="cm", symbol=f"{base}USD_PERP", base_price=price * 1.0003,
                                  price_decimals=bp_dec, volume_scale=300_000, funding=True, **common))
    return Universe(seed=seed, symbols=tuple(symbols), now_ms=now_ms)
