"""Timing harness: run `python bhds.py ...` as a subprocess and measure it.

Measured per case: wall seconds (median of N runs, min-max), CPU seconds (user+sys of the whole
process tree), peak memory (the largest sum of RSS over the process tree, sampled every 20 ms,
which is what the baseline's "peak PSS, tree" approximates), and throughput from the case's units.
Never used by the tests: speed is reported here, never asserted.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass
class BenchContext:
    """Where a stage's benchmark runs: a data directory, a fake archive, a running fake server."""

    work: Path
    data_root: Path
    archive_root: Path
    env: dict[str, str]
    n_symbols: int
    n_days: int

    @property
    def data_dir(self) -> Path:
        return self.data_root / "binance_data"

    def run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
        """Run a prerequisite command untimed."""
        proc = subprocess.run([sys.executable, str(REPO / "bhds.py"), *argv], env=self.env, cwd=REPO, capture_output=True, text=True)
        if check and proc.returncode not in (0,):
            raise RuntimeError(f"prerequisite {' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
        return proc


@dataclass
class Case:
    """One timed command. `argv` follows `python bhds.py`; `setup` runs untimed before each run."""

    name: str
    argv: list[str]
    setup: Callable[[BenchContext], None] | None = None
    units: dict[str, float] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)
    target: str = ""
    command: list[str] | None = None  # a non-bhds command to time instead (e.g. a bare pyarrow read)
    probe: Callable[[BenchContext], dict] | None = None  # extra figures for the result (e.g. bytes read), run once untimed


def _tree_rss_bytes(root_pid: int, cpu_seen: dict[int, float] | None = None) -> int:
    """Sum of RSS over `root_pid` and its descendants (Linux /proc).

    With `cpu_seen`, also records each descendant's user+system CPU seconds: pool workers started
    by a forkserver are not our children, so getrusage never sees their CPU.
    """
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    cpu: dict[int, float] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ppid, rss_pages = int(fields[1]), int(fields[21])
            cpu_ticks = int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
        pid = int(entry)
        children.setdefault(ppid, []).append(pid)
        rss[pid] = rss_pages * page
        cpu[pid] = cpu_ticks / ticks
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        if cpu_seen is not None and pid in cpu:
            cpu_seen[pid] = max(cpu_seen.get(pid, 0.0), cpu[pid])
        stack.extend(children.get(pid, []))
    return total


@dataclass
class Measurement:
    wall: float
    cpu: float
    peak_rss: int
    returncode: int
    stderr_tail: str


def measure(cmd: list[str], env: dict[str, str], cwd: Path = REPO) -> Measurement:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()
    cpu_seen: dict[int, float] = {}

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss_bytes(proc.pid, cpu_seen))
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = proc.communicate()
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    waited = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # The larger of: what the kernel reports for waited-for children, and the sampled tree
    # (which also sees forkserver workers, up to their last 20 ms sample).
    cpu = max(waited, sum(cpu_seen.values()))
    return Measurement(wall, cpu, peak, proc.returncode, (stderr or "")[-1500:])


def run_case(ctx: BenchContext, case: Case, repeat: int) -> dict:
    cmd = case.command or [sys.executable, str(REPO / "bhds.py"), *case.argv]
    runs: list[Measurement] = []
    for _ in range(repeat):
        if case.setup:
            case.setup(ctx)
        runs.append(measure(cmd, ctx.env))
    walls = [m.wall for m in runs]
    wall = statistics.median(walls)
    result = {
        "case": case.name,
        "argv": case.argv if case.command is None else case.command,
        "wall_s": round(wall, 3),
        "wall_min_s": round(min(walls), 3),
        "wall_max_s": round(max(walls), 3),
        "cpu_s": round(statistics.median(m.cpu for m in runs), 3),
        "peak_rss_mb": round(max(m.peak_rss for m in runs) / 1e6, 1),
        "exit_codes": sorted({m.returncode for m in runs}),
        "throughput": {f"{unit}/s": round(amount / wall, 1) for unit, amount in case.units.items()},
        "baseline": case.baseline,
        "target": case.target,
    }
    if case.baseline.get("wall_s"):
        result["speedup_vs_legacy"] = round(case.baseline["wall_s"] / wall, 2)
    if case.probe:
        result.update(case.probe(ctx))
    if any(m.returncode != 0 for m in runs):
        result["stderr_tail"] = runs[-1].stderr_tail
    return result


def head_commit() -> str:
    """The short commit of the tree being measured, for a results table's title."""
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()


def publish(text: str, name: str) -> Path:
    """Print a Markdown report and keep it as `bench/results/<name>-<UTC time>.md`."""
    print(text)
    out = REPO / "bench" / "results" / f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}", file=sys.stderr)
    return out
