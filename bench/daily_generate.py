"""`python bench/daily_generate.py [--data DIR] [--rounds 3] [--copies 1] [--no-resample]`: the daily cron case of
`generate kline-type` and `resample-type` (1h 5m, 5m 0m).

A daily run finds one new day per symbol: parse rewrites each symbol's current month, and
`generate kline-type` extends each latest result file by that month instead of re-encoding its
history. This times it on a copy of parsed spot 1m data (by default the bhds side of
`bench/vs_legacy.py`'s 10 × 365 data set):

1. every symbol's last partition loses its last day ("yesterday"); a cold `generate kline-type`,
   then `resample-type` 1h 5m and 5m 0m;
2. the partitions get their last day back (as parse would rewrite them); `generate kline-type`,
   timed: the daily run (`extended=` symbols); each resample, timed (`extended=` files: their
   earlier quarters kept);
3. `.bhds/` and the results removed; the same commands, timed: the full rebuild of the same
   inputs, whose files must equal the daily run's byte for byte (checked; a mismatch fails the bench).

Prints wall and CPU seconds and the per-symbol cost of both, and writes a Markdown table to
`bench/results/daily-generate-<time>.md`. Speed is reported here, never asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.harness import Measurement, measure, publish  # noqa: E402

PARSED = Path("parsed_data/spot/klines")
RESULTS = Path("results_data/spot/klines/1m")
GENERATE = ["generate", "kline-type", "spot", "1m", "--split-gaps", "--with-vwap", "--no-with-funding-rates"]
RESAMPLES = {"resample-type 1h 5m": ["generate", "resample-type", "spot", "1h", "5m"],
             "resample-type 5m 0m": ["generate", "resample-type", "spot", "5m", "0m"]}
RESAMPLED = Path("results_data/spot/resampled_klines")
DAY_MS = 86_400_000


def _default_data() -> Path:
    found = sorted((REPO / "bench" / "data").glob("vs-legacy-spot-*/bhds/crypto_data/binance_data"))
    if not found:
        raise SystemExit("bench: no data: run `python bench/vs_legacy.py --stage parse` first or give --data")
    return found[-1]


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _copy_inputs(source: Path, work: Path, copies: int = 1) -> list[Path]:
    """Parsed 1m partitions (hard links) and the archive folders that list the symbols; the last partition of each symbol.

    With `copies` > 1 every symbol appears that many times (`X<k><SYMBOL>`), for per-symbol costs.
    """
    for k in range(copies):
        for symbol_dir in sorted((source / PARSED).iterdir()):
            name = symbol_dir.name if k == 0 else f"X{k}{symbol_dir.name}"
            shutil.copytree(symbol_dir, work / PARSED / name, copy_function=_link_or_copy)
            (work / "aws_data/data/spot/daily/klines" / name / "1m").mkdir(parents=True, exist_ok=True)
    return [sorted((d / "1m").glob("*.pqt"))[-1] for d in sorted((work / PARSED).iterdir())]


def _drop_last_day(partition: Path, keep: Path) -> None:
    """Move the partition to `keep` and write it back without its last day (the state before the new day)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bhds.storage import write_table_numeric

    shutil.move(partition, keep)
    table = pq.read_table(keep)
    t = table.column("candle_begin_time").cast(pa.int64()).to_numpy()
    last_day = t[-1] - t[-1] % DAY_MS
    write_table_numeric(table.filter(pa.array(t < last_day)).replace_schema_metadata(table.schema.metadata), partition)


def _run(data_dir: Path, argv: list[str] = GENERATE) -> Measurement:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYPTO_", "BHDS_", "PYTHON"))}
    env.update(CRYPTO_BASE_DIR=str(data_dir.parent), CRYPTO_NJOBS=os.environ.get("CRYPTO_NJOBS", "2"), PYTHONPATH=str(REPO))
    m = measure([sys.executable, str(REPO / "bhds.py"), *argv], env, cwd=REPO)
    if m.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv[:2])} exited {m.returncode}:\n{m.stderr_tail}")
    return m


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.pqt"))}


