"""`aws_liquidation`: mirror the archive's daily liquidation snapshots (download only)."""

from __future__ import annotations

from typing import Any

import click

from bhds.cli import dispatch
from bhds.cli import options as opt
from bhds.types import ContractType, TradeType


@click.group(cls=opt.OrderedGroup)
def group() -> None:
    """Commands for maintaining Binance AWS liquidation snapshot data."""


@group.command()
@opt.trade_type()
@opt.symbols()
@opt.http_proxy
@opt.concurrency
@opt.window
def download(trade_type: str, symbols: tuple[str, ...], http_proxy: str | None, concurrency: int | None, **window: Any) -> None:
    """Download Binance liquidation snapshot for specific symbols from AWS data center"""
    dispatch("archive:liquidation_download", trade_type=TradeType(trade_type), symbols=list(symbols), http_proxy=http_proxy,
             concurrency=concurrency, emit=click.echo, **window)


@group.command("download-um-futures")
@opt.market_download
def download_um_futures(quote: str, contract_type: str, http_proxy: str | None, concurrency: int | None, **window: Any) -> None:
    """Download Binance USDⓈ-M Futures liquidation snapshot"""
    dispatch("archive:liquidation_download_um_futures", quote=quote, contract_type=ContractType(contract_type),
             http_proxy=http_proxy, concurrency=concurrency, emit=click.echo, **window)


@group.command("download-cm-futures")
@opt.cm_download
def download_cm_futures(contract_type: str, http_proxy: str | None, concurrency: int | None, **window: Any) -> None:
    """Download Binance Coin Futures liquidation snapshot"""
    dispatch("archive:liquidation_download_cm_futures", contract_type=ContractType(contract_type), http_proxy=http_proxy,
             concurrency=concurrency, emit=click.echo, **window)
