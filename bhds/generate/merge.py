"""Contract §6.11.1-2: archive klines plus API days (API wins), zero-volume candles marked, VWAP."""

from __future__ import annotations

import numpy as np

from bhds.generate.frame import TIME, Columns, concat, dedup_keep_last, take


def traded(cols: Columns) -> np.ndarray:
    """Candles with volume > 0 (NaN compares False, so null volumes count as empty)."""
    return cols["volume"] > 0


def merge(archive: Columns, api: Columns | None) -> Columns:
    """Archive then API rows, one per time with the API winning, sorted.

    As in the legacy tool, empty (zero-volume) API candles are dropped before the merge, so they
    never override a traded archive candle. Empty archive candles stay in the frame; callers treat
    them as absent (the fill re-synthesises them), which saves copying every column to drop them.
    """
    merged = dedup_keep_last(archive)
    if api is not None and len(api[TIME]):
        keep = traded(api)
        api = api if bool(keep.all()) else take(api, keep)
        if len(api[TIME]):
            merged = dedup_keep_last(concat([merged, api]))
    return merged


def vwap(cols: Columns, *, contract_size: float | None = None) -> np.ndarray:
    """Per-candle volume-weighted average price; NaN where it cannot be computed (filled later).

    Spot and USDⓈ-M: quote_volume / volume. COIN-M (`contract_size` given): `volume` counts
    contracts of `contract_size` USD and `quote_volume` holds the base-asset volume, so the price is
    volume × contract size ÷ base-asset volume.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        if contract_size is None:
            price = cols["quote_volume"] / cols["volume"]
        else:
            price = cols["volume"] * contract_size / cols["quote_volume"]
    price[~np.isfinite(price)] = np.nan
    return price

