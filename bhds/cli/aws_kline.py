"""`aws_kline`: mirror, verify and parse the archive's daily kline files."""

from __future__ import annotations

from typing import Any

import click

from bhds.cli import dispatch
from bhds.cli import options as opt
from bhds.types import ContractType, TradeType


@click.group(cls=opt.OrderedGroup)
def group() -> None:
    """Commands for maintaining Binance AWS K-line data."""


@group.command()
@opt.trade_type()
@opt.time_interval()
@opt.symbols()
@opt.http_proxy
@opt.concurrency
@opt.window
def download(trade_type: str, time_interval: str, symbols: tuple[str, ...], http_proxy: str | None, concurrency: int | None, **window: Any) -> None:
    """Download Binance klines for specific symbols from AWS data center"""
    dispatch("archive:kline_download", trade_type=TradeType(trade_type), time_interval=time_interval, symbols=list(symbols),
             http_proxy=http_proxy, concurrency=concurrency, emit=click.echo, **window)


@group.command("download-spot")
@opt.time_intervals()
@opt.quote
@opt.stablecoins
@opt.leverage_coins
@opt.http_proxy
@opt.concurrency
@opt.window
def download_spot(time_intervals: tuple[str, ...], quote: str, stablecoins: bool, leverage_coins: bool,
                  http_proxy: str | None, concurrency: int | None, **window: Any) -> None:
    """Download Binance spot klines"""
    dispatch("archive:kline_download_spot", time_intervals=list(time_intervals), quote=quote, stablecoins=stablecoins,
             leverage_coins=leverage_coins, http_proxy=http_proxy, concurrency=concurrency, emit=click.echo, **window)


@group.command("download-um-futures")
@opt.time_intervals()
@opt.market_download
def download_um_futures(time_intervals: tuple[str, ...], quote: str, contract_type: str, http_proxy: str | None,
                        concurrency: int | None, **window: Any) -> None:
    """Download Binance USDⓈ-M Futures klines"""
    dispatch("archive:kline_download_um_futures", time_intervals=list(time_intervals), quote=quote,
             contract_type=ContractType(contract_type), http_proxy=http_proxy, concurrency=concurrency, emit=click.echo, **window)


@group.command("download-cm-futures")
@opt.time_intervals()
@opt.cm_download
def download_cm_futures(time_intervals: tuple[str, ...], contract_type: str, http_proxy: str | None, concurrency: int | None, **window: Any) -> None:
    """Download Binance COIN-M Futures klines"""
    dispatch("archive:kline_download_cm_futures", time_intervals=list(time_intervals), contract_type=ContractType(contract_type),
             http_proxy=http_proxy, concurrency=concurrency, emit=click.echo, **window)


@group.command()
@opt.trade_type()
@opt.time_interval()
@opt.symbols()
@opt.scheduler
def verify(trade_type: str, time_interval: str, symbols: tuple[str, ...]) -> None:
    """Verify Binance Klines checksums and delete corrupted data for specific symbols"""
    dispatch("archive:kline_verify", trade_type=TradeType(trade_type), time_interval=time_interval, symbols=list(symbols))


@group.command("verify-type-all")
@opt.trade_type()
@opt.time_intervals()
@opt.scheduler
def verify_type_all(trade_type: str, time_intervals: tuple[str, ...]) -> None:
    """Verify Binance Klines for all symbols with the given trade type and time intervals"""
    dispatch("archive:kline_verify_type_all", trade_type=TradeType(trade_type), time_intervals=list(time_intervals))


@group.command()
@opt.trade_type()
@opt.time_interval()
@opt.symbols()
@opt.force_update
@opt.scheduler
def parse(trade_type: str, time_interval: str, symbols: tuple[str, ...], force_update: bool) -> None:
    """Parse Binance Klines to Polars DataFrame and Save in Parquet Format"""
    dispatch("parse:kline_parse", trade_type=TradeType(trade_type), time_interval=time_interval, symbols=list(symbols),
             force_update=force_update)


@group.command("parse-type-all")
@opt.trade_type()
@opt.time_intervals()
@opt.force_update
@opt.scheduler
def parse_type_all(trade_type: str, time_intervals: tuple[str, ...], force_update: bool) -> None:
    """Parse Binance Klines for all symbols with the given trade type and time intervals"""
    dispatch("parse:kline_parse_type_all", trade_type=TradeType(trade_type), time_intervals=list(time_intervals),
             force_update=force_update)
