"""`python bench/scale.py [--symbols 300 --days 15] [--rounds 3]`: many symbols, few days each.

A daily cron run over the whole archive touches thousands of symbols but only one new day of each:
its cost is per-symbol and per-file overhead, not throughput. This builds a spot 1m archive of many
short symbols (300 × 15 days, 4,500 zips, by default), serves it from the fake Binance on loopback,
and times, `--rounds` times each: cold download (empty mirror, no `.bhds/`), no-op download, cold
verify (markers and `.bhds/` removed), no-op verify, cold parse, no-op parse, cold generate and
no-op generate, cold resample 1h 5m and no-op resample. Prints per-file and per-symbol costs and
writes a Markdown table to `bench/results/scale-<shape>-<time>.md`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.harness import Measurement, measure, publish  # noqa: E402

KLINES = Path("aws_data/data/spot/daily/klines")
STATE = Path(".bhds")


@dataclass(frozen=True)
class Step:
    name: str
    argv: list[str]
    reset: Callable[[Path], None] | None  # given binance_data; None: no-op run after the cold one
    per: str  # what the per-item cost divides by: "file" or "symbol"


def _forget(*folders: Path) -> Callable[[Path], None]:
    def reset(data_dir: Path) -> None:
        for folder in (*folders, STATE):
            shutil.rmtree(data_dir / folder, ignore_errors=True)
    return reset


def _unmark_and_forget(data_dir: Path) -> None:
    for marker in (data_dir / KLINES).glob("*/1m/*.verified"):
        marker.unlink()
    _forget()(data_dir)


GENERATE = ["generate", "kline-type", "spot", "1m", "--split-gaps", "--with-vwap", "--no-with-funding-rates"]
STEPS = [
    Step("download-spot 1m (cold)", ["aws_kline", "download-spot", "1m"], _forget(Path("aws_data")), "file"),
    Step("download-spot 1m (no-op)", ["aws_kline", "download-spot", "1m"], None, "symbol"),
    Step("verify-type-all (cold)", ["aws_kline", "verify-type-all", "spot", "1m"], _unmark_and_forget, "file"),
    Step("verify-type-all (no-op)", ["aws_kline", "verify-type-all", "spot", "1m"], None, "symbol"),
    Step("parse-type-all (cold)", ["aws_kline", "parse-type-all", "spot", "1m"], _forget(Path("parsed_data"), Path("results_data")), "file"),
    Step("parse-type-all (no-op)", ["aws_kline", "parse-type-all", "spot", "1m"], None, "symbol"),
    Step("generate kline-type (cold)", GENERATE, _forget(Path("results_data")), "symbol"),
    Step("generate kline-type (no-op)", GENERATE, None, "symbol"),
    Step("resample-type 1h 5m (cold)", ["generate", "resample-type", "spot", "1h", "5m"], _forget(Path("results_data/spot/resampled_klines")), "symbol"),
    Step("resample-type 1h 5m (no-op)", ["generate", "resample-type", "spot", "1h", "5m"], None, "symbol"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=300)
    parser.add_argument("--days", type=int, default=15)
    parser.add_argument("--start", default="2025-06-01")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "data")
    args = parser.parse_args()

    from tests.fakebinance import archive as fake_archive
    from tests.fakebinance import server as fake_server
    from tests.fakebinance import universe as fake_universe

    shape = f"spot-{args.symbols}x{args.days}-{args.start}"
    work = args.work / f"scale-{shape}"
    archive_root = work / "archive"
    if not (archive_root / "universe.json").exists():
        print(f"building the spot 1m archive {args.symbols} × {args.days} in {archive_root} ...", file=sys.stderr, flush=True)
        uni = fake_universe.bench_universe(n_symbols=args.symbols, n_days=args.days, start=date.fromisoformat(args.start))
        fake_archive.build_archive(uni, archive_root, markets=["spot"], funding=False, liquidation=False, jobs=os.cpu_count() or 1)
    uni = fake_universe.Universe.from_json((archive_root / "universe.json").read_text())
    zips = sum(1 for _ in (archive_root / "data" / "spot" / "daily" / "klines").glob("*/1m/*.zip"))
    symbols = sum(1 for s in uni.symbols if s.market == "spot")
    data_dir = work / "crypto_data" / "binance_data"
    running = fake_server.start_in_thread(archive_root)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYPTO_", "BHDS_", "PYTHON"))}
        env.update(running.env)
        env.update({
            "CRYPTO_BASE_DIR": str(data_dir.parent), "CRYPTO_NJOBS": str(args.jobs), "PYTHONPATH": str(REPO),
            "BHDS_NOW": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(uni.now_ms / 1000)),
        })
        runs: dict[str, list[Measurement]] = {s.name: [] for s in STEPS}
        for r in range(args.rounds):
            for step in STEPS:
                if step.reset is not None:
                    step.reset(data_dir)
                m = measure([sys.executable, str(REPO / "bhds.py"), *step.argv], env)
                runs[step.name].append(m)
                print(f"round {r + 1}: {step.name:<30} {m.wall:7.2f} s  cpu {m.cpu:6.2f} s  {m.peak_rss / 1e6:5.0f} MB  rc {m.returncode}",
                      file=sys.stderr, flush=True)
                if m.returncode != 0:
                    print(m.stderr_tail, file=sys.stderr)
    finally:
        running.stop()

    lines = [
        f"# Scale: spot 1m, {symbols} symbols × {args.days} days ({zips:,} zips), bhds only",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores; `CRYPTO_NJOBS={args.jobs}`; "
        f"downloads from the fake Binance on loopback; median of {args.rounds} round(s) (range).",
        "",
        "| step | wall s | CPU s | peak tree MB | per file ms | per symbol ms |",
        "|---|---|---|---|---|---|",
    ]
    for step in STEPS:
        walls = [m.wall for m in runs[step.name]]
        wall = statistics.median(walls)
        codes = sorted({m.returncode for m in runs[step.name]} - {0})
        lines.append(
            f"| {step.name}{f' **exit {codes}**' if codes else ''} | {wall:.2f} ({min(walls):.2f}–{max(walls):.2f}) "
            f"| {statistics.median(m.cpu for m in runs[step.name]):.2f} | {max(m.peak_rss for m in runs[step.name]) / 1e6:.0f} "
            f"| {wall / zips * 1e3:.2f} | {wall / symbols * 1e3:.1f} |")
    text = "\n".join(lines) + "\n"
    publish(text, f"scale-{shape}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
