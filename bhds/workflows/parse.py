"""Parse workflows: aws_kline parse / parse-type-all and aws_funding parse / parse-type-all. (not implemented yet)"""

from __future__ import annotations

from bhds.settings import Settings
from bhds.types import RunSummary
from bhds.workflows import not_implemented


def kline_parse(settings: Settings, *, trade_type, time_interval, symbols, force_update) -> RunSummary:
    raise not_implemented("aws_kline", "parse")


def kline_parse_type_all(settings: Settings, *, trade_type, time_intervals, force_update) -> RunSummary:
    raise not_implemented("aws_kline", "parse-type-all")


def funding_parse(settings: Settings, *, trade_type, symbols) -> RunSummary:
    raise not_implemented("aws_funding", "parse")


def funding_parse_type_all(settings: Settings, *, trade_type) -> RunSummary:
    raise not_implemented("aws_funding", "parse-type-all")
