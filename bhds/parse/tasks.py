"""The work items a parse run hands to worker processes, and what they hand back.

Plain picklable records without pyarrow, so planning a run (and a run with nothing to do)
never pays for importing the Arrow stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bhds.parse.sources import SourceZip

# How a zip stands against the ledger.
DONE, NEW, CHANGED = "done", "new", "changed"


@dataclass(frozen=True)
class DaySource:
    zip: SourceZip
    day_ms: int  # 00:00 UTC of the file's date
    status: str  # DONE, NEW or CHANGED


@dataclass(frozen=True)
class MonthTask:
    """Bring one partition up to date with the zips of its month."""

    symbol: str
    interval: str
    year: int
    month: int
    partition: str
    sources: tuple[DaySource, ...]
    rebuild: bool = False  # --force-update: ignore what the partition holds

    @property
    def label(self) -> str:
        return f"{self.symbol} {self.interval} {self.year:04d}{self.month:02d}"


@dataclass
class MonthResult:
    parsed: list[SourceZip] = field(default_factory=list)  # read and merged into the partition
    adopted: list[SourceZip] = field(default_factory=list)  # already in a legacy partition: recorded, not read
    unchanged: int = 0  # zips of the month already in the partition in their current version
    failures: list[tuple[str, str]] = field(default_factory=list)  # (zip name, reason): none of its rows used
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (zip name, what): some rows dropped, the rest used
    rows_parsed: int = 0  # rows taken from the parsed zips (rejected rows and refused files not counted)
    rows_rejected: int = 0
    rows_outside: int = 0  # rows dropped: outside the month, or for another day that has a zip of its own
    duplicates_dropped: int = 0  # parsed rows dropped because another parsed row has the same time
    rows_written: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    written: bool = False
    partition_was_unreadable: str = ""


@dataclass(frozen=True)
class FundingTask:
    """Rebuild one symbol's funding file from all its verified monthly zips."""

    symbol: str
    output: str
    sources: tuple[tuple[SourceZip, int, int], ...]  # (zip, year, month), sorted by month

    @property
    def label(self) -> str:
        return self.symbol


@dataclass
class FundingResult:
    parsed: list[SourceZip] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    rows_parsed: int = 0
    rows_kept: int = 0  # rows of the previous file in months no zip could replace
    rows_written: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    written: bool = False


# Worker entry points, importable without pyarrow: the main process only pickles a reference to
# them, so it never loads the Arrow stack when the work runs in worker processes.

def run_month(task: MonthTask) -> MonthResult:
    from bhds.parse.jobs import update_month

    return update_month(task)


def run_funding(task: FundingTask) -> FundingResult:
    from bhds.parse.jobs import build_funding

    return build_funding(task)
