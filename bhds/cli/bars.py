"""`generate bars`: klines from parsed trades or aggTrades (new in bhds; registered in cli/generate.py)."""

from __future__ import annotations

import click

from bhds.cli import dispatch
from bhds.cli import options as opt


@click.command("bars", cls=opt.Command)
@opt.argument("trade_type", "Market: spot, um_futures or cm_futures", type=click.Choice(opt.TRADE_TYPES),
              metavar="MARKET:{spot|um_futures|cm_futures}")
@opt.argument("symbols", "Symbols to build [default: every symbol with parsed trades]", nargs=-1)
@click.option("--interval", "time_interval", required=True, metavar="INTERVAL",
              help="Bar length in s, m, h or d, e.g. 10s, 1m, 1h; under a day it must divide the day.")
@click.option("--from", "source", type=click.Choice(["aggTrades", "trades"]), default="aggTrades", show_default=True,
              help="Parsed dataset to read (run `archive download/verify/parse` for it first).")
@opt.scheduler
def bars(trade_type: str, symbols: tuple[str, ...], time_interval: str, source: str) -> None:
    """Build klines from parsed trades at any interval, sub-minute ones included, into
    results_data/<market>/trade_bars/<interval>/<SYMBOL>.pqt. An interval without trades has no row.
    Unchanged symbols are skipped."""
    # Parameters named like the legacy commands' so the run record keys `bhds status` by market and interval.
    dispatch("bars:generate_bars", market=trade_type, symbols=list(symbols), interval=time_interval, source=source)
