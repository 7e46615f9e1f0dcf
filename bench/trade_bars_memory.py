"""`python bench/trade_bars_memory.py [--rows 20000000] [--interval 1m]`: memory and speed of `generate bars`.

Writes a synthetic UM aggTrades month partition (Parquet, row groups of 200k rows, as
`archive parse` writes them) in a temp dir, then, each in a fresh single-threaded process:
  bare  read every row group of the partition, batches dropped (the floor)
  bars  bhds' build_bars over the same partition
and prints rows/s and peak RSS of each. Timings are never asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
GROUP_ROWS = 200_000


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _write_partition(path: Path, rows: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bhds.parse.trades import schema

    rng = np.random.default_rng(1)
    start_us = 1_733_011_200_000_000  # 2024-12-01
    month_us = 31 * 86_400_000_000
    with pq.ParquetWriter(path, schema("um_futures", "aggTrades"), compression="zstd") as writer:
        for first in range(0, rows, GROUP_ROWS):
            n = min(GROUP_ROWS, rows - first)
            ids = np.arange(first, first + n, dtype=np.int64)
            times = start_us + (ids * (month_us // rows)) // 1000 * 1000
            writer.write_batch(pa.record_batch([
                pa.array(ids), pa.array(90_000 + rng.integers(0, 10_000, n) / 10), pa.array(rng.integers(1, 400, n) / 1000),
                pa.array(ids * 2), pa.array(ids * 2 + 1), pa.array(times).cast(pa.timestamp("us", tz="UTC")),
                pa.array(rng.random(n) < 0.5)], schema=schema("um_futures", "aggTrades")))


def _child(kind: str, partition: str, interval: str, target: str) -> None:
    import pyarrow
    import pyarrow.parquet as pq

    pyarrow.set_cpu_count(1)
    pyarrow.set_io_thread_count(1)
    t0 = time.perf_counter()
    rows = pq.ParquetFile(partition).metadata.num_rows
    if kind == "bare":
        parquet = pq.ParquetFile(partition)
        for group in range(parquet.num_row_groups):
            parquet.read_row_group(group)
        bars = 0
    else:
        from bhds.generate.bars import BarsTask, bar_interval, build_bars

        bars, _ = build_bars(BarsTask("um_futures", "aggTrades", bar_interval(interval).ms, (partition,), target, "{}"))
    seconds = time.perf_counter() - t0
    print(json.dumps({"kind": kind, "rows": rows, "bars": bars, "seconds": round(seconds, 2),
                      "rows_per_s": round(rows / seconds), "peak_rss_mb": round(_peak_rss_mb())}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--interval", default="1m")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        partition = Path(tmp) / "202412.pqt"
        _write_partition(partition, args.rows)
        print(f"partition: {args.rows:,} aggTrades, {partition.stat().st_size / 2**20:.0f} MB", flush=True)
        for kind in ("bare", "bars"):
            out = subprocess.run([sys.executable, __file__, "--child", kind, str(partition), args.interval,
                                  str(Path(tmp) / "BARS.pqt")], check=True, capture_output=True, text=True).stdout
            print(out.strip(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
