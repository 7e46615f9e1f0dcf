"""Render the report: an aligned table for people, JSON and CSV for machines."""

from __future__ import annotations

import csv
import io
import json

from bhds.quality.record import SCHEMA, is_below
from bhds.types import parse_interval

FORMATS = ("table", "json", "csv")

CSV_COLUMNS = (
    "symbol", "first_day", "last_day", "days_behind", "days_expected", "days_in_archive", "days_verified",
    "days_unparsed", "days_from_api", "days_api_empty", "days_missing", "days_partial", "bars_expected",
    "bars_present", "bars_missing", "completeness_pct", "holes", "longest_hole_bars", "longest_hole_after",
    "duplicate_rows", "parse_duplicates", "misaligned_rows", "ohlc_violation_rows", "high_below_open_close",
    "low_above_open_close", "negative", "nan", "zero_volume_rows", "zero_volume_runs", "zero_volume_longest_run",
    "segments", "split_gaps", "funding_records", "funding_expected", "funding_coverage_pct",
    "funding_interval_changes", "funding_last", "archive_newest_mtime", "archive_last_modified", "errors",
)


def document(records: list[dict], *, trade_type: str, interval: str, generated_at: str, data_dir: str,
             fail_under: float | None) -> dict:
    """The JSON document (schema in bhds.quality.record)."""
    return {
        "schema": SCHEMA,
        "trade_type": trade_type,
        "interval": interval,
        "generated_at": generated_at,
        "data_dir": data_dir,
        "fail_under": fail_under,
        "symbols": records,
    }


def render(doc: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False)
    if fmt == "csv":
        return render_csv(doc["symbols"])
    return render_table(doc)


def csv_row(r: dict) -> dict:
    hole, ohlc, zero, fund = r["longest_hole"] or {}, r["ohlc_violations"], r["zero_volume"], r["funding"] or {}
    row = {key: r[key] for key in CSV_COLUMNS if key in r and not isinstance(r[key], (dict, list))}
    row.update({
        "longest_hole_bars": hole.get("bars", 0),
        "longest_hole_after": hole.get("after"),
        "ohlc_violation_rows": ohlc["rows"],
        "high_below_open_close": ohlc["high_below_open_close"],
        "low_above_open_close": ohlc["low_above_open_close"],
        "negative": ohlc["negative"],
        "nan": ohlc["nan"],
        "zero_volume_rows": zero["rows"],
        "zero_volume_runs": zero["runs"],
        "zero_volume_longest_run": zero["longest_run"],
        "segments": len(r["segments"]),
        "split_gaps": len(r["split_gaps"]),
        "funding_records": fund.get("records"),
        "funding_expected": fund.get("expected"),
        "funding_coverage_pct": fund.get("coverage_pct"),
        "funding_interval_changes": len(fund["interval_changes"]) if fund else None,
        "funding_last": fund.get("last"),
        "errors": "; ".join(r["errors"]),
    })
    return row


def render_csv(records: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow(csv_row(record))
    return buffer.getvalue().rstrip("\n")


def _num(value: object) -> str:
    return "-" if value is None else str(value)


def _duration(bars: int, interval: str) -> str:
    """Missing bars as time: `90m`, `5d3h`."""
    parsed = parse_interval(interval)
    if parsed.is_calendar:
        return f"{bars * parsed.count}mo"
    minutes = bars * parsed.ms // 60_000
    if minutes < 120:
        return f"{minutes}m" if minutes else f"{bars * parsed.ms // 1000}s"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h{minutes % 60:02d}m" if minutes % 60 else f"{hours}h"
    return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"


def _funding_cell(fund: dict | None) -> str:
    if not fund:
        return "-"
    cell = "-" if fund["coverage_pct"] is None else f"{fund['coverage_pct']:.1f}%"
    if fund["interval_changes"]:
        cell += f" {len(fund['interval_changes'])}chg"
    return cell


def _row(r: dict, interval: str) -> list[str]:
    zero = r["zero_volume"]
    updated = r["archive_last_modified"] or r["archive_newest_mtime"]
    return [
        r["symbol"] + (" !" if r["errors"] else ""),
        r["first_day"] or "-",
        r["last_day"] or "-",
        "-" if r["completeness_pct"] is None else f"{r['completeness_pct']:.2f}",
        _num(r["days_missing"]),
        _num(r["days_partial"]),
        str(r["days_in_archive"]),
        str(r["days_from_api"]),
        str(r["holes"]),
        _duration(r["longest_hole"]["bars"], interval) if r["longest_hole"] else "-",
        str(r["duplicate_rows"]) + ("" if r["parse_duplicates"] is None else f"/{r['parse_duplicates']}"),
        str(r["misaligned_rows"]),
        str(r["ohlc_violations"]["rows"]),
        f"{zero['runs']}/{zero['longest_run']}" if zero["runs"] else "0",
        str(len(r["segments"])) if r["segments"] else "-",
        _funding_cell(r["funding"]),
        updated[:10] if updated else "-",
    ]


HEADER = ["SYMBOL", "FIRST", "LAST", "COMPL%", "MISS", "PART", "ARCH", "API", "HOLES", "LONGEST", "DUP", "OFF", "OHLC",
          "ZERO", "SEGS", "FUNDING", "UPDATED"]
_LEFT = {0, 1, 2, 15, 16}

LEGEND = """\
COMPL% bars present / expected, first to last candle   MISS, PART days with no / some bars missing
ARCH days in the archive   API days filled from the API   HOLES runs of missing bars, LONGEST the longest
DUP rows repeating a time (/ dropped while parsing, when recorded)   OFF rows off the interval grid
OHLC rows with high < open/close, low > open/close, negative or NaN values
ZERO zero-volume runs/longest   SEGS generated segments
FUNDING settlements present / expected, interval changes   UPDATED last archive update   ! unreadable files"""


def render_table(doc: dict) -> str:
    records = doc["symbols"]
    rows = [HEADER] + [_row(r, doc["interval"]) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = [
        "  ".join(cell.ljust(widths[i]) if i in _LEFT else cell.rjust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in rows
    ]
    title = f"bhds quality report: {doc['trade_type']} {doc['interval']}, {len(records)} symbols, worst first"
    footer = []
    if doc["fail_under"] is not None:
        below = [r["symbol"] for r in records if is_below(r, doc["fail_under"])]
        footer.append(f"{len(below)} below {doc['fail_under']:g}%" + (f": {', '.join(below)}" if below else ""))
    return "\n".join([title, *lines, *footer, LEGEND])
