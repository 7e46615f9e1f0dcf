"""`python bench/run.py [--stage NAME] [--case TEXT] [--symbols N --days M] [--repeat K]`

Builds a synthetic Binance archive of the chosen size with the same generator the tests use
(`tests.fakebinance`), serves it from the fake Binance on 127.0.0.1, and times each stage found
in `bench/stages/<name>.py` (each defines `cases(ctx) -> list[Case]`). Prints a table and writes
JSON under `bench/results/`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.harness import BenchContext, run_case  # noqa: E402


def _stage_names() -> list[str]:
    import bench.stages

    return sorted(m.name for m in pkgutil.iter_modules(bench.stages.__path__))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", action="append", help="stage module(s) under bench/stages (default: all)")
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--start", default="2024-07-01")
    parser.add_argument("--case", help="only the cases whose name contains this text")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "data", help="where archives and data dirs are built (reused)")
    args = parser.parse_args()

    from tests.fakebinance import archive as fake_archive
    from tests.fakebinance import server as fake_server
    from tests.fakebinance import universe as fake_universe

    shape = f"{args.symbols}x{args.days}-{args.start}"
    work = args.work / shape
    archive_root = work / "archive"
    if not (archive_root / "universe.json").exists():
        print(f"building synthetic archive {shape} in {archive_root} ...", file=sys.stderr)
        uni = fake_universe.bench_universe(n_symbols=args.symbols, n_days=args.days, start=date.fromisoformat(args.start))
        fake_archive.build_archive(uni, archive_root, jobs=os.cpu_count() or 1)
    running = fake_server.start_in_thread(archive_root)
    try:
        uni = fake_universe.Universe.from_json((archive_root / "universe.json").read_text())
        env = dict(os.environ)
        env.update(running.env)
        data_root = work / "crypto_data"
        env.update({
            "CRYPTO_BASE_DIR": str(data_root),
            "CRYPTO_NJOBS": env.get("CRYPTO_NJOBS", str(os.cpu_count() or 1)),
            "BHDS_NOW": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(uni.now_ms / 1000)),
            "PYTHONPATH": str(REPO),
        })
        ctx = BenchContext(work=work, data_root=data_root, archive_root=archive_root, env=env, n_symbols=args.symbols, n_days=args.days)
        results = []
        for name in args.stage or _stage_names():
            module = importlib.import_module(f"bench.stages.{name}")
            for case in module.cases(ctx):
                if args.case and args.case not in case.name:
                    continue
                print(f"[{name}] {case.name} ...", file=sys.stderr, flush=True)
                result = run_case(ctx, case, args.repeat)
                result["stage"] = name
                results.append(result)
                _print_row(result)
    finally:
        running.stop()
    out = REPO / "bench" / "results" / f"{time.strftime('%Y%m%d-%H%M%S')}-{shape}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"shape": shape, "cpus": os.cpu_count(), "results": results}, indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _print_row(r: dict) -> None:
    base = r.get("baseline", {})
    legacy = f"legacy {base['wall_s']}s" if base.get("wall_s") else ""
    speed = f"x{r['speedup_vs_legacy']}" if r.get("speedup_vs_legacy") else ""
    thr = ", ".join(f"{v:,.0f} {k}" for k, v in r["throughput"].items())
    print(
        f"{r['stage']:>9} | {r['case']:<42} | {r['wall_s']:>7.2f}s ({r['wall_min_s']:.2f}-{r['wall_max_s']:.2f}) "
        f"| cpu {r['cpu_s']:>6.2f}s | {r['peak_rss_mb']:>6.0f} MB | {thr} | {legacy} {speed} | rc {r['exit_codes']}",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
