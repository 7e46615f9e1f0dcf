"""`generate`: merged, gap-split result klines and their resamples."""

from __future__ import annotations

import click

from bhds.cli import dispatch
from bhds.cli import options as opt
from bhds.types import TradeType

SYMBOL_HELP = "Trading pair symbol, e.g., 'BTCUSDT'"


@click.group(cls=opt.OrderedGroup)
def group() -> None:
    """Commands to generate the resulting data."""


@group.command()
@opt.trade_type(opt.TT_HELP_TRADING)
@opt.time_interval(opt.INTERVAL_HELP_GEN)
@opt.symbol(SYMBOL_HELP)
@opt.generate_kline_options
@opt.scheduler
def kline(trade_type: str, time_interval: str, symbol: str, split_gaps: bool, min_days: int, min_price_chg: float,
          with_vwap: bool, with_funding_rates: bool) -> None:
    """Generate merged and split kline data for a single symbol.

    gap1: time gap > min_days AND absolute price change > min_price_chg; gap2: time gap > min_days*2 regardless of price change
    """
    dispatch("generate:kline", trade_type=TradeType(trade_type), time_interval=time_interval, symbol=symbol,
             split_gaps=split_gaps, min_days=min_days, min_price_chg=min_price_chg, with_vwap=with_vwap,
             with_funding_rates=with_funding_rates)


@group.command("kline-type")
@opt.trade_type(opt.TT_HELP_TRADING)
@opt.time_interval(opt.INTERVAL_HELP_GEN)
@opt.generate_kline_options
@opt.scheduler
def kline_type(trade_type: str, time_interval: str, split_gaps: bool, min_days: int, min_price_chg: float, with_vwap: bool,
               with_funding_rates: bool) -> None:
    """Generate merged and split kline data for all symbols of the given trade type and time interval.

    gap1: time gap > min_days AND absolute price change > min_price_chg; gap2: time gap > min_days*2 regardless of price change
    """
    dispatch("generate:kline_type", trade_type=TradeType(trade_type), time_interval=time_interval, split_gaps=split_gaps,
             min_days=min_days, min_price_chg=min_price_chg, with_vwap=with_vwap, with_funding_rates=with_funding_rates)


@group.command()
@opt.trade_type(opt.TT_HELP_TRADING)
@opt.symbol(SYMBOL_HELP)
@opt.argument("resample_interval", "Resample interval, e.g., '1h', '4h'")
@opt.argument("base_offset", "Base offset, e.g., '5m', '15m', '30m'")
@opt.scheduler
def resample(trade_type: str, symbol: str, resample_interval: str, base_offset: str) -> None:
    """Resample kline data for a single symbol. All multiples of base_offset will be generated."""
    dispatch("generate:resample", trade_type=TradeType(trade_type), symbol=symbol, resample_interval=resample_interval,
             base_offset=base_offset)


@group.command("resample-type")
@opt.trade_type(opt.TT_HELP_TRADING)
@opt.argument("resample_interval", "Resample interval, e.g., '1h', '4h'")
@opt.argument("base_offset", "Base offset, e.g., '5m', '15m', '30m'")
@opt.scheduler
def resample_type(trade_type: str, resample_interval: str, base_offset: str) -> None:
    """Resample kline data for all symbols of given trade type and resample interval."""
    dispatch("generate:resample_type", trade_type=TradeType(trade_type), resample_interval=resample_interval,
             base_offset=base_offset)


from bhds.cli.indicators import indicators_type  # noqa: E402 - bhds' own addition, listed after the legacy commands
group.add_command(indicators_type)
from bhds.cli.bars import bars  # noqa: E402 - bhds' own addition: klines from trades
group.add_command(bars)
