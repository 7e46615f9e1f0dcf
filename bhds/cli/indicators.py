"""`generate indicators-type`: TA-Lib indicators over result klines (new in bhds; registered in cli/generate.py)."""

from __future__ import annotations

import click

from bhds.cli import dispatch
from bhds.cli import options as opt
from bhds.types import TradeType


@click.command("indicators-type", cls=opt.Command)
@opt.trade_type(opt.TT_HELP_TRADING)
@opt.time_interval("K-line interval of the results to read, e.g. '1m', '1h'")
@click.option("--offset", default=None, metavar="OFFSET",
              help="Read the resampled klines of this offset folder (e.g. '0m', '5m') instead of results_data/<tt>/klines/<interval>.")
@click.option("--indicator", "indicators", multiple=True, metavar="NAME[:N,...]",
              help="An indicator and its numbers, repeatable: rsi:14, macd:12,26,9, bbands:20,2, atr:14, sma:20, ema:20, "
                   "wma, dema, tema, kama, mom, roc, stddev, natr, adx, cci, willr, stoch, mfi, obv (a bare name takes its defaults).")
@opt.scheduler
def indicators_type(trade_type: str, time_interval: str, offset: str | None, indicators: tuple[str, ...]) -> None:
    """Compute technical indicators (TA-Lib) for every symbol's result klines, each split segment on its own,
    into results_data/<tt>/indicators/<interval>[/<offset>]/<SYMBOL>.pqt. Unchanged symbols are skipped.
    Needs: pip install 'bhds[indicators]'."""
    dispatch("indicators:indicators_type", trade_type=TradeType(trade_type), time_interval=time_interval, offset=offset,
             indicators=list(indicators))
