"""Load stage: `bhds.load` of one symbol from a 10 symbols × 365 days 1m store reads only that symbol's files.

The store is written here, once, under `<work>/load-store`: per symbol a year of 1m results
(`results_data/um_futures/klines/1m/<SYM>.pqt`, written as generate writes them, with VWAP and
funding) and its 12 monthly parsed partitions. Each case times a fresh `python -c` (interpreter
and imports included); its probe runs the same call in a process whose imports are already
warm and reports the call's own seconds and the bytes it read (`rchar` of /proc/self/io: every
byte the process read, page cache or not) beside the sizes of that symbol's files and of the store.

Run alone (no fake archive needed): `python -m bench.stages.load`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

from bench.harness import REPO, BenchContext, Case

N_SYMBOLS, N_DAYS, START = 10, 365, date(2024, 1, 1)
MIN_MS, DAY_MS = 60_000, 86_400_000
SYMBOL = "S003USDT"

YEAR_ROWS, MARCH_ROWS = N_DAYS * 1440, 31 * 1440
# (case name, the bhds call, which of the symbol's files it needs, throughput units)
CALLS = [
    ("load 1 symbol-year 1m (results)", f"bhds.load('um_futures', '{SYMBOL}', data_dir=D)", "results", {"rows": YEAR_ROWS}),
    ("load 1 symbol, 1 month (results)", f"bhds.load('um_futures', '{SYMBOL}', start='2024-03-01', end='2024-04-01', data_dir=D)",
     "results", {"rows": MARCH_ROWS}),
    ("load 1 symbol, 1 month (parsed)",
     f"bhds.load('um_futures', '{SYMBOL}', start='2024-03-01', end='2024-04-01', source='parsed', data_dir=D)", "march", {"rows": MARCH_ROWS}),
    ("load 1 symbol-year, 2 columns", f"bhds.load('um_futures', '{SYMBOL}', columns=['close', 'volume'], data_dir=D)", "results",
     {"rows": YEAR_ROWS}),
    ("coverage of the store (footers)", "bhds.coverage('um_futures', data_dir=D)", "none", {"files": N_SYMBOLS}),
]


def build_store(root: Path) -> Path:
    """Write the store (reused when complete); return its `binance_data` folder."""
    data_dir = root / "binance_data"
    done = root / "complete"
    if done.exists():
        return data_dir
    sys.path.insert(0, str(REPO))
    import numpy as np
    import pyarrow as pa

    from bhds.paths import Layout
    from bhds.schema import KLINE_SCHEMA
    from bhds.storage import write_table_numeric

    layout = Layout(data_dir)
    start = np.datetime64(START, "ms").astype(np.int64)
    ts = np.arange(start, start + N_DAYS * DAY_MS, MIN_MS, dtype=np.int64)
    months = ts.astype("datetime64[ms]").astype("datetime64[M]")
    for k in range(N_SYMBOLS):
        rng = np.random.default_rng(k)
        n = len(ts)
        close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
        open_ = np.concatenate(([close[0]], close[:-1]))
        high, low = np.maximum(open_, close) * 1.0005, np.minimum(open_, close) * 0.9995
        volume = rng.exponential(5.0, n)
        columns = [pa.array(ts).cast(pa.timestamp("ms", tz="UTC")), open_, high, low, close, volume, volume * close,
                   rng.integers(1, 500, n), volume / 2, volume * close / 2]
        klines = pa.Table.from_arrays([c if isinstance(c, pa.Array) else pa.array(c) for c in columns], schema=KLINE_SCHEMA)
        funding = np.where(ts % (8 * 3_600_000) == 0, 1e-4, 0.0)
        results = klines.append_column("avg_price_1m", pa.array(close)).append_column("funding_rate", pa.array(funding))
        symbol = f"S{k:03d}USDT"
        write_table_numeric(results, layout.results_kline_file("um_futures", "1m", symbol))
        for month in np.unique(months):
            rows = np.flatnonzero(months == month)
            year, mon = int(str(month)[:4]), int(str(month)[5:7])
            write_table_numeric(klines.slice(int(rows[0]), len(rows)), layout.parsed_kline_partition("um_futures", symbol, "1m", year, mon))
    done.touch()
    return data_dir


def _sizes(data_dir: Path, needs: str) -> dict:
    from bhds.paths import Layout

    layout = Layout(data_dir)
    store = sum(p.stat().st_size for p in data_dir.rglob("*.pqt"))
    if needs == "results":
        own = layout.results_kline_file("um_futures", "1m", SYMBOL).stat().st_size
    elif needs == "march":
        own = layout.parsed_kline_partition("um_futures", SYMBOL, "1m", 2024, 3).stat().st_size
    else:
        own = 0
    return {"store_bytes": store, "needed_file_bytes": own}


_PROBE = """
import json, time, sys
import numpy, pandas, pyarrow, pyarrow.dataset, pyarrow.parquet, bhds, bhds.research.load, bhds.generate.merge
D = sys.argv[1]
def rchar():
    return int(next(l for l in open('/proc/self/io') if l.startswith('rchar')).split()[1])
before, t0 = rchar(), time.perf_counter()
out = {call}
seconds, read = time.perf_counter() - t0, rchar() - before
print(json.dumps({{"call_s": round(seconds, 4), "bytes_read": read, "rows": len(out)}}))
"""


def probe(data_dir: Path, call: str, needs: str) -> dict:
    """The call's own time and bytes read, in a process with warm imports (median of 3)."""
    runs = []
    for _ in range(3):
        proc = subprocess.run([sys.executable, "-c", _PROBE.format(call=call), str(data_dir)], capture_output=True, text=True,
                              cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, check=True)
        runs.append(json.loads(proc.stdout))
    runs.sort(key=lambda r: r["call_s"])
    figures = dict(runs[1], **_sizes(data_dir, needs))
    figures["read_vs_store"] = round(figures["bytes_read"] / figures["store_bytes"], 4)
    return figures


def cases(ctx: BenchContext) -> list[Case]:
    data_dir = build_store(ctx.work.parent / "load-store")
    out = []
    for name, call, needs, units in CALLS:
        command = [sys.executable, "-c", f"import bhds; D = {str(data_dir)!r}; {call}"]
        out.append(Case(name, command[1:], command=command, units=units,
                        probe=lambda _ctx, call=call, needs=needs: probe(data_dir, call, needs)))
    return out


if __name__ == "__main__":
    store = build_store(REPO / "bench" / "data" / "load-store")
    for name, call, needs, _units in CALLS:
        print(f"{name:<36} {json.dumps(probe(store, call, needs))}", flush=True)