def _extended(m: Measurement, says: str) -> str:
    """How many the run's log says it extended."""
    logged = [line for line in m.stderr_tail.splitlines() if says in line]
    return logged[-1].split("INFO ")[-1].split()[0] if logged else "0"


def _all(data: Path, resample: bool) -> dict[str, Measurement]:
    runs = {"generate kline-type": _run(data)}
    for label, argv in RESAMPLES.items() if resample else ():
        runs[label] = _run(data, argv)
    return runs


def one_round(source: Path, copies: int, resample: bool = True) -> tuple[dict[str, Measurement], dict[str, Measurement], int, dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="bhds-daily-") as tmp:
        data = Path(tmp) / "crypto_data" / "binance_data"
        lasts = _copy_inputs(source, data, copies)
        kept = Path(tmp) / "new-days"
        kept.mkdir()
        for i, partition in enumerate(lasts):
            _drop_last_day(partition, kept / f"{i}.pqt")
        _all(data, resample)  # yesterday's full build
        for i, partition in enumerate(lasts):
            shutil.move(kept / f"{i}.pqt", partition)  # today's parse: the month with its new day
        daily = _all(data, resample)
        extended = {label: _extended(m, "symbols extended" if label.startswith("generate") else "resampled files extended")
                    for label, m in daily.items()}
        incremental = _files(data / "results_data")
        shutil.rmtree(data / "results_data")
        shutil.rmtree(data / ".bhds")
        full = _all(data, resample)
        if _files(data / "results_data") != incremental:
            raise SystemExit("bench: the daily run's files differ from a full rebuild's")
        return daily, full, len(lasts), extended


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="a binance_data folder with parsed spot 1m klines")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--copies", type=int, default=1, help="each symbol this many times (more symbols, same data)")
    parser.add_argument("--no-resample", action="store_true", help="time generate kline-type only")
    args = parser.parse_args()
    source = args.data or _default_data()
    dailies: list[dict[str, Measurement]] = []
    fulls: list[dict[str, Measurement]] = []
    symbols, extended = 0, {}
    for r in range(args.rounds):
        daily, full, symbols, extended = one_round(source, args.copies, not args.no_resample)
        dailies.append(daily)
        fulls.append(full)
        print(f"round {r + 1}: " + "; ".join(f"{label}: daily cpu {daily[label].cpu:.2f} s, full cpu {full[label].cpu:.2f} s" for label in daily),
              file=sys.stderr)

    def med(runs: list[dict[str, Measurement]], label: str, attr: str) -> float:
        return statistics.median(getattr(m[label], attr) for m in runs)

    lines = [
        "# The daily run (one new day per symbol) against a full rebuild: generate kline-type, resample-type",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores; {symbols} symbols from {source}; "
        f"median of {args.rounds} round(s); CPU = user+sys of the process tree. The daily run's files equal the full rebuild's byte for byte.",
        "",
        "| command | run | wall s | CPU s | CPU ms per symbol |",
        "|---|---|---|---|---|",
    ]
    for label in dailies[0]:
        what = "symbols" if label.startswith("generate") else "files"
        lines += [
            f"| {label} | daily: one new day per symbol (extended={extended[label]} {what}) | {med(dailies, label, 'wall'):.2f} | "
            f"{med(dailies, label, 'cpu'):.2f} | {1000 * med(dailies, label, 'cpu') / symbols:.0f} |",
            f"| {label} | full rebuild of the same inputs | {med(fulls, label, 'wall'):.2f} | {med(fulls, label, 'cpu'):.2f} | "
            f"{1000 * med(fulls, label, 'cpu') / symbols:.0f} |",
        ]
    publish("\n".join(lines) + "\n", "daily-generate")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
