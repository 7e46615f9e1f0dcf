"""What data.binance.vision publishes per market (binance-reference.md §1.4), under Binance's names.

A dataset lives under `data/<market>/<daily|monthly>/<dataset>/<SYMBOL>/[<interval>/]`; the
kline-like ones have the interval folder. Some are published in one period only: fundingRate
monthly, and metrics, bookDepth and liquidationSnapshot daily.
"""

from __future__ import annotations

from dataclasses import dataclass

from bhds.errors import InputError
from bhds.types import ARCHIVE_INTERVALS, Interval, TradeType, parse_interval

DAILY, MONTHLY = "daily", "monthly"
# Intervals Binance publishes in monthly folders only (BPD enums.py DAILY_INTERVALS stops at 1d).
MONTHLY_ONLY_INTERVALS = frozenset({"3d", "1w", "1mo"})

_SPOT, _UM, _CM = TradeType.spot, TradeType.um_futures, TradeType.cm_futures


@dataclass(frozen=True)
class Dataset:
    """One dataset of the archive and the shape of its folders."""

    name: str
    markets: tuple[TradeType, ...]
    has_interval: bool = False
    daily: bool = True
    monthly: bool = True

    def periods(self, interval: str | None = None) -> tuple[str, ...]:
        """The period folders that can hold this dataset (at `interval`)."""
        if interval in MONTHLY_ONLY_INTERVALS:
            return (MONTHLY,)
        return tuple(p for p, on in ((DAILY, self.daily), (MONTHLY, self.monthly)) if on)


DATASETS: tuple[Dataset, ...] = (
    Dataset("klines", (_SPOT, _UM, _CM), has_interval=True),
    Dataset("aggTrades", (_SPOT, _UM, _CM)),
    Dataset("trades", (_SPOT, _UM, _CM)),
    Dataset("markPriceKlines", (_UM, _CM), has_interval=True),
    Dataset("indexPriceKlines", (_UM, _CM), has_interval=True),
    Dataset("premiumIndexKlines", (_UM, _CM), has_interval=True),
    Dataset("bookTicker", (_UM, _CM)),
    Dataset("bookDepth", (_UM, _CM), monthly=False),
    Dataset("metrics", (_UM, _CM), monthly=False),
    Dataset("fundingRate", (_UM, _CM), daily=False),
    Dataset("liquidationSnapshot", (_UM, _CM), monthly=False),
)


def datasets_of(market: TradeType) -> list[Dataset]:
    return [d for d in DATASETS if TradeType(market) in d.markets]


def find_dataset(market: TradeType, name: str) -> Dataset:
    """The dataset `name` of `market`; a usage error (exit 2) listing the valid names otherwise."""
    valid = datasets_of(market)
    for dataset in valid:
        if dataset.name == name:
            return dataset
    raise InputError(f"{TradeType(market).value} has no dataset {name!r}: use one of "
                     f"{', '.join(d.name for d in valid)}", exit_code=2)


def dataset_interval(market: TradeType, dataset: Dataset, text: str | None) -> str | None:
    """The interval folder to use: required for kline-like datasets, refused for the others."""
    if not dataset.has_interval:
        if text:
            raise InputError(f"{dataset.name} has no interval folders: drop --interval", exit_code=2)
        return None
    if not text:
        raise InputError(f"{dataset.name} needs an interval: pass --interval, e.g. --interval 1m "
                         f"(one of {', '.join(ARCHIVE_INTERVALS)})", exit_code=2)
    interval: Interval = parse_interval(text, archive=True)
    if interval.text == "1s" and (TradeType(market) is not TradeType.spot or dataset.name != "klines"):
        raise InputError(f"1s is published for spot klines only: use 1m or longer for {dataset.name}", exit_code=2)
    return interval.text
