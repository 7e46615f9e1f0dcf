"""`python bench/vs_legacy.py [--quick] [--rounds N] [--stage TEXT]`: the original bhds.py and bhds, side by side.

One command, one run, the same bytes:
1. sets up the original with `bash ../shared/legacy/setup.sh` (falls back to /work/shared/legacy);
2. builds one synthetic spot 1m archive (10 symbols × 365 days by default, `--quick` 4 × 60) with
   the generator the tests use, and copies its zips + CHECKSUMs into two data directories in the
   `aws_data` layout, one per tool;
3. times every stage on both, alternating which tool goes first each round, `--rounds` times (median
   and range of wall seconds, CPU seconds of the whole process tree, peak tree RSS);
4. times `sha256sum` over the same zips (one process, and `xargs -P2`) as the hashing reference;
5. prints a Markdown table and writes it to `bench/results/vs-legacy-<shape>-<time>.md`.

Fairness: before each cold run both tools lose the same things, the stage's output folder and
everything downstream of it, plus the `.verified` markers before verify; bhds also loses its whole
`.bhds/` folder (its manifest, ledgers and caches; bhds.py has nothing like it), so a cold run of bhds
never profits from bookkeeping. A no-op run follows its cold run untouched. Both use
`CRYPTO_NJOBS=2` (the original crashes without it on 2 cores). Speed is reported here, never asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.harness import Measurement, head_commit, measure, publish  # noqa: E402

KLINES = Path("aws_data/data/spot/daily/klines")
PARSED = Path("parsed_data/spot/klines")
RESULTS = Path("results_data/spot/klines")
RESAMPLED = Path("results_data/spot/resampled_klines")
STATE = Path(".bhds")


# ---- the two tools -------------------------------------------------------------------------

@dataclass
class Tool:
    name: str
    prefix: list[str]  # the command up to and excluding `aws_kline ...`
    cwd: Path
    env: dict[str, str]
    data_dir: Path  # <CRYPTO_BASE_DIR>/binance_data
    state: list[Path] = field(default_factory=list)  # bookkeeping a cold run must not profit from

    def command(self, argv: list[str]) -> list[str]:
        return [*self.prefix, *argv]

    def forget(self, *folders: Path) -> None:
        for folder in (*folders, *self.state):
            shutil.rmtree(self.data_dir / folder, ignore_errors=True)


def _clean_env(base_dir: Path, jobs: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CRYPTO_", "BHDS_", "PYTHON")) and k.lower() not in ("http_proxy", "https_proxy")}
    env.update({"CRYPTO_BASE_DIR": str(base_dir), "CRYPTO_NJOBS": str(jobs)})
    return env


def legacy_setup() -> tuple[Path, Path]:
    """(python, source dir) of the original, installed by the shared setup script."""
    for script in (REPO.parent / "shared" / "legacy" / "setup.sh", Path("/work/shared/legacy/setup.sh")):
        if script.is_file():
            break
    else:
        raise SystemExit("bench: ../shared/legacy/setup.sh not found: the original cannot be set up")
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"bench: {script} failed:\n{out.stderr[-2000:]}")
    found = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
    return Path(found["python"]), Path(found["source"])


# ---- the dataset ---------------------------------------------------------------------------

def build_archive(work: Path, n_symbols: int, n_days: int, start: date) -> Path:
    """The synthetic spot 1m archive (S3 keys as paths), built once per shape and reused."""
    from tests.fakebinance import archive, universe

    root = work / "archive"
    if not (root / "universe.json").exists():
        print(f"building the spot 1m archive {n_symbols} × {n_days} in {root} ...", file=sys.stderr, flush=True)
        uni = universe.bench_universe(n_symbols=n_symbols, n_days=n_days, start=start)
        archive.build_archive(uni, root, markets=["spot"], funding=False, liquidation=False, jobs=os.cpu_count() or 1)
    return root


def install_copy(archive_root: Path, data_dir: Path) -> tuple[int, int]:
    """Copy every 1m zip and CHECKSUM into `data_dir/aws_data` (a real copy per tool); (zips, zip bytes)."""
    source = archive_root / "data" / "spot" / "daily" / "klines"
    zips = size = 0
    for path in sorted(source.glob("*/1m/*")):
        dest = data_dir / KLINES / path.relative_to(source)
        if not dest.exists() or dest.stat().st_size != path.stat().st_size:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
        if path.name.endswith(".zip"):
            zips += 1
            size += path.stat().st_size
    return zips, size


def unmark(data_dir: Path) -> None:
    for marker in (data_dir / KLINES).glob("*/1m/*.verified"):
        marker.unlink()


def tree_bytes(folder: Path) -> int:
    """Bytes of every regular file under `folder` (what `du --apparent-size -b` counts)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


