"""`python bench/resample_groups.py [--data DIR] [--legacy DIR]`: how many row groups a resampled file should have.

`resample-type` extends a file by whole row groups (`bhds.generate.resample_extend`), so the file
needs one per period; a resampled file has far fewer rows than a 1m one, and small groups compress
worse. This resamples every 1m results file of `--data` (by default `vs_legacy.py`'s 10 × 365 spot)
at 1h 5m, 4h 15m and 5m 0m, writes each offset with one group, one per month and one per quarter
(the writer settings of bhds), and reports the bytes (and bhds.py's, from `--legacy`) and the time
to read the whole folder back in pyarrow, polars and DuckDB (median of 7). Writes
`bench/results/resample-groups-*.md`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.harness import publish  # noqa: E402

DEFAULT = REPO / "bench" / "data" / "vs-legacy-spot-10x365-2024-07-01"
LAYOUTS = {"one group": 0, "a group per month": 1, "a group per quarter (bhds)": 3}


def _read_times(folder: Path) -> dict[str, float]:
    import duckdb
    import polars as pl
    import pyarrow.parquet as pq

    files = sorted(str(p) for p in folder.rglob("*.pqt"))
    readers = {
        "pyarrow": lambda: [pq.read_table(f) for f in files],
        "polars": lambda: [pl.read_parquet(f) for f in files],
        "DuckDB": lambda: duckdb.sql(f"select * from read_parquet({files!r})").to_arrow_table(),
    }
    out = {}
    for name, read in readers.items():
        runs = []
        for _ in range(7):
            started = time.perf_counter()
            read()
            runs.append(time.perf_counter() - started)
        out[name] = statistics.median(runs)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT / "bhds/crypto_data/binance_data")
    parser.add_argument("--legacy", type=Path, default=DEFAULT / "original/crypto_data/binance_data")
    args = parser.parse_args()

    import pyarrow.parquet as pq

    from bhds.generate import frame
    from bhds.generate.offsets import plan_resample
    from bhds.generate.output import write_months
    from bhds.generate.resample import resample_columns
    from bhds import storage

    sources = sorted((args.data / "results_data/spot/klines/1m").glob("*.pqt"))
    lines = ["# Resampled files: row groups, bytes and read time", "",
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores; {len(sources)} 1m files from {args.data}; "
             "read = the whole folder, median of 7, seconds (a busy machine: compare within a row).", "",
             "| resample | layout | MB | × bhds.py's | pyarrow s | polars s | DuckDB s |", "|---|---|---|---|---|---|---|"]
    for interval, offset in [("1h", "5m"), ("4h", "15m"), ("5m", "0m")]:
        plan = plan_resample(interval, offset)
        legacy_dir = args.legacy / "results_data/spot/resampled_klines" / interval
        legacy = sum(p.stat().st_size for p in legacy_dir.rglob("*.pqt")) if legacy_dir.is_dir() else 0
        with tempfile.TemporaryDirectory(prefix="bhds-groups-") as tmp:
            for source in sources:
                table = pq.read_table(source)
                cols = {n: frame.to_numpy(table.column(n)) for n in table.schema.names}
                vwap = "avg_price_1m" if "avg_price_1m" in cols else None
                for name, bars in resample_columns(lambda n: cols[n], table.schema.names, plan, vwap_name=vwap).items():
                    out = frame.to_table(bars, table.schema)
                    for label, months in LAYOUTS.items():
                        path = Path(tmp) / str(months) / name / source.name
                        path.parent.mkdir(parents=True, exist_ok=True)
                        if months:
                            write_months(out, path, months)
                        else:
                            storage.write_table_numeric(out, path)
            for label, months in LAYOUTS.items():
                folder = Path(tmp) / str(months)
                size = sum(p.stat().st_size for p in folder.rglob("*.pqt"))
                reads = _read_times(folder)
                ratio = f"{size / legacy:.3f}" if legacy else "–"
                lines.append(f"| {interval} {offset} | {label} | {size / 1e6:.1f} | {ratio} | {reads['pyarrow']:.3f} | {reads['polars']:.3f} | {reads['DuckDB']:.3f} |")
    publish("\n".join(lines) + "\n", "resample-groups")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
