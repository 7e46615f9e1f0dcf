"""`python bench/dask_download.py [--rounds N] [--latency S] [--before TREE]`: archive downloads, the pool vs Dask.

The default fake archive (the tests' universe: 426 zips, ~20 MB) served by the fake Binance on
loopback, downloaded cold (the mirror and `.bhds/` removed first) three ways, as
`bench/dask_overhead.py` does for parse and generate:
- `pool`: bhds as it runs by default (listing and downloading overlap on one HTTP session);
- `local:2`: `--scheduler local:2`, the command starting and closing its own LocalCluster of two
  one-thread workers (start-up included), each batch of files one task with its own session;
- `running cluster`: `DASK_SCHEDULER_ADDRESS` at a scheduler and two workers started beforehand with
  README's worker config; their CPU (read from /proc) is added to the command's.
Then a no-op re-run of the same command (everything known: listing only, no task). `--before TREE`
adds the pool of another bhds tree (e.g. `git archive` of the commit before Dask downloads): the local
pool's cost before and after, on the same bytes.

The fake runs in this process, so its CPU is not counted: the figures are the client's (and
workers'). On loopback a download costs CPU, not waiting; `--latency` adds seconds to every request,
closer to a real bucket, where the extra workers' connections are what Dask brings. Wall: median of
the rounds (range), the ways alternating first place; CPU: user+sys. Speed is reported, never asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.dask_overhead import WORKER_CONFIG, Way, start_cluster, timed  # noqa: E402
from bench.harness import Measurement, head_commit, publish  # noqa: E402
from bench.vs_legacy import _clean_env, _median, _wall  # noqa: E402

# In this order: a cold run empties the whole mirror, and the no-op re-runs the cold run before it.
CASES = [
    ("download-um-futures 1m 1h, cold", ["aws_kline", "download-um-futures", "1m", "1h"], True),
    ("download-spot 1m 1h, cold", ["aws_kline", "download-spot", "1m", "1h"], True),
    ("download-spot 1m 1h, no-op", ["aws_kline", "download-spot", "1m", "1h"], False),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds the fake adds to every request")
    parser.add_argument("--before", type=Path, default=None, help="another bhds tree whose pool runs too")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "data" / "dask-download")
    args = parser.parse_args()

    from tests.conftest import DEFAULT_ARCHIVE_INTERVALS
    from tests.fakebinance import build_archive, default_universe, start_in_thread

    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    archive = work / "archive"
    summary = build_archive(default_universe(), archive, intervals=DEFAULT_ARCHIVE_INTERVALS, compress_level=1)
    fake = start_in_thread(archive, latency=args.latency)
    ways: list[Way] = []
    procs: list[subprocess.Popen] = []
    runs: dict[str, dict[str, list[Measurement]]] = {name: {} for name, _, _ in CASES}
    try:
        chosen = [("pool", [], REPO)] + ([("pool, before", [], args.before.resolve())] if args.before else [])
        chosen += [("local:2", ["--scheduler", "local:2"], REPO), ("running cluster", [], REPO)]
        for name, extra, repo in chosen:
            base = work / name.replace(":", "").replace(",", "").replace(" ", "-") / "crypto_data"
            base.mkdir(parents=True)
            env = dict(_clean_env(base, 2), PYTHONPATH=str(repo), **fake.env, BHDS_NOW=fake.universe.now_iso)
            env.pop("DASK_SCHEDULER_ADDRESS", None)
            ways.append(Way(name, base / "binance_data", env, extra, repo=repo))
        (work / "dask-config").mkdir()
        (work / "dask-config" / "bhds.yaml").write_text(WORKER_CONFIG)
        address, procs = start_cluster(work / "cluster", dict(_clean_env(work, 2), PYTHONPATH=str(REPO),
                                                              DASK_CONFIG=str(work / "dask-config")))
        ways[-1].env["DASK_SCHEDULER_ADDRESS"] = address
        ways[-1].cluster_pids = [p.pid for p in procs]
        for r in range(args.rounds):
            order = ways[r % len(ways):] + ways[:r % len(ways)]
            print(f"round {r + 1}/{args.rounds}: {order[0].name} first", file=sys.stderr, flush=True)
            for way in order:
                for name, argv, cold in CASES:
                    m = timed(way, argv, ("aws_data",) if cold else (), keep_state=not cold)
                    runs[name].setdefault(way.name, []).append(m)
                    print(f"  {name:<34} {way.name:<16} {m.wall:7.2f} s  cpu {m.cpu:7.2f} s  rc {m.returncode}",
                          file=sys.stderr, flush=True)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=30)
        fake.stop()

    lines = [
        f"# bhds ({head_commit()}): archive downloads, the local pool vs Dask on the same machine",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores; the default fake archive "
        f"({summary.zips} zips, {summary.zip_bytes / 1e6:.1f} MB) on loopback, {args.latency:g} s added per request; "
        f"CRYPTO_NJOBS=2, BHDS_CONCURRENCY default. Cold: the mirror and `.bhds/` removed first. Wall: median of "
        f"{args.rounds} round(s) (range); CPU: user+sys of the command's process tree, plus the running cluster's "
        "scheduler and workers (the fake's is not counted). `local:2` includes starting and closing its LocalCluster.",
        "",
        "| case | " + " | ".join(f"{w.name} wall s" for w in ways) + " | CPU s " + " / ".join(w.name for w in ways) + " |",
        "|---|" + "---|" * (len(ways) + 1),
    ]
    for name, _, _ in CASES:
        by = runs[name]
        fails = {w: sorted({m.returncode for m in ms} - {0}) for w, ms in by.items()}
        note = "".join(f" **{w} exit {c}**" for w, c in fails.items() if c)
        lines.append(f"| {name}{note} | " + " | ".join(_wall(by[w.name]) for w in ways)
                     + " | " + " / ".join(f"{_median(by[w.name], 'cpu'):.2f}" for w in ways) + " |")
    publish("\n".join(lines) + "\n", f"dask-download-latency{args.latency:g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