# ---- stages --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stage:
    name: str
    argv: list[str]
    reset: Callable[[Tool], None] | None  # None: a no-op run right after the cold one


def stages() -> list[Stage]:
    def cold_verify(tool: Tool) -> None:
        unmark(tool.data_dir)
        tool.forget()

    return [
        Stage("verify-type-all spot 1m", ["aws_kline", "verify-type-all", "spot", "1m"], cold_verify),
        Stage("no-op verify", ["aws_kline", "verify-type-all", "spot", "1m"], None),
        Stage("parse-type-all spot 1m", ["aws_kline", "parse-type-all", "spot", "1m"],
              lambda t: t.forget(PARSED, RESULTS, RESAMPLED)),
        Stage("no-op parse", ["aws_kline", "parse-type-all", "spot", "1m"], None),
        Stage("generate kline-type spot 1m", ["generate", "kline-type", "spot", "1m", "--split-gaps", "--with-vwap",
                                              "--no-with-funding-rates"], lambda t: t.forget(RESULTS, RESAMPLED)),
        Stage("no-op generate", ["generate", "kline-type", "spot", "1m", "--split-gaps", "--with-vwap",
                                 "--no-with-funding-rates"], None),
        Stage("resample-type spot 1h 5m", ["generate", "resample-type", "spot", "1h", "5m"], lambda t: t.forget(RESAMPLED / "1h")),
        Stage("resample-type spot 5m 0m", ["generate", "resample-type", "spot", "5m", "0m"], lambda t: t.forget(RESAMPLED / "5m")),
    ]


HASH_REFERENCES = {
    "`sha256sum`, 1 process": "find {dir} -name '*.zip' -print0 | sort -z | xargs -0 sha256sum > /dev/null",
    "`sha256sum`, `xargs -P2` over halves": "n=$(find {dir} -name '*.zip' | wc -l); "
                                            "find {dir} -name '*.zip' -print0 | sort -z | xargs -0 -P2 -n $(( (n + 1) / 2 )) sha256sum > /dev/null",
}


# ---- running -------------------------------------------------------------------------------

@dataclass
class Row:
    stage: str
    runs: dict[str, list[Measurement]] = field(default_factory=dict)


def _timed(tool: Tool, stage: Stage) -> Measurement:
    if stage.reset is not None:
        stage.reset(tool)
    result = measure(tool.command(stage.argv), tool.env, cwd=tool.cwd)
    if result.returncode != 0:
        print(f"  {tool.name}: {stage.name} exited {result.returncode}:\n{result.stderr_tail}", file=sys.stderr)
    return result


def run_all(tools: list[Tool], chosen: list[Stage], rounds: int, hash_dir: Path) -> tuple[list[Row], list[Row]]:
    rows = {s.name: Row(s.name) for s in chosen}
    refs = {name: Row(name) for name in HASH_REFERENCES}
    for r in range(rounds):
        order = tools if r % 2 == 0 else tools[::-1]
        print(f"round {r + 1}/{rounds}: {order[0].name} first", file=sys.stderr, flush=True)
        for stage in chosen:
            for tool in order:
                m = _timed(tool, stage)
                rows[stage.name].runs.setdefault(tool.name, []).append(m)
                print(f"  {stage.name:<30} {tool.name:<9} {m.wall:8.2f} s  cpu {m.cpu:7.2f} s  {m.peak_rss / 1e6:6.0f} MB  rc {m.returncode}",
                      file=sys.stderr, flush=True)
        for name, script in HASH_REFERENCES.items():
            m = measure(["bash", "-c", script.format(dir=hash_dir)], dict(os.environ), cwd=REPO)
            refs[name].runs.setdefault("ref", []).append(m)
            print(f"  {name:<30} {m.wall:8.2f} s", file=sys.stderr, flush=True)
    return list(rows.values()), list(refs.values())


# ---- the report ----------------------------------------------------------------------------

def _wall(runs: list[Measurement]) -> str:
    walls = [m.wall for m in runs]
    text = f"{statistics.median(walls):.2f}"
    return text if len(walls) == 1 else f"{text} ({min(walls):.2f}–{max(walls):.2f})"


