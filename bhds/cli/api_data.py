"""`api_data`: fill what the archive lacks from the Binance REST API."""

from __future__ import annotations

import click

from bhds.cli import dispatch
from bhds.cli import options as opt
from bhds.types import TradeType


@click.group(cls=opt.OrderedGroup)
def group() -> None:
    """Commands for maintaining Binance API data."""


@group.command("download-kline")
@opt.trade_type(opt.TT_HELP_TRADING)
@opt.time_interval()
@opt.symbol("Trading pair symbol, e.g., 'BTCUSDT'")
@opt.argument("dts", "A list trading dates, e.g., '20200101 20210203'.", nargs=-1, required=True)
@opt.http_proxy
def download_kline(trade_type: str, time_interval: str, symbol: str, dts: tuple[str, ...], http_proxy: str | None) -> None:
    """Download Binance klines for specific symbol and dates from Kline API"""
    dispatch("api_data:download_kline", trade_type=TradeType(trade_type), time_interval=time_interval, symbol=symbol,
             dts=list(dts), http_proxy=http_proxy)


@group.command("download-aws-missing-kline-type")
@opt.trade_type(opt.TT_HELP_TRADING)
@opt.time_interval()
@opt.overwrite
@opt.http_proxy
@opt.scheduler
def download_aws_missing_kline_type(trade_type: str, time_interval: str, overwrite: bool, http_proxy: str | None) -> None:
    """Download Binance kline data from the Kline API for the provided trade_type that have missing dates in AWS"""
    dispatch("api_data:download_aws_missing_kline_type", trade_type=TradeType(trade_type), time_interval=time_interval,
             overwrite=overwrite, http_proxy=http_proxy)


@group.command("download-aws-missing-kline")
@opt.trade_type(opt.TT_HELP_TRADING)
@opt.time_interval()
@opt.symbols("List of trading symbols, e.g., 'BTCUSDT ETHUSDT'.")
@opt.overwrite
@opt.http_proxy
@opt.scheduler
def download_aws_missing_kline(trade_type: str, time_interval: str, symbols: tuple[str, ...], overwrite: bool,
                               http_proxy: str | None) -> None:
    """Download Binance kline data from the Kline API for given symbols that have missing dates in AWS"""
    dispatch("api_data:download_aws_missing_kline", trade_type=TradeType(trade_type), time_interval=time_interval,
             symbols=list(symbols), overwrite=overwrite, http_proxy=http_proxy)


@group.command("download-recent-funding")
@opt.trade_type(opt.TT_HELP_TRADING)
@opt.symbols("Trading symbols, e.g., 'BTCUSDT' or 'ETHUSDT'.")
@opt.http_proxy
def download_recent_funding(trade_type: str, symbols: tuple[str, ...], http_proxy: str | None) -> None:
    """Download Binance funding rate for specific symbol from Binance API"""
    dispatch("api_data:download_recent_funding", trade_type=TradeType(trade_type), symbols=list(symbols), http_proxy=http_proxy)


@group.command("download-recent-funding-type")
@opt.trade_type(opt.TT_HELP_TRADING)
@opt.http_proxy
def download_recent_funding_type(trade_type: str, http_proxy: str | None) -> None:
    """Download Binance funding rate for all symbols of a specific trade type from Binance API"""
    dispatch("api_data:download_recent_funding_type", trade_type=TradeType(trade_type), http_proxy=http_proxy)
