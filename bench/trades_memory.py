"""`python bench/trades_memory.py [--mb 2048] [--block-mb 16]`: memory and speed of `archive parse` on one big trades month.

Generates a USDⓈ-M trades zip of about `--mb` MB of CSV (tests.fakebinance.bigtrades, in a temp
dir), then, each in a fresh process limited to one pyarrow thread (one worker's share):
  bare   pyarrow's streaming CSV reader over the same zip member, batches dropped (the floor)
  parse  bhds' parse_month: the same read, converted and written as Parquet row groups
and prints rows/s, CPU seconds and peak RSS of each (JSON under bench/results/); `--repeat N` runs
the pair N times, alternating, and keeps each one's fastest run. Timings are never asserted.

Both use more than one core at times: pyarrow's reader reads ahead on an I/O thread, bhds'
parse inflates, parses and writes on three pipelined threads.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _peak_rss_mb() -> float:
    """This process's own high-water RSS (VmHWM; ru_maxrss would include the parent's from before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(kind: str, zip_path: str, block: int) -> None:
    import pyarrow

    pyarrow.set_cpu_count(1)
    pyarrow.set_io_thread_count(1)
    t0, cpu0 = time.perf_counter(), time.process_time()
    if kind == "bare":
        import zipfile

        import pyarrow.csv as pacsv

        rows = 0
        with zipfile.ZipFile(zip_path) as zf, zf.open(zf.namelist()[0]) as stream:
            for batch in pacsv.open_csv(stream, read_options=pacsv.ReadOptions(block_size=block)):
                rows += batch.num_rows
    else:
        from bhds.parse.trades import MonthTask, parse_month, signature

        out = Path(zip_path).with_suffix(".pqt")
        rows, _ = parse_month(MonthTask("um_futures", "trades", (zip_path,), str(out), signature([Path(zip_path)]), block))
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
    peak_mb = _peak_rss_mb()
    print(json.dumps({"kind": kind, "rows": rows, "seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mb": peak_mb}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=2048, help="CSV size of the month, MB")
    parser.add_argument("--block-mb", type=int, default=16, help="CSV block per row group, MB")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each, fastest kept")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    block = args.block_mb << 20
    if args.child:
        _child(args.child[0], args.child[1], block)
        return 0
    from tests.fakebinance.bigtrades import write_trades_zip

    with tempfile.TemporaryDirectory() as tmp:
        zip_path = Path(tmp) / "BTCUSDT-trades-2024-12.zip"
        t0 = time.perf_counter()
        rows, csv_bytes = write_trades_zip(zip_path, args.mb << 20)
        print(f"generated {rows:,} rows, {csv_bytes / 2**20:.0f} MB CSV, {zip_path.stat().st_size / 2**20:.0f} MB zip "
              f"in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        results = {"csv_mb": csv_bytes / 2**20, "rows": rows, "block_mb": args.block_mb}
        for _ in range(args.repeat):
            for kind in ("bare", "parse"):
                proc = subprocess.run([sys.executable, __file__, "--block-mb", str(args.block_mb), "--child", kind,
                                       str(zip_path)], capture_output=True, text=True, check=True)
                run = json.loads(proc.stdout)
                if kind not in results or run["seconds"] < results[kind]["seconds"]:
                    results[kind] = run
        bare, parse = results["bare"], results["parse"]
        results["ratio_parse_to_bare_time"] = parse["seconds"] / bare["seconds"]
        results["ratio_parse_to_bare_cpu"] = parse["cpu_seconds"] / bare["cpu_seconds"]
    for kind in ("bare", "parse"):
        r = results[kind]
        print(f"{kind:<6} {r['rows'] / r['seconds']:>12,.0f} rows/s  {r['seconds']:7.1f} s wall  {r['cpu_seconds']:7.1f} s CPU"
              f"  peak RSS {r['peak_rss_mb']:7.0f} MB")
    print(f"parse / bare time: {results['ratio_parse_to_bare_time']:.2f} wall (target <= 1.5), "
          f"{results['ratio_parse_to_bare_cpu']:.2f} CPU; CSV {results['csv_mb']:.0f} MB")
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"trades_memory-{int(time.time())}.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
