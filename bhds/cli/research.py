"""`list-data` and `catalog`: what is local, and SQL views over it (new in bhds; read the disk only)."""

from __future__ import annotations

from pathlib import Path

import click

from bhds.cli import dispatch
from bhds.cli import options as opt


@click.command("list-data", cls=opt.Command)
@opt.argument("trade_type", "Trade type to list [default: all].", required=False, type=click.Choice(opt.TRADE_TYPES),
              metavar="[TRADE_TYPE]")
@click.option("--interval", default=None, help="Only datasets of this interval, e.g. 1m or 1h (funding has none).")
@click.option("--format", "output_format", type=click.Choice(("table", "json", "csv")), default="table", show_default=True,
              help="Output format; json and csv are for machines.")
def list_data(trade_type: str | None, interval: str | None, output_format: str) -> None:
    """What is local, per trade type, dataset, interval and symbol: first and last candle, rows, files, bytes,
    and whether results are older than their inputs (stale). Only the listing goes to stdout."""
    dispatch("research:list_data", emits_data=True, write=click.echo, trade_type=trade_type, interval=interval,
             output_format=output_format)


@click.command("catalog", cls=opt.Command)
@opt.argument("path", "DuckDB file to write [default: binance_data/catalog.duckdb].", required=False,
              type=click.Path(dir_okay=False, path_type=Path))
def catalog(path: Path | None) -> None:
    """Write a DuckDB database with one view per dataset (e.g. um_futures_klines_1m) over the Parquet files,
    each with a symbol column. Needs: pip install 'bhds[sql]'."""
    dispatch("research:catalog", path=path)

