"""Workflows of the `api_data` command group (not implemented yet)."""

from __future__ import annotations

from bhds.settings import Settings
from bhds.types import RunSummary
from bhds.workflows import not_implemented


def download_kline(settings: Settings, *, trade_type, time_interval, symbol, dts) -> RunSummary:
    raise not_implemented("api_data", "download-kline")


def download_aws_missing_kline_type(settings: Settings, *, trade_type, time_interval, overwrite) -> RunSummary:
    raise not_implemented("api_data", "download-aws-missing-kline-type")


def download_aws_missing_kline(settings: Settings, *, trade_type, time_interval, symbols, overwrite) -> RunSummary:
    raise not_implemented("api_data", "download-aws-missing-kline")


def download_recent_funding(settings: Settings, *, trade_type, symbols) -> RunSummary:
    raise not_implemented("api_data", "download-recent-funding")


def download_recent_funding_type(settings: Settings, *, trade_type) -> RunSummary:
    raise not_implemented("api_data", "download-recent-funding-type")
