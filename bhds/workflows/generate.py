"""Workflows of the `generate` command group (not implemented yet)."""

from __future__ import annotations

from bhds.settings import Settings
from bhds.types import RunSummary
from bhds.workflows import not_implemented


def kline(settings: Settings, *, trade_type, time_interval, symbol, split_gaps, min_days, min_price_chg, with_vwap, with_funding_rates) -> RunSummary:
    raise not_implemented("generate", "kline")


def kline_type(settings: Settings, *, trade_type, time_interval, split_gaps, min_days, min_price_chg, with_vwap, with_funding_rates) -> RunSummary:
    raise not_implemented("generate", "kline-type")


def resample(settings: Settings, *, trade_type, symbol, resample_interval, base_offset) -> RunSummary:
    raise not_implemented("generate", "resample")


def resample_type(settings: Settings, *, trade_type, resample_interval, base_offset) -> RunSummary:
    raise not_implemented("generate", "resample-type")