def _median(runs: list[Measurement], attr: str) -> float:
    return statistics.median(getattr(m, attr) for m in runs)


def _failed(runs: list[Measurement]) -> str:
    codes = sorted({m.returncode for m in runs} - {0})
    return f" **exit {codes}**" if codes else ""


def report(header: list[str], rows: list[Row], refs: list[Row], sizes: dict[str, dict[str, int]]) -> str:
    lines = [*header, "",
             "| stage | original wall s | bhds wall s | speed-up | CPU s original / bhds | peak tree MB original / bhds |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        old, new = row.runs["original"], row.runs["bhds"]
        ratio = _median(old, "wall") / _median(new, "wall")
        lines.append(f"| {row.stage} | {_wall(old)}{_failed(old)} | {_wall(new)}{_failed(new)} | **{ratio:.1f}×** "
                     f"| {_median(old, 'cpu'):.2f} / {_median(new, 'cpu'):.2f} "
                     f"| {max(m.peak_rss for m in old) / 1e6:.0f} / {max(m.peak_rss for m in new) / 1e6:.0f} |")
    for ref in refs:
        runs = ref.runs["ref"]
        lines.append(f"| reference: {ref.stage} | | {_wall(runs)} | | {_median(runs, 'cpu'):.2f} | |")
    lines += ["", "| bytes on disk (same data) | original | bhds | bhds / original |", "|---|---|---|---|"]
    for folder, by_tool in sizes.items():
        old, new = by_tool["original"], by_tool["bhds"]
        lines.append(f"| {folder} | {old:,} | {new:,} | {new / old:.2f}× |" if old else f"| {folder} | 0 | {new:,} | |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small dataset (4 symbols × 60 days) to try the bench")
    parser.add_argument("--symbols", type=int, default=None, help="symbols (default 10, --quick 4)")
    parser.add_argument("--days", type=int, default=None, help="days per symbol (default 365, --quick 60)")
    parser.add_argument("--start", default="2024-07-01")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="CRYPTO_NJOBS of both tools")
    parser.add_argument("--stage", action="append", help="only the stages whose name contains this text (no-op stages need their cold run)")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "data", help="where the archive and both data dirs live (reused)")
    args = parser.parse_args()
    n_symbols = args.symbols or (4 if args.quick else 10)
    n_days = args.days or (60 if args.quick else 365)

    legacy_python, legacy_src = legacy_setup()
    shape = f"spot-{n_symbols}x{n_days}-{args.start}"
    work = args.work / f"vs-legacy-{shape}"
    archive_root = build_archive(work, n_symbols, n_days, date.fromisoformat(args.start))
    tools = []
    for name in ("original", "bhds"):
        base = work / name / "crypto_data"
        zips, zip_bytes = install_copy(archive_root, base / "binance_data")
        env = _clean_env(base, args.jobs)
        if name == "original":
            tools.append(Tool(name, [str(legacy_python), "bhds.py"], legacy_src, env, base / "binance_data"))
        else:
            env["PYTHONPATH"] = str(REPO)
            tools.append(Tool(name, [sys.executable, str(REPO / "bhds.py")], REPO, env, base / "binance_data", [STATE]))
    chosen = [s for s in stages() if not args.stage or any(text in s.name for text in args.stage)]
    rows, refs = run_all(tools, chosen, args.rounds, tools[1].data_dir / KLINES)
    sizes = {f"`{folder}`": {t.name: tree_bytes(t.data_dir / folder) for t in tools} for folder in (PARSED, RESULTS, RESAMPLED)}

    commit = head_commit()
    header = [
        f"# bhds.py (original, lostleaf/binance_datatool 589f248) vs bhds ({commit}), side by side",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores; `CRYPTO_NJOBS={args.jobs}`; warm page cache; "
        f"spot 1m, {n_symbols} symbols × {n_days} days from {args.start}: {zips:,} daily zips, {zip_bytes / 1e6:.1f} MB. "
        f"Wall: median of {args.rounds} round(s) (range), the tools alternating first place; CPU: user+sys of the process "
        "tree (median); memory: peak summed RSS of the tree. Speed-up = original wall / bhds wall. Before each cold run both "
        "lose the stage's outputs and what lies downstream (and the `.verified` markers before verify); bhds also loses `.bhds/`.",
    ]
    text = report(header, rows, refs, sizes)
    publish(text, f"vs-legacy-{shape}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
