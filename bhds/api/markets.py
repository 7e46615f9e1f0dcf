"""What differs between the three REST markets: paths, bars per call, weights, default budgets.

Facts from binance-reference.md §4-§5; the live budget comes from exchangeInfo `rateLimits`
when available (see `exchange_info.request_budget`), these defaults otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from bhds.api.ratelimit import Budget
from bhds.settings import Settings
from bhds.types import TradeType

# Funding history of USD-M shares a separate bucket: 500 requests per 5 minutes per IP.
UM_FUNDING_BUDGET = Budget(limit=500, window_s=300.0)


@dataclass(frozen=True)
class Market:
    """One REST market: base URL, endpoint paths and the limits that shape our requests."""

    trade_type: TradeType
    base_url: str
    prefix: str  # "/api/v3", "/fapi/v1", "/dapi/v1"
    max_bars: int  # most klines one call may return
    budget: Budget  # default weight budget
    funding_weight: int  # weight of one fundingRate call on the weight budget
    has_funding_bucket: bool  # USD-M: fundingRate also counts against UM_FUNDING_BUDGET
    exchange_info_weight: int

    def url(self, endpoint: str) -> str:
        return f"{self.base_url}{self.prefix}/{endpoint}"

    def kline_weight(self, limit: int) -> int:
        """Weight of one klines call asking for `limit` bars."""
        if self.trade_type is TradeType.spot:
            return 2
        if limit < 100:
            return 1
        if limit < 500:
            return 2
        if limit <= 1000:
            return 5
        return 10

    @property
    def has_funding(self) -> bool:
        return self.trade_type is not TradeType.spot


def market_for(settings: Settings, trade_type: TradeType) -> Market:
    """The market of a trade type, at the base URL the settings point to."""
    trade_type = TradeType(trade_type)
    if trade_type is TradeType.spot:
        return Market(trade_type, settings.spot_api_url.rstrip("/"), "/api/v3", 1000, Budget(6000, 60.0),
                      funding_weight=0, has_funding_bucket=False, exchange_info_weight=20)
    if trade_type is TradeType.um_futures:
        return Market(trade_type, settings.um_api_url.rstrip("/"), "/fapi/v1", 1500, Budget(2400, 60.0),
                      funding_weight=0, has_funding_bucket=True, exchange_info_weight=1)
    return Market(trade_type, settings.cm_api_url.rstrip("/"), "/dapi/v1", 1500, Budget(2400, 60.0),
                  funding_weight=1, has_funding_bucket=False, exchange_info_weight=1)
