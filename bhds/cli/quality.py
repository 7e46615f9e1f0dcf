"""`quality`: what the local store holds and how far to trust it (new in bhds; reads the disk only)."""

from __future__ import annotations

from pathlib import Path

import click

from bhds.cli import dispatch
from bhds.cli import options as opt
from bhds.types import TradeType


@click.group(cls=opt.OrderedGroup)
def group() -> None:
    """Inspect the quality of the local data store."""


@group.command()
@opt.trade_type()
@opt.time_interval()
@opt.argument("symbols", "Symbols to report, e.g. 'BTCUSDT ETHUSDT' [default: every symbol on disk].", nargs=-1)
@click.option("--format", "output_format", type=click.Choice(("table", "json", "csv")), default="table", show_default=True,
              help="Report format; json and csv are for machines.")
@click.option("--fail-under", type=click.FloatRange(0, 100), default=None, metavar="PCT",
              help="Exit 3 when any symbol's completeness is below PCT percent (for cron).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE.png",
              help="Also draw a completeness heatmap (needs: pip install 'bhds[plot]').")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="Write the report to FILE instead of stdout (stdout then has only the summary line).")
@click.option("--deep", is_flag=True,
              help="Decode every file instead of trusting the cache and the month summaries parse stores in "
                   "each partition, and check those summaries against the rows.")
@opt.scheduler
def report(trade_type: str, time_interval: str, symbols: tuple[str, ...], output_format: str, fail_under: float | None,
           plot: Path | None, output: Path | None, deep: bool) -> None:
    """Per symbol: days in the archive, from the API, missing and partial; completeness; duplicates; OHLC
    violations; zero-volume runs; split segments; funding coverage; last archive update. Worst first."""
    dispatch("quality:report", trade_type=TradeType(trade_type), time_interval=time_interval, symbols=list(symbols),
             emits_data=output is None and output_format != "table", output_format=output_format, fail_under=fail_under, plot=plot, output=output, deep=deep,
             write=click.echo)
