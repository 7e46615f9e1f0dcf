"""`python bench/parquet_formats.py DATA_DIR [--trade-type spot] [--repeat 3]`: which Parquet settings to write with.

Reads the Parquet files bhds wrote under DATA_DIR (`parsed_data/<tt>/klines`, `results_data/<tt>/klines`,
`results_data/<tt>/resampled_klines`), rewrites each set in memory-to-disk with every candidate setting
(encodings, codec and level, dictionary pages, row-group size, not-null columns), and measures, per set:
bytes on disk, pyarrow write seconds, and read seconds in pyarrow (`ParquetFile.read`, what bhds' own
stages use), pandas (`read_parquet`), polars (`read_parquet`) and DuckDB (a scan that decodes every
column). Everything runs on one thread, best of `--repeat`, so the figures are per-core CPU seconds,
which neighbours on a shared machine disturb least. `--legacy DATA_DIR` adds the bytes and read times
of the same folders as bhds.py wrote them. `--per-column` instead measures each column alone in each
encoding that suits it (which columns gain from delta or byte-stream-split). Prints a Markdown table
and writes it to `bench/results/parquet-formats-<time>.md`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # before polars is imported

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# name -> pyarrow.parquet.write_table keyword arguments (column_encoding filled per schema).
CANDIDATES: dict[str, dict] = {
    "BSS floats + delta ints, zstd 1 (bhds before)": {"compression": "zstd", "use_dictionary": False, "encoding": "split"},
    "BSS floats + delta ints, zstd 3": {"compression": "zstd", "compression_level": 3, "use_dictionary": False, "encoding": "split"},
    "dict, zstd 1 (pyarrow's default)": {"compression": "zstd"},
    "plain, zstd 1": {"compression": "zstd", "use_dictionary": False},
    "plain, zstd 3": {"compression": "zstd", "compression_level": 3, "use_dictionary": False},
    "plain, zstd 6": {"compression": "zstd", "compression_level": 6, "use_dictionary": False},
    "plain floats + delta ints, zstd 1": {"compression": "zstd", "use_dictionary": False, "encoding": "delta"},
    "plain floats + delta ints, zstd 2": {"compression": "zstd", "compression_level": 2, "use_dictionary": False, "encoding": "delta"},
    "plain floats + delta ints, zstd 3": {"compression": "zstd", "compression_level": 3, "use_dictionary": False, "encoding": "delta"},
    "plain floats + delta ints, zstd 6": {"compression": "zstd", "compression_level": 6, "use_dictionary": False, "encoding": "delta"},
    "per column (bhds now), zstd 1": {"compression": "zstd", "use_dictionary": False, "encoding": "bhds"},
    "per column (bhds now), zstd 2": {"compression": "zstd", "compression_level": 2, "use_dictionary": False, "encoding": "bhds"},
    "per column (bhds now), zstd 3": {"compression": "zstd", "compression_level": 3, "use_dictionary": False, "encoding": "bhds"},
    "plain floats + delta ints, zstd 3, 256k-row groups": {"compression": "zstd", "compression_level": 3, "use_dictionary": False,
                                                           "encoding": "delta", "row_group_size": 1 << 18},
    "per column, zstd 2, 64k-row groups": {"compression": "zstd", "compression_level": 2, "use_dictionary": False, "encoding": "bhds",
                                           "row_group_size": 1 << 16},
    "per column, zstd 2, columns marked not null": {"compression": "zstd", "compression_level": 2, "use_dictionary": False,
                                                    "encoding": "bhds", "required": True},
}


def _encodings(schema, mode: str | None) -> dict[str, str] | None:
    import pyarrow as pa

    if mode is None:
        return None
    if mode == "bhds":
        from bhds.storage import numeric_encodings

        return numeric_encodings(schema)
    out = {}
    for f in schema:
        is_int = pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type)
        if mode == "split" and pa.types.is_floating(f.type):
            out[f.name] = "BYTE_STREAM_SPLIT"
        elif is_int:
            out[f.name] = "DELTA_BINARY_PACKED"
    return out


def _best(fn: Callable[[], object], repeat: int) -> float:
    """Least CPU seconds of this process over `repeat` calls (every library runs on one thread, the
    files are in the page cache: CPU time is the cost, and neighbours disturb it far less than wall)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def _read_times(files: list[Path], repeat: int) -> tuple[float, float, float, float]:
    import duckdb
    import pandas as pd
    import polars as pl
    import pyarrow.parquet as pq

    names = [str(p) for p in files]
    con = duckdb.connect()
    con.execute("SET threads = 1")
    columns = [c for c in pl.read_parquet_schema(names[0])]
    scan = ", ".join(f"max({c!s})" if "time" in c else f"sum({c!s})" for c in columns if not c.startswith("symbol"))
    return (
        _best(lambda: [pq.ParquetFile(n).read(use_threads=False) for n in names], repeat),  # what bhds' own stages read with
        _best(lambda: [pd.read_parquet(n) for n in names], repeat),
        _best(lambda: [pl.read_parquet(n) for n in names], repeat),
        _best(lambda: con.execute(f"SELECT {scan} FROM read_parquet({names!r})").fetchall(), repeat),
    )


