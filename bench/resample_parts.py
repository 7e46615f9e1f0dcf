"""`python bench/resample_parts.py DATA_DIR [--interval 1h --offset 5m] [--repeat 5]`: where `resample-type`'s CPU goes.

Measures, on the 1m results files bhds wrote under DATA_DIR (`results_data/spot/klines/1m`), the
parts of one `generate resample-type` run separately, each the least CPU seconds (user+sys) of
`--repeat` tries on one thread:
- start-up: a bare interpreter, the parent (`import bhds.cli`), and a pool worker's imports
  (`import bhds.generate.tasks`: numpy, pyarrow), each in a fresh process;
- Parquet read of every column the resample needs (decode into numpy);
- compute (`resample_columns` on the columns in memory);
- Parquet write of the outputs (`storage.write_table_numeric`, into a scratch folder).
The pool, the staging tree and the build record come on top (compare with `bench/vs_legacy.py`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = _cpu()
        fn()
        best = min(best, _cpu() - start)
    return best


def _startup(code: str, repeat: int) -> float:
    """Least CPU seconds of a fresh `python -c code` (children's user+sys)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run() -> None:
        subprocess.run([sys.executable, "-c", code], check=True, env=env)

    best = float("inf")
    for _ in range(repeat):
        before = os.times()
        run()
        after = os.times()
        best = min(best, after.children_user - before.children_user + after.children_system - before.children_system)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path, help="a binance_data folder with results_data/spot/klines/1m")
    parser.add_argument("--interval", default="1h")
    parser.add_argument("--offset", default="5m")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import pyarrow as pa

    from bhds import storage
    from bhds.generate import frame
    from bhds.generate.offsets import plan_resample
    from bhds.generate.resample import resample_columns
    from bhds.paths import resampled_file_in
    from bhds.schema import vwap_column

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    pa.set_memory_pool(pa.system_memory_pool())  # as the workers do
    files = sorted((args.data_dir / "results_data" / "spot" / "klines" / "1m").glob("*.pqt"))
    if not files:
        raise SystemExit(f"no 1m results files under {args.data_dir}: run generate kline-type spot 1m first")
    plan = plan_resample(args.interval, args.offset)
    vwap = vwap_column("1m")

    def read_all() -> list[tuple[pa.Schema, dict]]:
        out = []
        for path in files:
            with storage.ParquetColumns(path) as source:
                schema = frame.input_schema([n for n in source.names if n in (vwap, frame.FUNDING)])
                out.append((schema, {n: frame.to_numpy(source.column(n, schema.field(n).type)) for n in schema.names}))
        return out

    columns = read_all()

    def compute() -> list[dict]:
        return [resample_columns(cols.__getitem__, schema.names, plan, vwap_name=vwap if vwap in cols else None) for schema, cols in columns]

    frames = compute()
    scratch = Path(tempfile.mkdtemp(dir=REPO / "bench" / "data" if (REPO / "bench" / "data").is_dir() else None))

    def write() -> None:
        for path, (schema, _), by_offset in zip(files, columns, frames):
            for offset, out in by_offset.items():
                storage.write_table_numeric(frame.to_table(out, schema), resampled_file_in(scratch, offset, path.stem))

    try:
        parts = {
            "interpreter start-up (`python -c pass`)": _startup("pass", args.repeat),
            "parent start-up (`import bhds.cli`)": _startup("import bhds.cli", args.repeat),
            "worker start-up (`import bhds.generate.tasks`)": _startup("import bhds.generate.tasks", args.repeat),
            "Parquet read (decode every needed column)": _best(read_all, args.repeat),
            "compute (`resample_columns`)": _best(compute, args.repeat),
            "Parquet write (every offset's file)": _best(write, args.repeat),
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rows = sum(len(cols[frame.TIME]) for _, cols in columns)
    print(f"resample-type spot {args.interval} {args.offset}: {len(files)} files, {rows:,} rows, "
          f"{len(plan.offsets)} offsets; least CPU s of {args.repeat}\n")
    print("| part | CPU s |\n|---|---|")
    for name, seconds in parts.items():
        print(f"| {name} | {seconds:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
