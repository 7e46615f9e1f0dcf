"""`python bench/dask_overhead.py [--quick] [--rounds N] [--archive DIR]`: the engine's overhead, Dask vs the pool.

The same bytes, the same machine, three ways of running parse, generate and resample cold:
- `pool`: bhds as it runs by default (`CRYPTO_NJOBS=2`, the local process pool);
- `local:2`: `--scheduler local:2`, the command starting and closing its own LocalCluster of two
  one-thread worker processes (start-up included);
- `running cluster`: `DASK_SCHEDULER_ADDRESS` at a scheduler and two one-thread workers the bench
  started beforehand (`dask scheduler`, `dask worker`) with the worker config README recommends:
  the per-task cost without the start-up. The workers are not the command's children, so their CPU
  is read from /proc before and after each run and added to the command's;
- `running cluster, Dask defaults`: the same with Dask's default worker config (its nanny sets
  MALLOC_TRIM_THRESHOLD_ in the workers, and each worker runs its statistical profiler).

`--before DIR` adds the pool of another bhds tree (e.g. `git archive` of the commit before the Dask
executor): the local pool's speed before and after, on the same bytes (`--pool-only`: just those two).

Wall: median of the rounds (range), the three alternating first place; CPU: user+sys of the
process tree (plus the running cluster's processes). The data set is vs_legacy's (10 symbols × 365
days of spot 1m zips by default); the table goes to `bench/results/dask-overhead-*.md`.
Speed is reported here, never asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.harness import Measurement, head_commit, measure, publish  # noqa: E402
from bench.vs_legacy import PARSED, RESAMPLED, RESULTS, STATE, _clean_env, _median, _wall, build_archive, install_copy  # noqa: E402

# What README recommends for `dask worker` (a file in DASK_CONFIG): the settings `local:N` uses itself.
WORKER_CONFIG = """\
distributed:
  nanny:
    pre-spawn-environ:
      MALLOC_TRIM_THRESHOLD_: null
  worker:
    profile:
      enabled: false
