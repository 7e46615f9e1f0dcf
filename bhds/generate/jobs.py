"""What the workflow hands to worker processes, and what comes back.

Kept free of numpy and pyarrow: the main process only plans, runs the pool and swaps
directories, so it starts the workers sooner and holds less memory. The work itself is in
`tasks`, imported by whichever process runs a job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bhds.generate.offsets import ResamplePlan
from bhds.types import TradeType

RESAMPLE_SOURCE_INTERVAL = "1m"
RESAMPLED_GROUP_MONTHS = 3  # a resampled file's row groups: calendar quarters (`output.write_months`)
TASKS_MODULE = "bhds.generate.tasks"  # what a worker imports to run a job


@dataclass(frozen=True)
class KlineJob:
    """One symbol's result klines (contract §6.11), written into `out_dir`."""

    data_dir: Path
    trade_type: TradeType
    interval: str
    symbol: str
    out_dir: Path
    split_gaps: bool = True
    min_days: int = 1
    min_price_chg: float = 0.1
    with_vwap: bool = True
    with_funding_rates: bool = True
    contract_size: float | None = None  # COIN-M only
    # The symbol's files (names without suffix) in `previous_dir` as the last run wrote them,
    # untouched since: the latest one may then be extended rather than rebuilt.
    previous: tuple[str, ...] = ()
    previous_dir: Path | None = None
    previous_inputs: dict | None = None  # the `TaskResult.inputs` of that build


@dataclass(frozen=True)
class ResampleJob:
    """One 1m results file resampled at every offset of `plan` (contract §6.12), into `out_dir/<offset>/`."""

    source: Path
    trade_type: TradeType
    plan: ResamplePlan
    out_dir: Path
    # The outputs as the last run wrote them (untouched since) are in `previous_dir`, and `source`'s
    # first `kept_source_groups` row groups are byte for byte the ones they were resampled from:
    # their leading bars may then be kept (`resample_extend`).
    previous_dir: Path | None = None
    kept_source_groups: int = 0


@dataclass
class TaskResult:
    name: str
    files: list[str] = field(default_factory=list)  # names (or offsets) written
    rows: int = 0
    bytes: int = 0
    skipped: bool = False
    extended: bool | int = False  # the latest file kept its past months and got only the changed ones (resamples: how many offsets)
    inputs: dict | None = None  # what the files were built from (`tasks.inputs_record`), for the next run's `extend`


def run_kline_job(job: KlineJob) -> TaskResult:
    from bhds.generate.tasks import build_klines

    return build_klines(job)


def run_resample_job(job: ResampleJob) -> TaskResult:
    from bhds.generate.tasks import resample_file

    return resample_file(job)
