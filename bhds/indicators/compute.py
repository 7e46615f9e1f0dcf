"""One symbol's indicators: read its kline segments, run TA-Lib on each on its own, write one file.

A split symbol (`SP0_X`, `SP1_X`, …, `X`) is computed segment by segment, so no moving window
reaches across a split gap; the segments are then stacked in time order into `<X>.pqt`. The
output's Parquet footer records what it was built from (the specs, TA-Lib's version, each input's
name, size and mtime, and a digest of the input columns used), which is what makes re-runs
incremental: unchanged stat → skipped without reading; changed stat but the same columns (generate
rewrote identical results) → skipped after reading; anything else → recomputed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from bhds import storage
from bhds.errors import DataError
from bhds.indicators.specs import IndicatorSpec, load_talib
from bhds.schema import TIMESTAMP

MANIFEST_KEY = b"bhds.indicators"
MANIFEST_FORMAT = 1
TIME_COLUMN = "candle_begin_time"


@dataclass(frozen=True)
class IndicatorJob:
    symbol: str
    inputs: tuple[Path, ...]  # the symbol's kline files (segments), any order
    output: Path
    specs: tuple[IndicatorSpec, ...]


@dataclass(frozen=True)
class IndicatorResult:
    skipped: bool
    rows: int = 0
    bytes: int = 0


def read_manifest(path: Path) -> dict | None:
    """What an indicators file was built from, or None (no file, not ours, unreadable)."""
    text = storage.footer_value(path, MANIFEST_KEY)
    try:
        return json.loads(text) if text else None
    except ValueError:  # not ours: simply rebuilt
        return None


def _stats(inputs: tuple[Path, ...]) -> list[list]:
    return storage.files_signature(sorted(inputs, key=lambda p: p.name))


def _input_columns(specs: tuple[IndicatorSpec, ...]) -> list[str]:
    needed = {column for spec in specs for column in spec.indicator.inputs}
    return [c for c in ("open", "high", "low", "close", "volume") if c in needed]


def _read_segments(job: IndicatorJob, columns: list[str]) -> list[tuple[str, dict]]:
    """(file name, {column: float64 array}) per input, in time order."""
    import numpy as np
    import pyarrow as pa

    segments = []
    for path in job.inputs:
        with storage.ParquetColumns(path) as parquet:
            data = {TIME_COLUMN: parquet.column(TIME_COLUMN, TIMESTAMP).cast(pa.int64()).to_numpy(zero_copy_only=False)}
            for column in columns:
                values = parquet.column(column, pa.float64())
                data[column] = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
        segments.append((path.name, data))
    segments.sort(key=lambda item: (item[1][TIME_COLUMN][0] if len(item[1][TIME_COLUMN]) else 0, item[0]))
    return segments


def _digest(segments: list[tuple[str, dict]], columns: list[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for name, data in segments:
        h.update(name.encode() + b"\0")
        for column in (TIME_COLUMN, *columns):
            h.update(data[column].tobytes())
    return h.hexdigest()


def compute_segment(talib, data: dict, specs: tuple[IndicatorSpec, ...]) -> dict:  # noqa: ANN001 - the talib module
    """{column: float64 array} of every spec's outputs on one segment."""
    import numpy as np

    n = len(data[TIME_COLUMN])
    out = {}
    for spec in specs:
        indicator = spec.indicator
        if n == 0:
            values = [np.empty(0)] * len(indicator.outputs)
        else:
            result = getattr(talib, indicator.function)(*[data[c] for c in indicator.inputs], **spec.talib_kwargs)
            values = list(result) if isinstance(result, tuple | list) else [result]
        for column, array in zip(spec.columns, values):
            out[column] = np.asarray(array, dtype=np.float64)
    return out


def run_indicator_job(job: IndicatorJob) -> IndicatorResult:
    """Build (or keep) `job.output`; see the module docstring for when it is skipped."""
    import numpy as np
    import pyarrow as pa

    talib = load_talib()
    specs_text = [spec.text for spec in job.specs]
    stats = _stats(job.inputs)
    previous = read_manifest(job.output)
    same_recipe = previous is not None and previous.get("format") == MANIFEST_FORMAT and previous.get("specs") == specs_text \
        and previous.get("talib") == talib.__version__
    if same_recipe and previous.get("inputs") == stats:
        return IndicatorResult(skipped=True)

    columns = _input_columns(job.specs)
    segments = _read_segments(job, columns)
    digest = _digest(segments, columns)
    if same_recipe and previous.get("digest") == digest:
        return IndicatorResult(skipped=True)

    pieces = [compute_segment(talib, data, job.specs) for _, data in segments]
    names = [column for spec in job.specs for column in spec.columns]
    times = np.concatenate([data[TIME_COLUMN] for _, data in segments]) if segments else np.empty(0, np.int64)
    if len(times) > 1 and not np.all(np.diff(times) > 0):
        raise DataError(f"{job.symbol}: its segments overlap or are not sorted in time; run generate again for it")
    arrays = [pa.array(times, type=pa.int64()).cast(TIMESTAMP)]
    for name in names:
        # TA-Lib's warm-up NaNs are stored as nulls, so SQL and pandas both see them as missing.
        arrays.append(pa.array(np.concatenate([piece[name] for piece in pieces]) if pieces else np.empty(0), from_pandas=True))
    manifest = {"format": MANIFEST_FORMAT, "specs": specs_text, "talib": talib.__version__, "inputs": stats, "digest": digest}
    schema = pa.schema([(TIME_COLUMN, TIMESTAMP)] + [(name, pa.float64()) for name in names],
                       metadata={MANIFEST_KEY: json.dumps(manifest).encode()})
    table = pa.Table.from_arrays(arrays, schema=schema)
    size = storage.write_table_numeric(table, job.output)
    return IndicatorResult(skipped=False, rows=table.num_rows, bytes=size)
