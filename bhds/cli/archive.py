"""`archive`: any dataset of data.binance.vision under Binance's own names (bhds' own group).

`ls` prints symbols only on stdout (its summary goes to stderr), so it can feed a pipe.
"""

from __future__ import annotations

from typing import Any

import click

from bhds.cli import dispatch
from bhds.cli import options as opt

MARKET_METAVAR = "MARKET:{spot|um_futures|cm_futures}"


class _Market(click.Choice):
    """The three markets, and a plain answer for `option`, which the archive has but bhds does not model."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if value == "option":
            self.fail("option (data/option/daily/BVOLIndex, EOHSummary) is not supported: their columns are not "
                      "documented in bhds' Binance reference; use spot, um_futures or cm_futures", param, ctx)
        return super().convert(value, param, ctx)


def _market() -> Any:
    return opt.argument("market", "Market: spot, um_futures or cm_futures", type=_Market(opt.TRADE_TYPES),
                        metavar=MARKET_METAVAR)


def _dataset() -> Any:
    return opt.argument("dataset", "Binance's dataset name, e.g. klines, trades, aggTrades, metrics, bookDepth")


_interval = click.option("--interval", default=None, help="Interval folder of kline-like datasets, e.g. 1m, 1h, 1d")


@click.group(cls=opt.OrderedGroup)
def group() -> None:
    """Every dataset of the Binance archive: list, download (by date range), verify, parse."""


@group.command()
@_market()
@_dataset()
@_interval
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: one symbol a line; json: one array")
@opt.http_proxy
def ls(market: str, dataset: str, interval: str | None, output_format: str, http_proxy: str | None) -> None:
    """List the symbols the archive has for a dataset (with --interval: those with that interval)."""
    dispatch("archive:archive_ls", emits_data=True, market=market, dataset=dataset, interval=interval,
             output_format=output_format, emit=click.echo, http_proxy=http_proxy)


@group.command()
@_market()
@_dataset()
@opt.argument("symbols", "Symbols to download [default: every listed symbol passing the filters]", nargs=-1)
@_interval
@opt.window
@click.option("--quote", default=None, help="spot, um_futures: quote asset of the listed symbols kept [default: USDT]")
@click.option("--keep-stablecoins", is_flag=True, default=False, help="spot: keep stablecoin bases such as USDCUSDT")
@click.option("--leverage-tokens", is_flag=True, default=False, help="spot: keep leveraged tokens such as BTCUPUSDT")
@click.option("--contract-type", type=click.Choice(opt.CONTRACT_TYPES), default=None,
              help="um_futures, cm_futures: contracts kept [default: PERPETUAL]")
@opt.http_proxy
@opt.concurrency
def download(market: str, dataset: str, symbols: tuple[str, ...], **options: Any) -> None:
    """Mirror a dataset: monthly files for whole months in range, daily files for the other days."""
    dispatch("archive:archive_download", market=market, dataset=dataset, symbols=list(symbols), emit=click.echo, **options)


@group.command()
@_market()
@_dataset()
@opt.argument("symbols", "Symbols to verify [default: every symbol downloaded]", nargs=-1)
@_interval
@opt.scheduler
def verify(market: str, dataset: str, symbols: tuple[str, ...], interval: str | None) -> None:
    """Check the downloaded zips of a dataset against their CHECKSUMs; delete the bad ones."""
    dispatch("archive:archive_verify", market=market, dataset=dataset, symbols=list(symbols), interval=interval)


@group.command()
@_market()
@_dataset()
@opt.argument("symbols", "Symbols to parse [default: every symbol downloaded]", nargs=-1)
@_interval
@opt.scheduler
def parse(market: str, dataset: str, symbols: tuple[str, ...], interval: str | None) -> None:
    """Verified zips to monthly Parquet under parsed_data/<market>/<dataset>/[<interval>/]<SYMBOL>/."""
    dispatch("archive_parse:archive_parse", market=market, dataset=dataset, symbols=list(symbols), interval=interval)
