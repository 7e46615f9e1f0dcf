"""Workflows of `list-data` and `catalog`: what the store holds, and SQL views over it (no network)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bhds.errors import InputError
from bhds.paths import Layout
from bhds.quality.grid import iso_ms
from bhds.research import catalog as sql
from bhds.research import listing
from bhds.settings import Settings
from bhds.types import RunSummary, TradeType, parse_interval


def list_data(settings: Settings, *, trade_type: str | None, interval: str | None, output_format: str,
              write: Callable[[str], None]) -> RunSummary:
    """Render what is local (per trade type, dataset, interval, symbol) through `write`."""
    if output_format not in listing.FORMATS:
        raise InputError(f"--format {output_format!r} is not known: use one of {', '.join(listing.FORMATS)}", exit_code=2)
    if interval is not None:
        parse_interval(interval, what="--interval", allow_zero=False)
    trade_types = [TradeType(trade_type)] if trade_type else list(TradeType)
    layout = Layout(settings.data_dir)
    records = listing.list_data(layout, trade_types, interval)
    doc = listing.document(records, data_dir=str(layout.root), generated_at=iso_ms(int(settings.now().timestamp() * 1000)) or "")
    write(listing.render(doc, output_format))
    summary = RunSummary("list-data")
    summary.files = sum(r["files"] for r in records)
    summary.rows = sum(r["rows"] for r in records)
    summary.bytes = sum(r["bytes"] for r in records)
    summary.notes["stale"] = sum(1 for r in records if r["stale"])
    return summary


def catalog(settings: Settings, *, path: Path | None) -> RunSummary:
    """Write the DuckDB catalog of views (default `binance_data/catalog.duckdb`)."""
    summary = RunSummary("catalog")
    names = sql.write_catalog(Layout(settings.data_dir), path)
    summary.files = 1
    summary.notes["views"] = len(names)
    return summary
