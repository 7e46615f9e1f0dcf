"""`aws_funding`: mirror, verify and parse the archive's monthly funding-rate files."""

from __future__ import annotations

from typing import Any

import click

from bhds.cli import dispatch
from bhds.cli import options as opt
from bhds.types import ContractType, TradeType


@click.group(cls=opt.OrderedGroup)
def group() -> None:
    """Commands for maintaining Binance AWS funding rate data."""


@group.command()
@opt.trade_type()
@opt.symbols()
@opt.http_proxy
@opt.concurrency
@opt.window
def download(trade_type: str, symbols: tuple[str, ...], http_proxy: str | None, concurrency: int | None, **window: Any) -> None:
    """Download Binance funding rates for specific symbols from AWS data center"""
    dispatch("archive:funding_download", trade_type=TradeType(trade_type), symbols=list(symbols), http_proxy=http_proxy,
             concurrency=concurrency, emit=click.echo, **window)


@group.command("download-um-futures")
@opt.market_download
def download_um_futures(quote: str, contract_type: str, http_proxy: str | None, concurrency: int | None, **window: Any) -> None:
    """Download Binance USDⓈ-M Futures funding rates"""
    dispatch("archive:funding_download_um_futures", quote=quote, contract_type=ContractType(contract_type), http_proxy=http_proxy,
             concurrency=concurrency, emit=click.echo, **window)


@group.command("download-cm-futures")
@opt.cm_download
def download_cm_futures(contract_type: str, http_proxy: str | None, concurrency: int | None, **window: Any) -> None:
    """Download Binance Coin Futures funding rates"""
    dispatch("archive:funding_download_cm_futures", contract_type=ContractType(contract_type), http_proxy=http_proxy,
             concurrency=concurrency, emit=click.echo, **window)


@group.command()
@opt.trade_type()
@opt.symbols()
@opt.scheduler
def verify(trade_type: str, symbols: tuple[str, ...]) -> None:
    """Verify Binance funding rates for specific symbols from AWS data center"""
    dispatch("archive:funding_verify", trade_type=TradeType(trade_type), symbols=list(symbols))


@group.command("verify-type-all")
@opt.trade_type()
@opt.scheduler
def verify_type_all(trade_type: str) -> None:
    """Verify Binance funding rates for all symbols with the given trade type"""
    dispatch("archive:funding_verify_type_all", trade_type=TradeType(trade_type))


@group.command()
@opt.trade_type()
@opt.symbols()
@opt.scheduler
def parse(trade_type: str, symbols: tuple[str, ...]) -> None:
    """Parse Binance funding rates for specific symbols"""
    dispatch("parse:funding_parse", trade_type=TradeType(trade_type), symbols=list(symbols))


@group.command("parse-type-all")
@opt.trade_type()
@opt.scheduler
def parse_type_all(trade_type: str) -> None:
    """Parse Binance funding rates for all symbols with the given trade type"""
    dispatch("parse:funding_parse_type_all", trade_type=TradeType(trade_type))