def measure_set(label: str, files: list[Path], repeat: int, scratch: Path, rows: list[str], wanted: list[str] | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    tables = [pq.read_table(p) for p in files]
    for name, options in CANDIDATES.items():
        if wanted and not any(text in name for text in wanted):
            continue
        options = dict(options)
        mode = options.pop("encoding", None)
        required = options.pop("required", False)
        folder = scratch / "out"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        outs = [folder / f"{i}.pqt" for i in range(len(tables))]

        def write() -> None:
            for table, out in zip(tables, outs):
                if required:
                    table = table.cast(pa.schema([f.with_nullable(False) for f in table.schema]))
                pq.write_table(table, out, column_encoding=_encodings(table.schema, mode), **options)

        seconds = _best(write, repeat)
        size = sum(p.stat().st_size for p in outs)
        arrow_s, pandas_s, polars_s, duck_s = _read_times(outs, repeat)
        rows.append(f"| {label} | {name} | {size / 1e6:.1f} | {seconds:.2f} | {arrow_s:.2f} | {pandas_s:.2f} | {polars_s:.2f} | {duck_s:.2f} |")
        print(rows[-1], flush=True)


def measure_columns(label: str, files: list[Path], repeat: int, scratch: Path, rows: list[str]) -> None:
    """Each column alone in every encoding that suits its type (zstd 2, no dictionary): its bytes and
    read cost, so the per-column choice (`bhds.storage.numeric_encodings`) can be read off."""
    import duckdb
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    tables = [pq.read_table(p) for p in files]
    con = duckdb.connect()
    con.execute("SET threads = 1")
    folder = scratch / "columns"
    for field in tables[0].schema:
        if pa.types.is_floating(field.type):
            encodings = ["PLAIN", "BYTE_STREAM_SPLIT"]
        elif pa.types.is_integer(field.type) or pa.types.is_timestamp(field.type):
            encodings = ["PLAIN", "DELTA_BINARY_PACKED"]
        else:
            continue
        for encoding in encodings:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            outs = [folder / f"{i}.pqt" for i in range(len(tables))]
            for table, out in zip(tables, outs):
                pq.write_table(table.select([field.name]), out, compression="zstd", compression_level=2, use_dictionary=False,
                               column_encoding={field.name: encoding})
            names = [str(o) for o in outs]
            scan = f"max({field.name})" if "time" in field.name else f"sum({field.name})"
            size = sum(o.stat().st_size for o in outs)
            arrow_s = _best(lambda: [pq.ParquetFile(n).read(use_threads=False) for n in names], repeat)
            polars_s = _best(lambda: [pl.read_parquet(n) for n in names], repeat)
            duck_s = _best(lambda: con.execute(f"SELECT {scan} FROM read_parquet({names!r})").fetchall(), repeat)
            rows.append(f"| {label} | `{field.name}` | {encoding} | {size / 1e6:.1f} | {arrow_s:.3f} | {polars_s:.3f} | {duck_s:.3f} |")
            print(rows[-1], flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path, help="a binance_data folder bhds wrote")
    parser.add_argument("--legacy", type=Path, help="the binance_data folder bhds.py wrote from the same zips")
    parser.add_argument("--trade-type", default="spot")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", help="only the sets whose name contains this text")
    parser.add_argument("--candidates", action="append", help="only the settings whose name contains this text (repeatable)")
    parser.add_argument("--per-column", action="store_true", help="instead: each column alone in each encoding (bytes, read cost)")
    args = parser.parse_args()
    tt = args.trade_type
    sets = {
        "parsed_data": lambda root: sorted((root / "parsed_data" / tt / "klines").glob("*/*/*.pqt")),
        "results klines": lambda root: sorted((root / "results_data" / tt / "klines").glob("*/*.pqt")),
        "resampled 1h": lambda root: sorted((root / "results_data" / tt / "resampled_klines" / "1h").glob("*/*.pqt")),
    }
    rows = ["| set | settings | MB | write CPU s | pyarrow read CPU s | pandas read CPU s | polars read CPU s | DuckDB scan CPU s |",
            "|---|---|---|---|---|---|---|---|"]
    if args.per_column:
        rows = ["| set | column | encoding (zstd 2) | MB | pyarrow read CPU s | polars read CPU s | DuckDB scan CPU s |",
                "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(dir=REPO / "bench" / "data") as scratch:
        for label, find in sets.items():
            if args.only and args.only not in label:
                continue
            files = find(args.data_dir)
            if not files:
                print(f"no files for {label} under {args.data_dir}", file=sys.stderr)
                continue
            if args.per_column:
                measure_columns(label, files, args.repeat, Path(scratch), rows)
                continue
            if args.legacy:
                old = find(args.legacy)
                size = sum(p.stat().st_size for p in old)
                arrow_s, pandas_s, polars_s, duck_s = _read_times(old, args.repeat)
                rows.append(f"| {label} | bhds.py's files (polars writer) | {size / 1e6:.1f} | | {arrow_s:.2f} | {pandas_s:.2f} | {polars_s:.2f} | {duck_s:.2f} |")
                print(rows[-1], flush=True)
            measure_set(label, files, args.repeat, Path(scratch), rows, args.candidates)
    text = "# Parquet settings measured on the same tables\n\n" + "\n".join(rows) + "\n"
    from bench.harness import publish

    publish(text, "parquet-formats")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
