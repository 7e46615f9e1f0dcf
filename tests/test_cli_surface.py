"""The command surface, held against a table transcribed from the contract (legacy-bhds.md §3.2).

Every group, command, positional (order, variadic or not), option spelling, default and help
string. A drift anywhere fails here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bhds.cli import cli

REPO = Path(__file__).resolve().parent.parent
TT = ("trade_type", "TRADE_TYPE:{spot|um_futures|cm_futures}")
PROXY = ("--http-proxy", None, "HTTP proxy address")
CONC = ("--concurrency", None, None)  # ours: additive, no legacy counterpart
SCHED = ("--scheduler", None, None)  # ours: additive, the commands whose per-item work may run on Dask
# ours: additive, every archive download takes a date range and a dry run (absent: as before), and
# --scheduler (its files fetched in batches of Dask tasks)
WINDOW = [("--start", None, None), ("--end", None, None), ("--dry-run", False, None), SCHED]
QUOTE = ("--quote", "USDT", "The quote currency, e.g., 'USDT', 'USDC', 'BTC'.")
CONTRACT = ("--contract-type", "PERPETUAL", "The type of contract, 'PERPETUAL' or 'DELIVERY'.")
STABLE = ("--stablecoins/--no-stablecoins", False, "Whether to include stablecoin symbols, such as 'USDCUSDT'.")
LEVER = ("--leverage-coins/--no-leverage-coins", False, "Whether to include leveraged coin symbols, such as 'BTCUPUSDT'.")
FORCE = ("--force-update/--no-force-update", False, None)  # no legacy help text; ours is checked by the tree walk
OVERWRITE = ("--overwrite/--no-overwrite", False, "Whether to overwrite existing files")
GEN = [
    ("--split-gaps/--no-split-gaps", True, "Whether to split data by gaps"),
    ("--min-days", 1, "Minimum gap days threshold"),
    ("--min-price-chg", 0.1, "Minimum price change ratio threshold"),
    ("--with-vwap/--no-with-vwap", True, "Whether to calculate VWAP"),
    ("--with-funding-rates/--no-with-funding-rates", True, "Whether to include funding rates"),
]
I_AWS = "The time interval for the K-lines, e.g., '1m', '5m', '1h'."
I_GEN = "K-line time interval, e.g., '1m', '5m', '1h'"
SYMS = "A list of trading symbols, e.g., 'BTCUSDT ETHUSDT'."
TTA, TTT = "Type of symbols", "Type of trading (spot/futures)"

# group -> (group help, {command: (command help, [(arg, variadic, help)], [options])})
SURFACE = {
    "aws_funding": ("Commands for maintaining Binance AWS funding rate data.", {
        "download": ("Download Binance funding rates for specific symbols from AWS data center",
                     [("trade_type", False, TTA), ("symbols", True, SYMS)], [PROXY, CONC, *WINDOW]),
        "download-um-futures": ("Download Binance USDⓈ-M Futures funding rates", [], [QUOTE, CONTRACT, PROXY, CONC, *WINDOW]),
        "download-cm-futures": ("Download Binance Coin Futures funding rates", [], [CONTRACT, PROXY, CONC, *WINDOW]),
        "verify": ("Verify Binance funding rates for specific symbols from AWS data center",
                   [("trade_type", False, TTA), ("symbols", True, SYMS)], [SCHED]),
        "verify-type-all": ("Verify Binance funding rates for all symbols with the given trade type", [("trade_type", False, TTA)], [SCHED]),
        "parse": ("Parse Binance funding rates for specific symbols", [("trade_type", False, TTA), ("symbols", True, SYMS)], [SCHED]),
        "parse-type-all": ("Parse Binance funding rates for all symbols with the given trade type", [("trade_type", False, TTA)], [SCHED]),
    }),
    "aws_kline": ("Commands for maintaining Binance AWS K-line data.", {
        "download": ("Download Binance klines for specific symbols from AWS data center",
                     [("trade_type", False, TTA), ("time_interval", False, I_AWS), ("symbols", True, SYMS)], [PROXY, CONC, *WINDOW]),
        "download-spot": ("Download Binance spot klines", [("time_intervals", True, I_AWS)], [QUOTE, STABLE, LEVER, PROXY, CONC, *WINDOW]),
        "download-um-futures": ("Download Binance USDⓈ-M Futures klines", [("time_intervals", True, I_AWS)], [QUOTE, CONTRACT, PROXY, CONC, *WINDOW]),
        "download-cm-futures": ("Download Binance COIN-M Futures klines", [("time_intervals", True, I_AWS)], [CONTRACT, PROXY, CONC, *WINDOW]),
        "verify": ("Verify Binance Klines checksums and delete corrupted data for specific symbols",
                   [("trade_type", False, TTA), ("time_interval", False, I_AWS), ("symbols", True, SYMS)], [SCHED]),
        "verify-type-all": ("Verify Binance Klines for all symbols with the given trade type and time intervals",
                            [("trade_type", False, TTA), ("time_intervals", True, I_AWS)], [SCHED]),
        "parse": ("Parse Binance Klines to Polars DataFrame and Save in Parquet Format",
                  [("trade_type", False, TTA), ("time_interval", False, I_AWS), ("symbols", True, SYMS)], [FORCE, SCHED]),
        "parse-type-all": ("Parse Binance Klines for all symbols with the given trade type and time intervals",
                           [("trade_type", False, TTA), ("time_intervals", True, I_AWS)], [FORCE, SCHED]),
    }),
    "api_data": ("Commands for maintaining Binance API data.", {
        "download-kline": ("Download Binance klines for specific symbol and dates from Kline API",
                           [("trade_type", False, TTT), ("time_interval", False, I_AWS), ("symbol", False, "Trading pair symbol, e.g., 'BTCUSDT'"),
                            ("dts", True, "A list trading dates, e.g., '20200101 20210203'.")], [PROXY]),
        "download-aws-missing-kline-type": (
            "Download Binance kline data from the Kline API for the provided trade_type that have missing dates in AWS",
            [("trade_type", False, TTT), ("time_interval", False, I_AWS)], [OVERWRITE, PROXY, SCHED]),
        "download-aws-missing-kline": (
            "Download Binance kline data from the Kline API for given symbols that have missing dates in AWS",
            [("trade_type", False, TTT), ("time_interval", False, I_AWS), ("symbols", True, "List of trading symbols, e.g., 'BTCUSDT ETHUSDT'.")],
            [OVERWRITE, PROXY, SCHED]),
        "download-recent-funding": ("Download Binance funding rate for specific symbol from Binance API",
                                    [("trade_type", False, TTT), ("symbols", True, "Trading symbols, e.g., 'BTCUSDT' or 'ETHUSDT'.")], [PROXY]),
        "download-recent-funding-type": ("Download Binance funding rate for all symbols of a specific trade type from Binance API",
                                         [("trade_type", False, TTT)], [PROXY]),
    }),
    "aws_liquidation": ("Commands for maintaining Binance AWS liquidation snapshot data.", {
        "download": ("Download Binance liquidation snapshot for specific symbols from AWS data center",
                     [("trade_type", False, TTA), ("symbols", True, SYMS)], [PROXY, CONC, *WINDOW]),
        "download-um-futures": ("Download Binance USDⓈ-M Futures liquidation snapshot", [], [QUOTE, CONTRACT, PROXY, CONC, *WINDOW]),
        "download-cm-futures": ("Download Binance Coin Futures liquidation snapshot", [], [CONTRACT, PROXY, CONC, *WINDOW]),
    }),
    "generate": ("Commands to generate the resulting data.", {
        "kline": (None, [("trade_type", False, TTT), ("time_interval", False, I_GEN), ("symbol", False, "Trading pair symbol, e.g., 'BTCUSDT'")], [*GEN, SCHED]),
        "kline-type": (None, [("trade_type", False, TTT), ("time_interval", False, I_GEN)], [*GEN, SCHED]),
        "resample": ("Resample kline data for a single symbol. All multiples of base_offset will be generated.",
                     [("trade_type", False, TTT), ("symbol", False, "Trading pair symbol, e.g., 'BTCUSDT'"),
                      ("resample_interval", False, "Resample interval, e.g., '1h', '4h'"), ("base_offset", False, "Base offset, e.g., '5m', '15m', '30m'")], [SCHED]),
        "resample-type": ("Resample kline data for all symbols of given trade type and resample interval.",
                          [("trade_type", False, TTT), ("resample_interval", False, "Resample interval, e.g., '1h', '4h'"),
                           ("base_offset", False, "Base offset, e.g., '5m', '15m', '30m'")], [SCHED]),
    }),
}


def _spelling(option: click.Option) -> str:
    return "/".join(["/".join(option.opts), *option.secondary_opts]) if option.secondary_opts else option.opts[0]


def test_root_lists_the_groups_in_legacy_order() -> None:
    # The legacy groups first, in their order; bhds' own additions (quality) come after.
    assert list(cli.commands)[:5] == ["aws_funding", "aws_kline", "api_data", "aws_liquidation", "generate"]


# bhds' own commands inside legacy groups, listed after the legacy ones.
ADDITIONS = {"generate": ["indicators-type", "bars"]}


@pytest.mark.parametrize("group_name", list(SURFACE))
def test_group_commands_and_help(group_name: str) -> None:
    group_help, commands = SURFACE[group_name]
    group = cli.commands[group_name]
    assert group.help == group_help
    assert list(group.commands) == list(commands) + ADDITIONS.get(group_name, [])


CASES = [(g, c) for g, (_, cmds) in SURFACE.items() for c in cmds]


@pytest.mark.parametrize(("group_name", "command_name"), CASES)
def test_command_parameters(group_name: str, command_name: str) -> None:
    help_text, arguments, options = SURFACE[group_name][1][command_name]
    command = cli.commands[group_name].commands[command_name]
    if help_text is not None:
        assert command.help == help_text
    args = [p for p in command.params if isinstance(p, click.Argument)]
    assert [a.name for a in args] == [name for name, _, _ in arguments]
    for arg, (name, variadic, arg_help) in zip(args, arguments):
        assert arg.required, name
        assert (arg.nargs == -1) == variadic, name
        assert arg.help == arg_help, name
        if name == "trade_type":
            assert arg.metavar == TT[1]
            assert list(arg.type.choices) == ["spot", "um_futures", "cm_futures"]
    opts = [p for p in command.params if isinstance(p, click.Option)]
    assert [_spelling(o) for o in opts] == [spec[0] for spec in options]
    for opt, (spelling, default, opt_help) in zip(opts, options):
        if spelling == "--concurrency":
            continue
        assert opt.default == default, spelling
        if opt_help is not None:
            assert opt.help == opt_help, spelling
        if spelling == "--contract-type":
            assert list(opt.type.choices) == ["PERPETUAL", "DELIVERY"]


@pytest.mark.parametrize(("group_name", "command_name"), CASES)
def test_every_command_has_help(group_name: str, command_name: str) -> None:
    result = CliRunner().invoke(cli, [group_name, command_name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["aws_kline", "parse", "foo", "1m", "X"],
         "Invalid value for 'TRADE_TYPE:{spot|um_futures|cm_futures}': 'foo' is not one of 'spot', 'um_futures', 'cm_futures'."),
        (["aws_kline", "parse", "spot", "1m"], "Missing argument 'SYMBOLS...'."),
        (["aws_kline", "download-um-futures", "1m", "--contract-type", "perpetual"],
         "Invalid value for '--contract-type': 'perpetual' is not one of 'PERPETUAL', 'DELIVERY'."),
        (["aws_kline", "nope"], "No such command 'nope'."),
        (["aws_kline", "download-spot"], "Missing argument 'TIME_INTERVALS...'."),
    ],
)
def test_usage_errors_exit_2_with_clicks_message(argv: list[str], message: str) -> None:
    proc = subprocess.run([sys.executable, "bhds.py", *argv], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_three_entry_points_are_one_cli() -> None:
    outputs = []
    for cmd in ([sys.executable, "bhds.py", "aws_kline", "--help"], [sys.executable, "-m", "bhds", "aws_kline", "--help"]):
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout.split("\n", 1)[1])  # the usage line names the program
    assert outputs[0] == outputs[1]


def test_help_works_even_with_bad_environment() -> None:
    env = {"PATH": "/usr/bin:/bin", "CRYPTO_NJOBS": "abc", "BHDS_AWS_URL": "not a url"}
    proc = subprocess.run([sys.executable, "bhds.py", "aws_kline", "parse", "--help"], cwd=REPO, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr


def _walk(command: click.Command, path: tuple[str, ...] = ()):
    """Every command of the tree, groups included, with the words that reach it."""
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _walk(sub, (*path, name))


TREE = list(_walk(cli))


def test_the_tree_walk_sees_every_command() -> None:
    leaves = {path for path, command in TREE if not isinstance(command, click.Group)}
    assert {(g, c) for g, c in CASES} <= leaves and ("quality", "report") in leaves


@pytest.mark.parametrize(("path", "command"), TREE, ids=[" ".join(p) or "root" for p, _ in TREE])
def test_every_option_has_help_and_every_argument_shows_once(path: tuple[str, ...], command: click.Command) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help, f"{' '.join(path)} {param.opts[0]} has no help text"
    ctx = click.Context(command, info_name=path[-1] if path else "bhds")
    body = result.output.split("\n", 1)[1]  # below the usage line, which names each argument too
    for param in command.params:
        if isinstance(param, click.Argument):
            metavar = param.make_metavar(ctx)
            rows = [line for line in body.splitlines() if line.strip().startswith(metavar)]
            assert len(rows) == 1, f"{' '.join(path)}: {metavar} listed {len(rows)} times:\n{result.output}"
    assert "Positional arguments" not in result.output


def test_force_update_explains_itself() -> None:
    result = CliRunner().invoke(cli, ["aws_kline", "parse", "--help"], terminal_width=200)
    assert "Re-parse every verified zip even if it was parsed before" in result.output


def test_root_help_names_the_pipeline_the_data_root_and_the_readme() -> None:
    result = CliRunner().invoke(cli, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    scripts = ["aws_download.sh", "aws_parse.sh", "api_download.sh", "gen_kline.sh", "resample.sh"]
    assert re.findall(r"^\s+\d\. (\S+\.sh)", result.output, flags=re.MULTILINE) == scripts, result.output
    assert "CRYPTO_BASE_DIR" in result.output and "README.md" in result.output
