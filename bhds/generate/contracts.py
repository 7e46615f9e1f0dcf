"""COIN-M contract sizes (USD per contract), from the cache the API stage writes, or Binance's rule."""

from __future__ import annotations

import logging
from pathlib import Path

from bhds.errors import DataError
from bhds.storage import read_json

log = logging.getLogger("bhds.generate")

CONTRACT_SIZES_CACHE = "cm_contract_sizes.json"
BTC_CONTRACT_USD = 100.0
OTHER_CONTRACT_USD = 10.0


def _pair(symbol: str) -> str:
    return symbol.split("_")[0]


def rule_size(symbol: str) -> float:
    """Binance's COIN-M rule: BTC contracts are worth 100 USD, every other coin's 10 USD."""
    return BTC_CONTRACT_USD if _pair(symbol) == "BTCUSD" else OTHER_CONTRACT_USD


def load_sizes(path: Path) -> dict[str, float] | None:
    """`{symbol: contractSize}` from the cache file, or None when it is absent."""
    if not path.exists():
        return None
    try:
        raw = read_json(path)
        return {str(symbol): float(size) for symbol, size in raw.items()}
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"cannot read COIN-M contract sizes from {path} ({exc}): delete it and run an api_data cm_futures command to rebuild it") from exc


def sizes_for(symbols: list[str], cached: dict[str, float] | None) -> dict[str, float]:
    """Contract size of each symbol: cached by symbol, else by pair (delivered contracts), else the rule."""
    by_pair = {_pair(symbol): size for symbol, size in (cached or {}).items()}
    sizes, guessed = {}, []
    for symbol in symbols:
        if cached and symbol in cached:
            sizes[symbol] = cached[symbol]
        elif _pair(symbol) in by_pair:
            sizes[symbol] = by_pair[_pair(symbol)]
        else:
            sizes[symbol] = rule_size(symbol)
            guessed.append(symbol)
    if guessed:
        where = "no contract-size cache" if cached is None else "not in the contract-size cache"
        log.warning("COIN-M %s for %s; using Binance's rule (100 USD for BTC, 10 USD otherwise)", where, ", ".join(guessed[:5]) + (" ..." if len(guessed) > 5 else ""))
    return sizes
