"""exchangeInfo: the live request-weight budget, and COIN-M contract sizes cached for offline use.

`generate` needs each COIN-M contract's size (USD per contract) without network access, so the
cm_futures API runs refresh `.bhds/cache/cm_contract_sizes.json` = `{symbol: contractSize}`.
Symbols that disappear from exchangeInfo (delivered or delisted) keep their last known size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bhds.api.client import BinanceClient
from bhds.api.ratelimit import Budget
from bhds.errors import DataError
from bhds.paths import Layout
from bhds.storage import read_json, write_bytes

CM_CONTRACT_SIZES = "cm_contract_sizes.json"
_INTERVAL_SECONDS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3_600, "DAY": 86_400}


def request_budget(info: dict[str, Any]) -> Budget | None:
    """The REQUEST_WEIGHT limit with the shortest window in `rateLimits`, if any."""
    budgets = []
    for entry in info.get("rateLimits") or []:
        try:
            if entry.get("rateLimitType") != "REQUEST_WEIGHT":
                continue
            seconds = _INTERVAL_SECONDS[str(entry["interval"]).upper()] * int(entry.get("intervalNum", 1))
            budgets.append(Budget(int(entry["limit"]), float(seconds)))
        except (KeyError, TypeError, ValueError):
            continue
    return min(budgets, key=lambda b: b.window_s) if budgets else None


def contract_sizes(info: dict[str, Any]) -> dict[str, float]:
    """`{symbol: contractSize}` from a COIN-M exchangeInfo answer."""
    sizes = {}
    for entry in info.get("symbols") or []:
        try:
            sizes[str(entry["symbol"])] = float(entry["contractSize"])
        except (KeyError, TypeError, ValueError):
            continue
    return sizes


def cm_contract_sizes_path(layout: Layout) -> Path:
    return layout.cache_file(CM_CONTRACT_SIZES)


def read_contract_sizes(layout: Layout) -> dict[str, float]:
    """The cached COIN-M contract sizes (empty when never fetched)."""
    path = cm_contract_sizes_path(layout)
    try:
        data = read_json(path)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} ({exc}): delete it and run an api_data cm_futures command to rebuild it") from exc
    return {str(k): float(v) for k, v in data.items()}


def save_contract_sizes(layout: Layout, sizes: dict[str, float]) -> dict[str, float]:
    """Merge `sizes` over the cached ones and write the file atomically; return the merged map."""
    try:
        merged = read_contract_sizes(layout)
    except DataError:
        merged = {}  # a corrupt cache is simply rebuilt
    merged.update(sizes)
    text = json.dumps(dict(sorted(merged.items())), indent=1, sort_keys=True) + "\n"
    write_bytes(text.encode(), cm_contract_sizes_path(layout))
    return merged


async def refresh_cm_contract_sizes(client: BinanceClient, layout: Layout, info: dict[str, Any] | None = None) -> int:
    """Fetch (or reuse) COIN-M exchangeInfo and update the cache; return how many sizes it held."""
    info = info if info is not None else await client.exchange_info()
    sizes = contract_sizes(info)
    if not sizes:
        raise DataError("COIN-M exchangeInfo listed no contractSize: the cached sizes were left as they were")
    save_contract_sizes(layout, sizes)
    return len(sizes)
