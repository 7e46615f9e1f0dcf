"""`read_indicators`: an indicators file as a pyarrow Table, for `bhds.load(..., indicators=[...])` and users."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bhds import storage
from bhds.errors import DataError, InputError
from bhds.indicators.compute import TIME_COLUMN
from bhds.indicators.specs import parse_spec
from bhds.paths import Layout
from bhds.types import TradeType

if TYPE_CHECKING:
    import pyarrow as pa


def _columns_for(item: str, available: list[str]) -> list[str]:
    """`rsi:14` → its columns; a column name (`macd_signal_12_26_9`) → itself."""
    if item in available and item != TIME_COLUMN:
        return [item]
    return list(parse_spec(item).columns)


def indicators_command(trade_type: TradeType, interval: str, offset: str | None, specs: list[str]) -> str:
    """The command that writes these indicators, for error messages."""
    where = f" --offset {offset}" if offset else ""
    wanted = " ".join(f"--indicator {spec}" for spec in specs) or "--indicator rsi:14"
    return f"bhds generate indicators-type {TradeType(trade_type).value} {interval}{where} {wanted}"


def read_indicators(
    trade_type: TradeType | str,
    symbol: str,
    interval: str = "1m",
    *,
    offset: str | None = None,
    indicators: list[str] | None = None,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    data_dir: Path | None = None,
) -> pa.Table:
    """`candle_begin_time` (UTC) and the asked indicators' columns of one symbol, in time order.

    `indicators` takes specs (`"rsi:14"`, `"macd:12,26,9"`, expanded to all their columns) or
    column names; None returns every column the file has. `start` is inclusive and `end` exclusive.
    `data_dir` is the `binance_data` directory (default: the configured store). Raises InputError
    when the file or a column is missing, naming the `generate indicators-type` command that writes it.
    """
    import pyarrow as pa  # noqa: F811
    import pyarrow.compute as pc

    if data_dir is None:
        from bhds.settings import load_settings

        data_dir = load_settings().data_dir
    trade_type = TradeType(trade_type)
    path = Layout(Path(data_dir)).indicators_file(trade_type, interval, offset, symbol)
    asked = list(indicators or [])
    if not path.exists():
        raise InputError(f"no indicators for {symbol} {trade_type.value} {interval}{'/' + offset if offset else ''} ({path}): "
                         f"run `{indicators_command(trade_type, interval, offset, asked)}`", exit_code=2)
    try:
        available = storage.parquet_schema(path).names
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read {path} ({exc}): run `{indicators_command(trade_type, interval, offset, asked)}` again") from exc
    if indicators is None:
        wanted = [c for c in available if c != TIME_COLUMN]
    else:
        wanted = []
        for item in asked:
            wanted += [c for c in _columns_for(item, available) if c not in wanted]
        missing = [c for c in wanted if c not in available]
        if missing:
            raise InputError(f"{path} has no column {', '.join(missing)}: run `{indicators_command(trade_type, interval, offset, asked)}`",
                             exit_code=2)
    filters = []
    for bound, op in ((start, ">="), (end, "<")):
        if bound is not None:
            filters.append((TIME_COLUMN, op, _utc(bound)))
    table = storage.read_rows(path, columns=[TIME_COLUMN, *wanted], filters=filters or None)
    return table.take(pc.sort_indices(table, [(TIME_COLUMN, "ascending")]))


def _utc(value: datetime | str):  # noqa: ANN202 - a pandas Timestamp in UTC
    import pandas as pd

    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
