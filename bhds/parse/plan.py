"""Decide what a parse run must do: which months are due, from the verified zips and the ledger.

Planning only stats files (one directory scan per symbol), reads the ledger and the last four
bytes of each partition, so a run with nothing new is close to instant; reading partitions is
left to the workers.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from bhds.parse.ledger import Fingerprints
from bhds.parse.sources import SourceZip, funding_zip_month, kline_zip_day, verified_zips
from bhds.parse.tasks import CHANGED, DONE, NEW, DaySource, FundingTask, MonthTask
from bhds.parse.timeline import epoch_ms
from bhds.paths import Layout, partition_month
from bhds.storage import ends_like_parquet
from bhds.types import TradeType


@dataclass
class SymbolPlan:
    tasks: list[MonthTask | FundingTask] = field(default_factory=list)
    up_to_date: int = 0  # verified zips already parsed in their current version
    ignored: list[str] = field(default_factory=list)  # zip names that are not this symbol's files
    mismatched: list[str] = field(default_factory=list)  # marked verified, but not the size the archive stage verified
    n_sources: int = 0
    orphans: list[Path] = field(default_factory=list)  # --force-update: partitions of months without a zip

    @property
    def work_bytes(self) -> int:
        """Bytes of zips that may have to be read (a rough cost, to decide whether a pool pays off)."""
        total = 0
        for task in self.tasks:
            if isinstance(task, MonthTask):
                total += sum(s.zip.size for s in task.sources if s.status != DONE)
            else:
                total += sum(z.size for z, _, _ in task.sources)
        return total


def _existing_files(directory: Path) -> set[str]:
    try:
        return {entry.name for entry in os.scandir(directory)}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def _verified(plan: SymbolPlan, directory: Path, archive_sizes: dict[str, int]) -> list[SourceZip]:
    """Zips with a `.verified` marker, less those the archive stage's manifest knows at another size.

    The marker alone suffices (trees of bhds.py have nothing else); a manifest row that disagrees
    means the file changed after it was checked, so it waits for the next verify.
    """
    found = []
    for source in verified_zips(directory):
        expected = archive_sizes.get(source.name)
        if expected is not None and expected != source.size:
            plan.mismatched.append(source.name)
            continue
        found.append(source)
    return found


def plan_klines(layout: Layout, trade_type: TradeType, symbol: str, interval: str, recorded: Fingerprints,
                force: bool, archive_sizes: dict[str, int] | None = None) -> SymbolPlan:
    """The months of one symbol and interval whose partition is missing or behind its zips."""
    plan = SymbolPlan()
    by_month: dict[tuple[int, int], list[DaySource]] = defaultdict(list)
    for source in _verified(plan, layout.aws_kline_dir(trade_type, symbol, interval), archive_sizes or {}):
        day = kline_zip_day(source.name, symbol, interval)
        if day is None:
            plan.ignored.append(source.name)
            continue
        previous = recorded.get(source.name)
        status = CHANGED if force else NEW if previous is None else DONE if previous == source.fingerprint else CHANGED
        by_month[(day.year, day.month)].append(DaySource(source, epoch_ms(day), status))
        plan.n_sources += 1
    existing = _existing_files(layout.parsed_kline_dir(trade_type, symbol, interval))
    if force and by_month:
        # The legacy tool deletes the whole folder first, so months without any zip go too. A month
        # whose zip is only waiting for verify is kept, and nothing goes when no zip is usable.
        on_disk = {day for name in _existing_files(layout.aws_kline_dir(trade_type, symbol, interval))
                   if name.endswith(".zip") and (day := kline_zip_day(name, symbol, interval)) is not None}
        wanted = {layout.parsed_kline_partition(trade_type, symbol, interval, d.year, d.month).name for d in on_disk}
        plan.orphans = [layout.parsed_kline_dir(trade_type, symbol, interval) / name for name in sorted(existing)
                        if partition_month(name) is not None and name not in wanted]
    for (year, month), sources in sorted(by_month.items()):
        path = layout.parsed_kline_partition(trade_type, symbol, interval, year, month)
        due = force or path.name not in existing or any(s.status != DONE for s in sources) or not ends_like_parquet(path)
        if not due:
            plan.up_to_date += len(sources)
            continue
        plan.tasks.append(MonthTask(symbol, interval, year, month, str(path), tuple(sources), rebuild=force))
    return plan


def plan_funding(layout: Layout, trade_type: TradeType, symbol: str, recorded: Fingerprints,
                 archive_sizes: dict[str, int] | None = None) -> SymbolPlan:
    """One task rebuilding the symbol's funding file, unless its zips are exactly those last parsed."""
    plan = SymbolPlan()
    sources = []
    for source in _verified(plan, layout.aws_funding_dir(trade_type, symbol), archive_sizes or {}):
        month = funding_zip_month(source.name, symbol)
        if month is None:
            plan.ignored.append(source.name)
            continue
        sources.append((source, *month))
    plan.n_sources = len(sources)
    if not sources:
        return plan
    output = layout.parsed_funding_file(trade_type, symbol)
    current = {z.name: z.fingerprint for z, _, _ in sources}
    if current == recorded and ends_like_parquet(output):  # also rebuilds a file cut short
        plan.up_to_date = len(sources)
        return plan
    sources.sort(key=lambda item: (item[1], item[2]))
    plan.tasks.append(FundingTask(symbol, str(output), tuple(sources)))
    return plan
