"""Extend a 1m file's resamples by the windows its changed months reach, instead of resampling its history.

The daily case: `generate kline-type` extended a symbol's latest 1m file, keeping its first row
groups as bytes (`extend`; the build record's `lineage` says how many, for which earlier version
of the file). A resampled bar depends only on the minutes of its window, so every bar whose window
ends before the first minute that may differ (`cut`) is what the last run wrote. A resampled file
has one row group per quarter (`jobs.RESAMPLED_GROUP_MONTHS`); per offset, its leading groups
whose bars all end by `cut` are kept as raw bytes, the bars from the next quarter on are resampled
from the 1m rows of that quarter on, encoded alone and spliced in (`splice`). A full build writes
the same groups with the same settings, so it gives the same file.

When a bar of the last kept quarter would close after `cut` (a window straddling it, e.g. the
23:05 bar of a quarter's last day with `cut` at midnight), one quarter fewer is kept. Whenever
identity is not certain the offset is resampled whole: calendar windows (`1mo`), an output without
quarter groups (older files), no quarter but the first that could be kept, nothing new to splice,
another schema, a 1m file out of order.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from bhds import storage
from bhds.generate import frame
from bhds.generate.frame import TIME
from bhds.generate.jobs import RESAMPLED_GROUP_MONTHS, ResampleJob
from bhds.generate.offsets import MINUTE_MS, Offset, ResamplePlan
from bhds.generate.output import group_time_ranges, period_start_ms, write_extended
from bhds.generate.resample import resample_columns
from bhds.generate.splice import SpliceError
from bhds.paths import resampled_file_in

log = logging.getLogger("bhds.generate")


def source_cut(metadata: pa.parquet.FileMetaData, kept: int) -> int | None:
    """Where the 1m file's minutes may start to differ from the version last resampled: after its `kept` groups."""
    ranges = group_time_ranges(metadata)
    if ranges is None or not 1 <= kept <= metadata.num_row_groups or np.any(ranges[0][1:] <= ranges[1][:-1]):
        return None  # groups out of order: a file generate did not write
    return int(ranges[1][kept - 1]) + MINUTE_MS  # every minute up to the kept groups' last lies in them, in both versions


def _kept_groups(metadata: pa.parquet.FileMetaData, plan: ResamplePlan, offset: Offset, cut: int) -> tuple[int, int] | None:
    """(row groups kept, start of the first rebuilt quarter) for one offset's previous output; None to resample it whole."""
    ranges = group_time_ranges(metadata)
    if ranges is None or metadata.num_row_groups < 2:
        return None
    lows, highs = ranges
    periods = period_start_ms(lows, RESAMPLED_GROUP_MONTHS)
    if not np.array_equal(period_start_ms(highs, RESAMPLED_GROUP_MONTHS), periods) or np.any(np.diff(periods) <= 0):
        return None  # not one group per quarter
    shift, length = plan.anchor_ms + offset.blocks * plan.block_ms, plan.interval.ms
    for keep in range(metadata.num_row_groups - 1, 0, -1):  # never the last group: its quarter may grow
        since = int(periods[keep])
        first_window = since + (shift - since) % length  # the bar before it (kept) closes there
        if first_window <= cut:
            return keep, since
    return None


def extend_resampled(job: ResampleJob, name: str, schema: pa.Schema, vwap_name: str | None) -> dict[str, tuple[int, int]]:
    """Write the offsets of `job` that can be extended into `job.out_dir`; {offset: (rows, bytes)} of those written."""
    plan = job.plan
    if job.previous_dir is None or not job.kept_source_groups or not plan.block_ms:
        return {}
    source = storage.open_parquet(job.source)
    cut = source_cut(source.metadata, job.kept_source_groups)
    if cut is None:
        return {}
    plans: dict[str, tuple[Offset, Path, int, int, int]] = {}  # offset, previous file, groups kept, their rows, rebuilt from
    for offset in plan.offsets:
        previous = resampled_file_in(job.previous_dir, offset.name, name)
        try:
            old = storage.open_parquet(previous)
        except (OSError, pa.ArrowException):
            continue
        kept = _kept_groups(old.metadata, plan, offset, cut) if old.schema_arrow.equals(schema, check_metadata=False) else None
        if kept is not None:
            keep, since = kept
            plans[offset.name] = (offset, previous, keep, sum(old.metadata.row_group(i).num_rows for i in range(keep)), since)
    if not plans:
        return {}

    since = min(p[4] for p in plans.values())
    highs = group_time_ranges(source.metadata)[1]  # type: ignore[index]
    table = source.read_row_groups([i for i in range(source.metadata.num_row_groups) if highs[i] >= since], columns=schema.names)
    t = frame.to_numpy(table.column(TIME))
    if len(t) > 1 and not bool(np.all(t[1:] > t[:-1])):
        return {}  # not sorted and unique: `resample_columns` would order the whole file first
    first = int(np.searchsorted(t, since))
    table = table.slice(first)

    def read(column: str) -> np.ndarray:
        return frame.to_numpy(table.column(column).cast(schema.field(column).type))

    frames = resample_columns(read, schema.names, replace(plan, offsets=tuple(p[0] for p in plans.values())), vwap_name=vwap_name)
    written: dict[str, tuple[int, int]] = {}
    for offset_name, (_offset, previous, keep, kept_rows, offset_since) in plans.items():
        bars = frames[offset_name]
        bars = frame.take(bars, bars[TIME] >= offset_since)
        if not len(bars[TIME]):
            continue
        try:
            size = write_extended(previous, keep, frame.to_table(bars, schema), resampled_file_in(job.out_dir, offset_name, name),
                                  RESAMPLED_GROUP_MONTHS)
        except SpliceError as exc:
            log.debug("%s %s: cannot extend (%s), resampling it whole", name, offset_name, exc)
            continue
        written[offset_name] = (kept_rows + len(bars[TIME]), size)
    return written
