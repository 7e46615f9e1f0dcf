"""Archive mirror workflows: aws_kline/aws_funding download and verify, aws_liquidation download. (not implemented yet)"""

from __future__ import annotations

from bhds.settings import Settings
from bhds.types import RunSummary
from bhds.workflows import not_implemented


def kline_download(settings: Settings, *, trade_type, time_interval, symbols) -> RunSummary:
    raise not_implemented("aws_kline", "download")


def kline_download_spot(settings: Settings, *, time_intervals, quote, stablecoins, leverage_coins) -> RunSummary:
    raise not_implemented("aws_kline", "download-spot")


def kline_download_um_futures(settings: Settings, *, time_intervals, quote, contract_type) -> RunSummary:
    raise not_implemented("aws_kline", "download-um-futures")


def kline_download_cm_futures(settings: Settings, *, time_intervals, contract_type) -> RunSummary:
    raise not_implemented("aws_kline", "download-cm-futures")


def kline_verify(settings: Settings, *, trade_type, time_interval, symbols) -> RunSummary:
    raise not_implemented("aws_kline", "verify")


def kline_verify_type_all(settings: Settings, *, trade_type, time_intervals) -> RunSummary:
    raise not_implemented("aws_kline", "verify-type-all")


def funding_download(settings: Settings, *, trade_type, symbols) -> RunSummary:
    raise not_implemented("aws_funding", "download")


def funding_download_um_futures(settings: Settings, *, quote, contract_type) -> RunSummary:
    raise not_implemented("aws_funding", "download-um-futures")


def funding_download_cm_futures(settings: Settings, *, contract_type) -> RunSummary:
    raise not_implemented("aws_funding", "download-cm-futures")


def funding_verify(settings: Settings, *, trade_type, symbols) -> RunSummary:
    raise not_implemented("aws_funding", "verify")


def funding_verify_type_all(settings: Settings, *, trade_type) -> RunSummary:
    raise not_implemented("aws_funding", "verify-type-all")


def liquidation_download(settings: Settings, *, trade_type, symbols) -> RunSummary:
    raise not_implemented("aws_liquidation", "download")


def liquidation_download_um_futures(settings: Settings, *, quote, contract_type) -> RunSummary:
    raise not_implemented("aws_liquidation", "download-um-futures")


def liquidation_download_cm_futures(settings: Settings, *, contract_type) -> RunSummary:
    raise not_implemented("aws_liquidation", "download-cm-futures")
