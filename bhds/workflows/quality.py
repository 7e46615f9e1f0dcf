"""Workflow of the `quality` command group: the data quality report of the local store (no network)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from bhds import storage
from bhds.errors import DataError, InputError
from bhds.parallel import imap_isolated
from bhds.paths import Layout
from bhds.progress import bar
from bhds.quality import plot as plotting
from bhds.quality import report as rendering
from bhds.quality.analyse import SymbolTask, analyse_symbol, failed_result
from bhds.quality.cache import PieceCache, month_signatures
from bhds.quality.grid import iso_ms
from bhds.quality.inventory import discover_symbols, kline_files, result_files
from bhds.quality.record import is_below, worst_first
from bhds.quality.statedb import read_facts
from bhds.settings import Settings
from bhds.types import DAY_MS, Interval, RunSummary, TradeType, parse_interval

log = logging.getLogger("bhds.quality")

# Below these, starting worker processes costs more than it saves.
_MIN_FILES_FOR_PROCESSES = 64
_MIN_SYMBOLS_FOR_PROCESSES = 16


def report(
    settings: Settings,
    *,
    trade_type: TradeType,
    time_interval: str,
    symbols: list[str],
    output_format: str = "table",
    fail_under: float | None = None,
    plot: Path | None = None,
    output: Path | None = None,
    deep: bool = False,
    write: Callable[[str], None] | None = None,
) -> RunSummary:
    """Report per symbol what the store holds and how complete and sane it is.

    The rendered report goes to `output` (a file, written atomically) or else to `write` (the CLI
    passes its stdout). A symbol below `fail_under` percent complete, one without any data, or an
    unreadable file is a failed item, so the command exits 3. `deep` decodes every file, ignoring
    the cache and the month summaries parse keeps in partition footers, and checks those summaries.
    """
    trade_type = TradeType(trade_type)
    interval = parse_interval(time_interval, archive=True)
    if output_format not in rendering.FORMATS:
        raise InputError(f"--format {output_format!r} is not known: use one of {', '.join(rendering.FORMATS)}", exit_code=2)
    if fail_under is not None and not 0 <= fail_under <= 100:
        raise InputError(f"--fail-under {fail_under:g} is not a percentage: use a number from 0 to 100", exit_code=2)
    if plot is not None:
        plotting.require_matplotlib()
        if interval.is_calendar or interval.ms > DAY_MS:
            raise InputError(f"--plot needs an interval of one day or shorter, not {interval.text}", exit_code=2)

    summary = RunSummary("quality report")
    layout = Layout(settings.data_dir)
    names = sorted(set(symbols)) if symbols else discover_symbols(layout, trade_type, interval.text)
    if not names:
        raise DataError(
            f"no {trade_type.value} {interval.text} klines under {layout.root}: download and parse some first, "
            "or point CRYPTO_BASE_DIR at your data"
        )

    store = PieceCache.load(layout.cache_file(f"quality-{trade_type.value}-{interval.text}.json"), f"{trade_type.value}/{interval.text}")
    tasks, to_read = _plan(settings, layout, store, trade_type, interval, names, deep)
    # Worker processes pay off with many files to decode or many archive directories to list.
    jobs = settings.n_jobs if to_read >= _MIN_FILES_FOR_PROCESSES or len(names) >= _MIN_SYMBOLS_FOR_PROCESSES else 1
    log.debug("quality report: %d symbols, %d files to read, %d processes", len(names), to_read, jobs)

    results = {}
    summary.notes["symbols"] = 0  # set below; here so that it comes first in the summary line
    summary.notes["summaries"] = 0  # months read from a partition footer instead of decoded
    with bar(total=len(tasks), desc="quality", unit="symbol") as progress:
        for task, outcome in imap_isolated(analyse_symbol, tasks, jobs):
            progress.update()
            if isinstance(outcome, BaseException):
                # The symbol stays in the report, with the error, rather than vanishing from it.
                summary.fail(f"{task.symbol}: {outcome}")
                results[task.symbol] = failed_result(task, str(outcome))
                continue
            results[task.symbol] = outcome
            store.replace(task.symbol, outcome.entries, outcome.archive)
            summary.files += outcome.files_read
            summary.rows += outcome.rows_read
            summary.bytes += outcome.bytes_read
            summary.notes["summaries"] += outcome.summaries_used
            for error in outcome.errors:
                summary.fail(f"{task.symbol}: {error}")
    store.save()

    records = sorted((r.record for r in results.values()), key=worst_first)
    for record in records:
        pct = record["completeness_pct"]
        if pct is None:
            if not record["errors"]:  # an unreadable store was reported as such already
                summary.fail(f"{record['symbol']}: no parsed or API {interval.text} candles and no archive zips on disk")
        elif fail_under is not None and is_below(record, fail_under):
            summary.fail(f"{record['symbol']}: completeness {pct:.2f}% is below {fail_under:g}%")
    summary.notes["symbols"] = len(records)
    if fail_under is not None:
        summary.notes["below"] = sum(1 for r in records if is_below(r, fail_under))

    doc = rendering.document(
        records, trade_type=trade_type.value, interval=interval.text, generated_at=iso_ms(int(settings.now().timestamp() * 1000)),
        data_dir=str(layout.root), fail_under=fail_under,
    )
    text = rendering.render(doc, output_format)
    if output is not None:
        storage.write_bytes((text + "\n").encode(), Path(output))
    elif write is not None:
        write(text)

    if plot is not None:
        order = [r["symbol"] for r in records]
        labels = [r["symbol"] + ("" if r["completeness_pct"] is None else f"  {r['completeness_pct']:.2f}%") for r in records]
        plotting.draw(Path(plot), labels, [results[s].view for s in order],
                      title=f"bhds quality: {trade_type.value} {interval.text} completeness, {len(order)} symbols, worst first")
    return summary


def _plan(settings: Settings, layout: Layout, store: PieceCache, trade_type: TradeType, interval: Interval,
          names: list[str], deep: bool) -> tuple[list[SymbolTask], int]:
    """One task per symbol with its file lists, cached months and state facts; and the files left to decode."""
    facts = read_facts(layout.state_db, trade_type, interval.text, names)
    yesterday = int(settings.now().timestamp() * 1000) // DAY_MS - 1
    segments = result_files(layout, trade_type, interval.text)
    tasks, to_read = [], 0
    for name in names:
        files = kline_files(layout, trade_type, name, interval.text)
        cached = store.entries(name)
        # Files of months not cached: decoded, or (most) read from their footer.
        to_read += sum(len(sig) for month, sig in month_signatures(files).items() if deep or cached.get(month, {}).get("sig") != sig)
        tasks.append(SymbolTask(
            str(layout.root), trade_type, interval.text, name, files, segments.get(name, []), cached, store.archive(name),
            time.time_ns(), yesterday,  # real clock, not settings.now(): it is compared with file mtimes
            facts.last_modified_ms.get(name), tuple(sorted(facts.api_empty_days.get(name, ()))), deep,
        ))
    return tasks, to_read