"""
IDLE_SECONDS = 10.0  # the running cluster's own CPU (heartbeats, monitors) is measured this long before the rounds
STAGES = [
    ("parse-type-all spot 1m", ["aws_kline", "parse-type-all", "spot", "1m"], (PARSED, RESULTS, RESAMPLED)),
    ("generate kline-type spot 1m", ["generate", "kline-type", "spot", "1m", "--split-gaps", "--with-vwap",
                                     "--no-with-funding-rates"], (RESULTS, RESAMPLED)),
    ("resample-type spot 1h 5m", ["generate", "resample-type", "spot", "1h", "5m"], (RESAMPLED / "1h",)),
    ("resample-type spot 5m 0m", ["generate", "resample-type", "spot", "5m", "0m"], (RESAMPLED / "5m",)),
]


@dataclass
class Way:
    name: str
    data_dir: Path
    env: dict[str, str]
    extra: list[str] = field(default_factory=list)  # after the command's arguments
    cluster_pids: list[int] = field(default_factory=list)  # processes whose CPU counts too
    repo: Path = REPO  # the bhds tree to run (`--before` runs an older one's pool)


def _cpu_of(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except OSError:
            pass
    return total


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    children.setdefault(int(fh.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except OSError:
                pass
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


def start_cluster(work: Path, env: dict[str, str]) -> tuple[str, list[subprocess.Popen]]:
    """`dask scheduler` and `dask worker --nworkers 2 --nthreads 1`, as a user would start them."""
    dask = str(Path(sys.executable).with_name("dask"))
    work.mkdir(parents=True, exist_ok=True)
    scheduler_file = work / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    procs = [subprocess.Popen([dask, "scheduler", "--scheduler-file", str(scheduler_file), "--port", "0",
                               "--no-dashboard"], **quiet)]
    procs.append(subprocess.Popen([dask, "worker", "--scheduler-file", str(scheduler_file), "--nworkers", "2",
                                   "--nthreads", "1", "--no-dashboard", "--memory-limit", "0"], **quiet))
    from distributed import Client

    deadline = time.monotonic() + 60
    while not scheduler_file.exists():
        if time.monotonic() > deadline:
            raise SystemExit("bench: dask scheduler did not start")
        time.sleep(0.2)
    with Client(scheduler_file=str(scheduler_file)) as client:
        client.wait_for_workers(2, timeout=60)
        address = client.scheduler.address
    return address, procs


def timed(way: Way, argv: list[str], outputs: tuple[Path | str, ...], *, keep_state: bool = False) -> Measurement:
    """One bhds command on `way`, after deleting `outputs` (and `.bhds`, unless `keep_state`): wall, and
    CPU of the command's tree plus the cluster's processes."""
    for folder in (*outputs, *(() if keep_state else (STATE,))):
        shutil.rmtree(way.data_dir / folder, ignore_errors=True)
    pids = [p for root in way.cluster_pids for p in _descendants(root)]
    before = _cpu_of(pids)
    result = measure([sys.executable, str(way.repo / "bhds.py"), *argv, *way.extra], way.env, cwd=way.repo)
    result.cpu += _cpu_of(pids) - before
    if result.returncode != 0:
        print(f"  {way.name}: {' '.join(argv)} exited {result.returncode}:\n{result.stderr_tail}", file=sys.stderr)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 symbols × 60 days")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--start", default="2024-07-01")
    parser.add_argument("--archive", type=Path, default=None,
                        help="an archive vs_legacy.py built (its `archive` folder), reused instead of building one")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "data")
    parser.add_argument("--before", type=Path, default=None,
                        help="another bhds tree (e.g. `git archive` of the commit before Dask) whose pool runs too: "
                             "the local pool's speed before and after")
    parser.add_argument("--pool-only", action="store_true", help="only the pools (with --before: before vs after)")
    args = parser.parse_args()
    n_symbols, n_days = (4, 60) if args.quick else (10, 365)
    shape = f"spot-{n_symbols}x{n_days}-{args.start}"
    work = args.work / f"dask-overhead-{shape}"
    work.mkdir(parents=True, exist_ok=True)
    archive_root = args.archive or build_archive(work, n_symbols, n_days, date.fromisoformat(args.start))

    ways: list[Way] = []
    procs: list[subprocess.Popen] = []
    idle_rate = 0.0
    try:
        chosen = [("pool", [], REPO)]
        if args.before:
            chosen.append(("pool, before", [], args.before.resolve()))
        if not args.pool_only:
            chosen += [("local:2", ["--scheduler", "local:2"], REPO), ("running cluster", [], REPO),
                       ("running cluster, Dask defaults", [], REPO)]
        for name, extra, repo in chosen:
            base = work / name.replace(":", "").replace(",", "").replace(" ", "-") / "crypto_data"
            zips, zip_bytes = install_copy(archive_root, base / "binance_data")
            env = dict(_clean_env(base, 2), PYTHONPATH=str(repo))
            env.pop("DASK_SCHEDULER_ADDRESS", None)
            way = Way(name, base / "binance_data", env, extra, repo=repo)
            subprocess.run([sys.executable, str(repo / "bhds.py"), "aws_kline", "verify-type-all", "spot", "1m"],
                           env=env, check=True, capture_output=True, cwd=repo)
            ways.append(way)
        if not args.pool_only:
            (work / "dask-config").mkdir(exist_ok=True)
            (work / "dask-config" / "bhds.yaml").write_text(WORKER_CONFIG)
            for way, config in ((ways[-2], {"DASK_CONFIG": str(work / "dask-config")}), (ways[-1], {})):
                address, started_procs = start_cluster(work / way.name.replace(",", "").replace(" ", "-"),
                                                       dict(_clean_env(work, 2), PYTHONPATH=str(REPO), **config))
                procs += started_procs
                way.env["DASK_SCHEDULER_ADDRESS"] = address
                way.cluster_pids = [p.pid for p in started_procs]
            pids = [p for root in ways[-2].cluster_pids for p in _descendants(root)]
            before, started = _cpu_of(pids), time.monotonic()
            time.sleep(IDLE_SECONDS)
            idle_rate = (_cpu_of(pids) - before) / (time.monotonic() - started)

        runs: dict[str, dict[str, list[Measurement]]] = {name: {} for name, _, _ in STAGES}
        for r in range(args.rounds):
            order = ways[r % len(ways):] + ways[:r % len(ways)]
            print(f"round {r + 1}/{args.rounds}: {order[0].name} first", file=sys.stderr, flush=True)
            for name, argv, outputs in STAGES:
                for way in order:
                    m = timed(way, argv, outputs)
                    runs[name].setdefault(way.name, []).append(m)
                    print(f"  {name:<30} {way.name:<16} {m.wall:7.2f} s  cpu {m.cpu:7.2f} s  rc {m.returncode}",
                          file=sys.stderr, flush=True)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=30)

    commit = head_commit()
    lines = [
        f"# bhds ({commit}): the local pool vs Dask on the same machine",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores; spot 1m, {n_symbols} symbols × "
        f"{n_days} days: {zips:,} daily zips, {zip_bytes / 1e6:.1f} MB. Cold runs (the stage's outputs and `.bhds/` "
        f"removed first). Wall: median of {args.rounds} round(s) (range); CPU: user+sys of the process tree, plus the "
        "running cluster's scheduler and workers. `local:2` includes starting and closing its LocalCluster.",
        "",
        "| stage | " + " | ".join(f"{w.name} wall s" for w in ways) + " | CPU s " + " / ".join(w.name for w in ways) + " |",
        "|---|" + "---|" * (len(ways) + 1),
    ]
    if idle_rate:
        lines[2] += (f" The running cluster idles at {idle_rate:.3f} CPU s per second (scheduler, nanny and two workers, "
                     f"measured over {IDLE_SECONDS:.0f} s): that much of its CPU per second of wall is Dask's background, "
                     "not the work.")
    for name, _, _ in STAGES:
        by = runs[name]
        fails = {w: sorted({m.returncode for m in ms} - {0}) for w, ms in by.items()}
        note = "".join(f" **{w} exit {c}**" for w, c in fails.items() if c)
        lines.append(f"| {name}{note} | " + " | ".join(_wall(by[w.name]) for w in ways)
                     + " | " + " / ".join(f"{_median(by[w.name], 'cpu'):.2f}" for w in ways) + " |")
    publish("\n".join(lines) + "\n", f"dask-overhead-{shape}" + ("-pool" if args.pool_only else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
