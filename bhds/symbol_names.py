"""Symbol inference from archive names alone, and the download filters of contract §6.2.

The archive listing is the only symbol source (no exchangeInfo call), so base and quote are
guessed from the name: spot and USDⓈ-M by the longest known quote suffix, COIN-M by its fixed
`<BASE>USD_<PERP|YYMMDD>` form. A name that cannot be read is returned as unparsed, never
raised on, so one odd directory in the bucket does not stop a download.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bhds.errors import InputError
from bhds.paths import list_subdirs
from bhds.types import ContractType

# Quote assets Binance spot has used. Matching is longest-first, so FDUSD wins over USD-like
# tails and XRPRLUSD reads as XRP + RLUSD.
SPOT_QUOTES: frozenset[str] = frozenset({
    "USDT", "USDC", "FDUSD", "TUSD", "BUSD", "USDP", "USDS", "USDSB", "DAI", "PAX", "UST", "VAI", "RLUSD", "USD1",
    "BTC", "ETH", "BNB", "XRP", "TRX", "DOGE",
    "TRY", "EUR", "EURI", "AEUR", "GBP", "AUD", "BRL", "RUB", "UAH", "NGN", "ZAR", "PLN", "RON", "ARS", "JPY", "MXN",
    "COP", "CZK", "IDRT", "BIDR", "BKRW", "BVND",
})
UM_QUOTES: frozenset[str] = frozenset({"USDT", "USDC", "BUSD", "FDUSD", "BTC"})

# A longer quote that swallows the end of a known base: ADAEUR is ADA + EUR, not AD + AEUR.
# Maps the long quote to (the shorter quote, the bases for which the shorter reading is right).
QUOTE_OVERLAPS: dict[str, tuple[str, frozenset[str]]] = {
    "AEUR": ("EUR", frozenset({"ADA", "ENA", "GALA", "LUNA", "THETA"})),
}

# The contract's exact stablecoin set (§6.2).
STABLECOINS: frozenset[str] = frozenset({
    "BKRW", "USDC", "USDP", "TUSD", "BUSD", "FDUSD", "DAI", "EUR", "GBP", "USBP", "SUSD", "PAXG", "AEUR", "USDS", "USDSB",
})

LEVERAGE_SUFFIXES = ("UP", "DOWN", "BULL", "BEAR")
# Coins Binance issued leveraged tokens on; with the bases seen in the same listing they tell
# BTCUP (leveraged) from JUP or SYRUP (ordinary coins whose names merely end in UP).
LEVERAGE_UNDERLYINGS: frozenset[str] = frozenset({
    "BTC", "ETH", "BNB", "XRP", "LINK", "ADA", "DOT", "TRX", "EOS", "XTZ", "LTC", "BCH", "FIL", "SUSHI", "UNI", "YFI",
    "AAVE", "SXP", "XLM", "1INCH",
})

# Delisted contracts may carry a settlement suffix: LUNAUSDT_SETTLED, CVCUSDTSETTLED, X_SETTLED1.
_SETTLED_RE = re.compile(r"_?SETTLED\d*$")
_DELIVERY_RE = re.compile(r"^\d{6}$")
_NAME_RE = re.compile(r"^[0-9A-Z]+(_[0-9A-Z]+)*$")


@dataclass(frozen=True)
class SymbolInfo:
    """What a symbol name says about itself."""

    symbol: str
    base: str
    quote: str
    contract_type: ContractType | None = None  # None for spot
    is_leveraged: bool = False
    is_stablecoin: bool = False
    settled: bool = False


@dataclass
class Selection:
    """The outcome of filtering a listing: kept names in order, and names that could not be read."""

    kept: list[str] = field(default_factory=list)
    unparsed: list[str] = field(default_factory=list)


def split_quote(pair: str, quotes: Iterable[str]) -> tuple[str, str] | None:
    """(base, quote) by the longest quote that is a proper suffix of `pair`, or None."""
    matches = sorted((q for q in quotes if len(pair) > len(q) and pair.endswith(q)), key=len, reverse=True)
    if not matches:
        return None
    quote = matches[0]
    overlap = QUOTE_OVERLAPS.get(quote)
    if overlap is not None:
        shorter, bases = overlap
        if pair.endswith(shorter) and pair[: -len(shorter)] in bases:
            quote = shorter
    return pair[: -len(quote)], quote


def is_leveraged_base(base: str, known_bases: frozenset[str] = frozenset()) -> bool:
    """BTCUP, ETHBULL...: a leverage suffix on a coin that itself trades (or is a known underlying)."""
    for suffix in LEVERAGE_SUFFIXES:
        if base.endswith(suffix):
            underlying = base[: -len(suffix)]
            # A one-letter stem (JUP, SUP) is an ordinary coin; SYRUP's "SYR" is not a coin.
            if len(underlying) >= 2 and (underlying in LEVERAGE_UNDERLYINGS or underlying in known_bases):
                return True
    return False


def _strip_settled(symbol: str) -> tuple[str, bool]:
    stripped = _SETTLED_RE.sub("", symbol)
    return stripped, stripped != symbol


def infer_spot(symbol: str, known_bases: frozenset[str] = frozenset()) -> SymbolInfo | None:
    """Spot name → base/quote/leveraged/stablecoin, or None when no known quote ends it."""
    if not _NAME_RE.match(symbol) or "_" in symbol:
        return None
    split = split_quote(symbol, SPOT_QUOTES)
    if split is None:
        return None
    base, quote = split
    return SymbolInfo(symbol, base, quote, is_leveraged=is_leveraged_base(base, known_bases), is_stablecoin=base in STABLECOINS)


def infer_um(symbol: str) -> SymbolInfo | None:
    """USDⓈ-M name → perpetual (`BTCUSDT`) or delivery (`BTCUSDT_250328`), or None."""
    if not _NAME_RE.match(symbol):
        return None
    name, settled = _strip_settled(symbol)
    pair, _, suffix = name.partition("_")
    if suffix and not _DELIVERY_RE.match(suffix):
        return None
    split = split_quote(pair, UM_QUOTES)
    if split is None:
        return None
    contract = ContractType.DELIVERY if suffix else ContractType.PERPETUAL
    return SymbolInfo(symbol, split[0], split[1], contract_type=contract, settled=settled)


def infer_cm(symbol: str) -> SymbolInfo | None:
    """COIN-M name `<BASE>USD_PERP` or `<BASE>USD_YYMMDD`, or None."""
    if not _NAME_RE.match(symbol):
        return None
    name, settled = _strip_settled(symbol)
    parts = name.split("_")
    if len(parts) != 2:
        return None
    pair, suffix = parts
    if not pair.endswith("USD") or len(pair) <= 3:
        return None
    if suffix == "PERP":
        contract = ContractType.PERPETUAL
    elif _DELIVERY_RE.match(suffix):
        contract = ContractType.DELIVERY
    else:
        return None
    return SymbolInfo(symbol, pair[:-3], "USD", contract_type=contract, settled=settled)


def select_spot(symbols: Iterable[str], *, quote: str, stablecoins: bool, leverage_coins: bool) -> Selection:
    """Spot names with `quote`, without stablecoin bases and leveraged tokens unless asked for."""
    names = list(symbols)
    plain = [infer_spot(name) for name in names]
    known_bases = frozenset(info.base for info in plain if info is not None)
    result = Selection()
    for name, first in zip(names, plain):
        if first is None:
            result.unparsed.append(name)
            continue
        info = infer_spot(name, known_bases)
        assert info is not None
        if info.quote != quote:
            continue
        if info.is_stablecoin and not stablecoins:
            continue
        if info.is_leveraged and not leverage_coins:
            continue
        result.kept.append(name)
    return result


def select_um(symbols: Iterable[str], *, quote: str, contract_type: ContractType) -> Selection:
    """USDⓈ-M names with `quote` and `contract_type`."""
    result = Selection()
    for name in symbols:
        info = infer_um(name)
        if info is None:
            result.unparsed.append(name)
        elif info.quote == quote and info.contract_type == ContractType(contract_type):
            result.kept.append(name)
    return result


def select_cm(symbols: Iterable[str], *, contract_type: ContractType) -> Selection:
    """COIN-M names of `contract_type`."""
    result = Selection()
    for name in symbols:
        info = infer_cm(name)
        if info is None:
            result.unparsed.append(name)
        elif info.contract_type == ContractType(contract_type):
            result.kept.append(name)
    return result



def select_cm_pairs(symbols: Iterable[str]) -> Selection:
    """COIN-M index names, which are pairs (`BTCUSD`): every readable one is kept."""
    result = Selection()
    for name in symbols:
        if _NAME_RE.match(name) and "_" not in name and name.endswith("USD") and len(name) > 3:
            result.kept.append(name)
        else:
            result.unparsed.append(name)
    return result


# ---- symbols named on the command line ----------------------------------------------------

def closest_names(name: str, listed: Iterable[str], n: int = 3) -> list[str]:
    """The listed names nearest to `name`, best first (just the one, when only the case differs)."""
    import difflib  # only when a name is unknown

    by_upper = {s.upper(): s for s in listed}
    if name.upper() in by_upper:
        return [by_upper[name.upper()]]  # only the case was wrong
    return [by_upper[m] for m in difflib.get_close_matches(name.upper(), list(by_upper), n=n, cutoff=0.6)]


def check_listed(named: Iterable[str], listed: Iterable[str], where: str, fix: str) -> None:
    """Refuse (exit 2) every symbol of `named` that `listed` lacks, suggesting the closest listed names.

    `where` says which listing was asked (e.g. "in the archive under <url>" or "in the local
    archive <dir>"), `fix` what to do besides fixing a typo. An empty listing says nothing about a
    name (nothing downloaded yet): then nothing is refused and the command's own warnings explain.
    """
    listed = set(listed)
    unknown = [name for name in dict.fromkeys(named) if name not in listed]
    if unknown and listed:
        raise unknown_symbols(unknown, listed, f"not listed {where}", fix)


def unknown_symbols(unknown: Iterable[str], known: Iterable[str], problem: str, fix: str) -> InputError:
    """The exit-2 error for symbols nobody lists: each with the closest `known` names, then `fix`."""
    known = set(known)
    unknown = list(unknown)
    shown = []
    for name in unknown:
        near = closest_names(name, known)
        shown.append(f"{name!r}" + (f" (did you mean {' or '.join(near)}?)" if near else ""))
    what = "symbol" if len(unknown) == 1 else "symbols"
    return InputError(f"{what} {', '.join(shown)} {problem}: use the name as Binance lists it "
                      f"(capitals, e.g. BTCUSDT){'; ' + fix if fix else ''}", exit_code=2)


def listed_locally(*directories: Path) -> set[str]:
    """Symbol names that have a folder in any of `directories` (the local archive, parsed or API stores)."""
    return {name for directory in directories for name in list_subdirs(directory)}


def check_downloaded(named: Iterable[str], symbols_dir: Path, download: str) -> None:
    """Each named symbol must have a folder in the local archive `symbols_dir` (else exit 2, closest names)."""
    check_listed(named, listed_locally(symbols_dir), f"in the local archive {symbols_dir}", f"if it is new, run {download} first")
