"""Recent funding rates of one futures symbol, as the contract's API funding table (§5.5).

The first call is the legacy one (`limit=1000`, no time range: Binance's newest records).
When the archive's funding is known to end earlier than the oldest record that call returned
(Binance may cap an open-ended call at 200 records, a few days for 1-hour funding), the hole
is paged forward from the archive's last settlement so API and archive data meet.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from bhds.api.arrow import from_numpy
from bhds.api.client import BinanceClient
from bhds.schema import API_FUNDING_SCHEMA, HOUR_MS

MAX_RECORDS = 1000
# At most this many extra pages to bridge a hole back to the archive (1000 records each).
MAX_BRIDGE_PAGES = 5


async def fetch_recent_funding(client: BinanceClient, symbol: str, *, archive_last_ms: int | None = None) -> list[dict[str, Any]]:
    """Newest funding records of `symbol`, reaching back to `archive_last_ms` when given."""
    rows = await client.funding_rate(symbol, limit=MAX_RECORDS)
    if not rows or archive_last_ms is None:
        return rows
    oldest = min(int(r["fundingTime"]) for r in rows)
    start = archive_last_ms + 1
    bridged: list[dict[str, Any]] = []
    for _ in range(MAX_BRIDGE_PAGES):
        if start >= oldest:
            break
        page = await client.funding_rate(symbol, limit=MAX_RECORDS, start_ms=start, end_ms=oldest - 1)
        if not page:
            break
        bridged.extend(page)
        start = max(int(r["fundingTime"]) for r in page) + 1
        if len(page) < MAX_RECORDS:
            break
    return bridged + rows


def funding_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """`funding_time`, `candle_begin_time` (the hour it falls in), `funding_rate`; one row per time, sorted."""
    if not rows:
        return API_FUNDING_SCHEMA.empty_table()
    times = np.array([int(r["fundingTime"]) for r in rows], dtype=np.int64)
    rates = np.array([float(r["fundingRate"]) for r in rows], dtype=np.float64)
    _, first = np.unique(times, return_index=True)  # bridged pages may overlap the newest call
    times, rates = times[first], rates[first]
    order = np.argsort(times, kind="stable")
    times, rates = times[order], rates[order]
    stamp = API_FUNDING_SCHEMA.field("funding_time").type
    return pa.Table.from_arrays(
        [from_numpy(times, stamp), from_numpy(times - times % HOUR_MS, stamp), from_numpy(rates, pa.float64())],
        schema=API_FUNDING_SCHEMA,
    )
