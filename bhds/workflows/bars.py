"""`generate bars`: klines from parsed trades/aggTrades, one file per symbol, incrementally.

Reads `parsed_data/<market>/<dataset>/<SYMBOL>/YYYYMM.pqt` (written by `archive parse`) and
writes `results_data/<market>/trade_bars/<interval>/<SYMBOL>.pqt`. A file records in its footer
the partitions (name, size, mtime) and options it was built from; a symbol whose record still
matches is skipped; when only later partitions changed (a new day), the earlier months' bars are
kept from the previous file and only the changed months are read.
"""

from __future__ import annotations

import logging

from bhds import paths
from bhds.errors import InputError
from bhds.paths import Layout
from bhds.settings import Settings
from bhds.storage import stage_lock, sweep_temp_files
from bhds.types import RunSummary, TradeType

log = logging.getLogger("bhds.workflows.bars")


def _contract_sizes(layout: Layout, tt: TradeType, dataset: str, symbols: list[str]) -> dict[str, float]:
    """COIN-M aggTrades carry contracts only: the base-asset volume needs each contract's USD size."""
    if tt is not TradeType.cm_futures or dataset != "aggTrades":
        return {}
    from bhds.generate.contracts import CONTRACT_SIZES_CACHE, load_sizes, sizes_for

    return sizes_for(symbols, load_sizes(layout.cache_file(CONTRACT_SIZES_CACHE)))


def generate_bars(settings: Settings, *, market: str, symbols: list[str], interval: str, source: str) -> RunSummary:
    from bhds.generate.bars import BarsTask, bar_interval, build_bars, built_from, reuse_plan, signature
    from bhds.parallel import write_outputs

    tt = TradeType(market)
    bar = bar_interval(interval)
    layout = Layout(settings.data_dir)
    named = list(dict.fromkeys(symbols)) or paths.list_subdirs(layout.parsed_dataset_symbols_dir(tt, source))
    partitions = {s: [p for p in paths.list_files(layout.parsed_dataset_dir(tt, source, s), paths.PARQUET_SUFFIX)
                      if paths.partition_month(p.name)] for s in named}
    if not any(partitions.values()):
        which = f" of {' '.join(named)}" if named else ""
        args = f"{tt.value} {source}" + (f" {' '.join(named)}" if named else " SYMBOL...")
        raise InputError(f"no parsed {source} in {tt.value}{which}: run `bhds archive download {args}`, "
                         f"`bhds archive verify {args}` and `bhds archive parse {args}` first")
    summary = RunSummary("generate bars")
    summary.notes["symbols"] = len(named)
    sizes = _contract_sizes(layout, tt, source, named)
    # One lock per output folder: --from trades and --from aggTrades write the same files.
    with stage_lock(layout, paths.lock_name("bars", tt, "trade_bars", bar.text), settings.lock_timeout):
        sweep_temp_files(layout.trade_bars_dir(tt, bar.text))
        tasks = []
        for symbol in named:
            sources = partitions[symbol]
            if not sources:
                summary.fail(f"{symbol}: no parsed {source}; run `bhds archive parse {tt.value} {source} {symbol}` first")
                continue
            target = layout.trade_bars_file(tt, bar.text, symbol)
            built, previous = signature(sources, source, bar.text, sizes.get(symbol)), built_from(target)
            if previous == built:
                summary.skipped += 1
                continue
            reads, keep_before = reuse_plan(previous, built, sources, bar.ms)
            tasks.append(BarsTask(tt.value, source, bar.ms, tuple(map(str, reads)), str(target), built, sizes.get(symbol),
                                  keep_before))
        log.info("building %s bars of %d symbol(s) from %s on %d process(es)", bar.text, len(tasks), source, settings.n_jobs)
        write_outputs(build_bars, tasks, settings.n_jobs, summary, target=lambda task: task.target,
                      kept="its previous file is kept")
    return summary
