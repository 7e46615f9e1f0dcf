"""The contract's arguments and options, declared once and stacked onto commands.

Help strings, spellings and defaults are transcribed from the legacy CLI (contract §3.2); the
surface test holds them there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

TRADE_TYPES = ("spot", "um_futures", "cm_futures")
CONTRACT_TYPES = ("PERPETUAL", "DELIVERY")
TT_METAVAR = "TRADE_TYPE:{spot|um_futures|cm_futures}"

TT_HELP_AWS = "Type of symbols"
TT_HELP_TRADING = "Type of trading (spot/futures)"
INTERVAL_HELP_AWS = "The time interval for the K-lines, e.g., '1m', '5m', '1h'."
INTERVAL_HELP_GEN = "K-line time interval, e.g., '1m', '5m', '1h'"
SYMBOLS_HELP = "A list of trading symbols, e.g., 'BTCUSDT ETHUSDT'."

F = Callable[..., Any]


class HelpArgument(click.Argument):
    """A positional argument that carries a help string, listed under "Arguments:" in --help."""

    def __init__(self, *args: Any, help: str | None = None, **kwargs: Any) -> None:  # noqa: A002
        super().__init__(*args, **kwargs)
        self.help = help


class Command(click.Command):
    """A command whose --help lists its positional arguments once, under "Arguments", then its options.

    Click 8.5 added its own "Positional arguments" section and older Click has none; the help
    layout is fixed here so that every Click version shows the arguments exactly once.
    """

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.format_usage(ctx, formatter)
        self.format_help_text(ctx, formatter)
        self.format_argument_rows(ctx, formatter)
        self.format_options(ctx, formatter)
        self.format_epilog(ctx, formatter)

    def format_argument_rows(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(param.make_metavar(ctx), getattr(param, "help", None) or "")
                for param in self.get_params(ctx) if isinstance(param, click.Argument)]
        if rows:
            with formatter.section("Arguments"):
                formatter.write_dl(rows)


class OrderedGroup(click.Group):
    """Lists commands in the order they were added, as the legacy help did."""

    command_class = Command

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


def argument(name: str, help: str, **kwargs: Any) -> Callable[[F], F]:  # noqa: A002
    return click.argument(name, cls=HelpArgument, help=help, **kwargs)


def trade_type(help: str = TT_HELP_AWS) -> Callable[[F], F]:  # noqa: A002
    return argument("trade_type", help, type=click.Choice(TRADE_TYPES), metavar=TT_METAVAR)


def time_interval(help: str = INTERVAL_HELP_AWS) -> Callable[[F], F]:  # noqa: A002
    return argument("time_interval", help)


def time_intervals(help: str = INTERVAL_HELP_AWS) -> Callable[[F], F]:  # noqa: A002
    return argument("time_intervals", help, nargs=-1, required=True)


def symbols(help: str = SYMBOLS_HELP) -> Callable[[F], F]:  # noqa: A002
    return argument("symbols", help, nargs=-1, required=True)


def symbol(help: str) -> Callable[[F], F]:  # noqa: A002
    return argument("symbol", help)


http_proxy = click.option("--http-proxy", default=None, help="HTTP proxy address")
quote = click.option("--quote", default="USDT", show_default=True, help="The quote currency, e.g., 'USDT', 'USDC', 'BTC'.")
contract_type = click.option(
    "--contract-type",
    type=click.Choice(CONTRACT_TYPES),
    default="PERPETUAL",
    show_default=True,
    help="The type of contract, 'PERPETUAL' or 'DELIVERY'.",
)
stablecoins = click.option(
    "--stablecoins/--no-stablecoins", default=False, show_default=True, help="Whether to include stablecoin symbols, such as 'USDCUSDT'."
)
leverage_coins = click.option(
    "--leverage-coins/--no-leverage-coins",
    default=False,
    show_default=True,
    help="Whether to include leveraged coin symbols, such as 'BTCUPUSDT'.",
)
# The legacy option had no help text; this one is bhds' own.
force_update = click.option(
    "--force-update/--no-force-update", default=False, show_default=True,
    help="Re-parse every verified zip even if it was parsed before, and remove partitions of months no zip is left for.",
)
overwrite = click.option("--overwrite/--no-overwrite", default=False, show_default=True, help="Whether to overwrite existing files")
# New in bhds (not in the legacy CLI): concurrent downloads, default from BHDS_CONCURRENCY or 32.
concurrency = click.option(
    "--concurrency", type=click.IntRange(min=1), default=None, help="Concurrent downloads [default: BHDS_CONCURRENCY or 32]"
)

# New in bhds: a date range and a dry run for every archive download (absent, a download is as before).
_DAY = click.DateTime(formats=["%Y-%m-%d"])
date_range = [
    click.option("--start", type=_DAY, default=None, help="First UTC day to download, YYYY-MM-DD [default: the first published]"),
    click.option("--end", type=_DAY, default=None, help="Last UTC day to download, YYYY-MM-DD [default: the last published]"),
    click.option("--dry-run", is_flag=True, default=False,
                 help="Print per symbol the files that are new or updated and their size; download and write nothing"),
]

# New in bhds: where the per-item work runs (a Dask scheduler, or local:N); absent, the local pool as
# before. Kept in ctx.meta (not a parameter) so the commands' signatures stay the legacy ones.
SCHEDULER_KEY = "bhds.scheduler"


def _keep_scheduler(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta[SCHEDULER_KEY] = value


scheduler = click.option(
    "--scheduler", default=None, expose_value=False, callback=_keep_scheduler, metavar="ADDRESS|local:N",
    help="Run the per-item work as Dask tasks: a scheduler address, or local:N for N worker processes "
         "here [default: DASK_SCHEDULER_ADDRESS, else the local process pool]",
)


def stack(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Apply decorators so that they appear in --help in the order written."""

    def apply(func: F) -> F:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


# Every archive download takes the window, and with it --scheduler (its files fetched in batches of Dask tasks).
window = stack(*date_range, scheduler)
market_download = stack(quote, contract_type, http_proxy, concurrency, window)
cm_download = stack(contract_type, http_proxy, concurrency, window)

generate_kline_options = stack(
    click.option("--split-gaps/--no-split-gaps", default=True, show_default=True, help="Whether to split data by gaps"),
    click.option("--min-days", type=int, default=1, show_default=True, help="Minimum gap days threshold"),
    click.option("--min-price-chg", type=float, default=0.1, show_default=True, help="Minimum price change ratio threshold"),
    click.option("--with-vwap/--no-with-vwap", default=True, show_default=True, help="Whether to calculate VWAP"),
    click.option("--with-funding-rates/--no-with-funding-rates", default=True, show_default=True, help="Whether to include funding rates"),
)
