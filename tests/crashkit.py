"""Crash campaign: kill a stage with SIGKILL at random moments, run it again, compare with a clean run.

    python -m tests.crashkit --trials 200 [--stage parse ...] [--seed 1]

For each stage: a base data directory holds everything the stage needs (its prerequisites run
once). A clean run of the stage on a copy of it gives the reference. Each trial copies the base,
starts the stage, kills its whole process group after a random delay within the clean run's
duration, runs the stage again to completion and compares the data directory with the reference,
file by file (Parquet by content, everything else by bytes; bhds' own `.bhds/` bookkeeping is
left out). No temporary file may survive the completed re-run.

A stage may `link` one output folder to a folder outside the data directory (another disk, as
users do with results): the comparison then reads through the link, the link must still be
the same link afterwards, and no leftover may survive beside its destination either.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
LEFTOVER_SUFFIXES = (".part", ".bhds-tmp", ".bhds-build", ".bhds-old")


@dataclass(frozen=True)
class Stage:
    name: str
    prerequisites: tuple[tuple[str, ...], ...]
    command: tuple[str, ...]
    # An output folder (relative to binance_data) moved outside the data directory and replaced by
    # a relative symlink to it, after the prerequisites ran.
    link: str | None = None
    # A stage whose clean run must give the same files (the linked folder is then current).
    same_as: str | None = None


ELSEWHERE = "elsewhere"  # beside binance_data in each base: the "other disk"


_KLINE_TYPE_ARGS = ("spot", "1m", "--split-gaps", "--with-vwap", "--no-with-funding-rates")
_PREPARED = (("aws_kline", "download-spot", "1m"), ("aws_kline", "verify-type-all", "spot", "1m"), ("aws_kline", "parse-type-all", "spot", "1m"),
             ("api_data", "download-aws-missing-kline-type", "spot", "1m"))
_ONE_API_DAY = ("api_data", "download-kline", "spot", "1m", "BTCUSDT", "20250105")

STAGES = (
    Stage("download", (), ("aws_kline", "download-spot", "1m")),
    Stage("verify", (("aws_kline", "download-um-futures", "1m"),), ("aws_kline", "verify-type-all", "um_futures", "1m")),
    Stage("parse", (("aws_kline", "download-spot", "1m"), ("aws_kline", "verify-type-all", "spot", "1m")),
          ("aws_kline", "parse-type-all", "spot", "1m")),
    Stage("api", (("aws_kline", "download-spot", "1m"), ("aws_kline", "verify-type-all", "spot", "1m"),
                  ("aws_kline", "parse-type-all", "spot", "1m")),
          ("api_data", "download-aws-missing-kline-type", "spot", "1m")),
    Stage("generate", (("aws_kline", "download-spot", "1m"), ("aws_kline", "verify-type-all", "spot", "1m"),
                       ("aws_kline", "parse-type-all", "spot", "1m"), ("api_data", "download-aws-missing-kline-type", "spot", "1m")),
          ("generate", "kline-type", "spot", "1m", "--split-gaps", "--with-vwap", "--no-with-funding-rates")),
    # The results folder is a symlink to another folder that already holds an earlier run's results.
    Stage("generate-symlinked",
          (("aws_kline", "download-spot", "1m"), ("aws_kline", "verify-type-all", "spot", "1m"),
           ("aws_kline", "parse-type-all", "spot", "1m"), ("api_data", "download-aws-missing-kline-type", "spot", "1m"),
           ("generate", "kline-type", "spot", "1m", "--no-split-gaps", "--with-vwap", "--no-with-funding-rates")),
          ("generate", "kline-type", "spot", "1m", "--split-gaps", "--with-vwap", "--no-with-funding-rates"),
          link="results_data/spot/klines/1m", same_as="generate"),
    Stage("resample", (("aws_kline", "download-spot", "1m"), ("aws_kline", "verify-type-all", "spot", "1m"),
                       ("aws_kline", "parse-type-all", "spot", "1m"),
                       ("generate", "kline-type", "spot", "1m", "--split-gaps", "--with-vwap", "--no-with-funding-rates")),
          ("generate", "resample-type", "spot", "1h", "15m")),
    # Incremental runs: results exist, then the API rewrites one day of BTCUSDT, so only BTCUSDT is rebuilt.
    Stage("generate-incremental", (*_PREPARED, ("generate", "kline-type", *_KLINE_TYPE_ARGS), _ONE_API_DAY),
          ("generate", "kline-type", *_KLINE_TYPE_ARGS)),
    Stage("resample-incremental", (*_PREPARED, ("generate", "kline-type", *_KLINE_TYPE_ARGS), ("generate", "resample-type", "spot", "1h", "15m"),
                                   _ONE_API_DAY, ("generate", "kline-type", *_KLINE_TYPE_ARGS)),
          ("generate", "resample-type", "spot", "1h", "15m")),
    # The daily case: new API days extend the 1m files, whose resamples then keep their earlier quarter (0m) or are
    # resampled whole (the other offsets straddle the cut), in one run.
    Stage("resample-extend", (*_PREPARED[:3], ("generate", "kline-type", *_KLINE_TYPE_ARGS), ("generate", "resample-type", "spot", "1h", "15m"),
                              _PREPARED[3], ("generate", "kline-type", *_KLINE_TYPE_ARGS)),
          ("generate", "resample-type", "spot", "1h", "15m")),
)
STAGE_BY_NAME = {stage.name: stage for stage in STAGES}


def bhds(argv: tuple[str, ...], env: dict[str, str], base: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "bhds.py"), *argv], cwd=REPO, env=dict(env, CRYPTO_BASE_DIR=str(base)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def run_to_end(argv: tuple[str, ...], env: dict[str, str], base: Path) -> float:
    started = time.monotonic()
    proc = bhds(argv, env, base)
    _, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}: {err[-2000:]}")
    return time.monotonic() - started


def snapshot(base: Path) -> dict[str, object]:
    """Relative path -> content (Parquet as an Arrow table, other files as bytes), read through
    symlinked folders; each symlink itself appears as `<path>@ -> <its text>`."""
    data = base / "binance_data"
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(data, followlinks=True):
        folder = Path(dirpath)
        if folder == data:
            dirnames[:] = [d for d in dirnames if d != ".bhds"]
        for name in dirnames:
            if (folder / name).is_symlink():
                out[f"{(folder / name).relative_to(data).as_posix()}@"] = f"-> {os.readlink(folder / name)}".encode()
        for name in filenames:
            path = folder / name
            out[path.relative_to(data).as_posix()] = pq.read_table(path) if path.suffix == ".pqt" else path.read_bytes()
    return dict(sorted(out.items()))


def differences(reference: dict[str, object], actual: dict[str, object]) -> list[str]:
    problems = [f"missing {k}" for k in reference.keys() - actual.keys()]
    problems += [f"unexpected {k}" for k in actual.keys() - reference.keys()]
    for key in reference.keys() & actual.keys():
        a, b = reference[key], actual[key]
        same = a.equals(b) if hasattr(a, "equals") else a == b
        if not same:
            problems.append(f"content differs: {key}")
    return sorted(problems)


def leftovers(base: Path) -> list[str]:
    """Temporary files and folders anywhere under the base, the linked-to folders included."""
    return sorted(str(p) for p in base.rglob("*") if p.name.endswith(LEFTOVER_SUFFIXES))


def link_problems(stage: Stage, base: Path) -> list[str]:
    """The stage's linked folder must still be a symlink to the same place, and that place a folder."""
    if not stage.link:
        return []
    inside = base / "binance_data" / stage.link
    outside = base / ELSEWHERE / stage.link.replace("/", "-")
    if not inside.is_symlink():
        return [f"{stage.link} is no longer a symlink"]
    if Path(os.path.realpath(inside)) != outside.resolve() or not outside.is_dir():
        return [f"{stage.link} now points to {os.readlink(inside)}"]
    return []


def link_out(base: Path, folder: str) -> None:
    """Move `binance_data/<folder>` to `<base>/elsewhere/...` and leave a relative symlink in its place."""
    inside = base / "binance_data" / folder
    outside = base / ELSEWHERE / folder.replace("/", "-")
    outside.parent.mkdir(parents=True, exist_ok=True)
    if inside.exists():
        shutil.move(inside, outside)
    else:
        outside.mkdir()
    inside.parent.mkdir(parents=True, exist_ok=True)
    inside.symlink_to(os.path.relpath(outside, inside.parent), target_is_directory=True)


class Campaign:
    """Base states and references for the stages, built in `work`, against a running fake server."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.work = work
        self.env = env
        self.reference: dict[str, dict[str, object]] = {}
        self.duration: dict[str, float] = {}

    def base(self, stage: Stage) -> Path:
        base = self.work / f"base-{stage.name}"
        if not base.exists():
            for argv in stage.prerequisites:
                run_to_end(argv, self.env, base)
            (base / "binance_data").mkdir(parents=True, exist_ok=True)
            if stage.link:
                link_out(base, stage.link)
        return base

    def fresh_copy(self, stage: Stage, label: str) -> Path:
        target = self.work / f"{stage.name}-{label}"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(self.base(stage), target, symlinks=True)  # links are relative: they point into the copy
        return target

    def clean(self, stage: Stage) -> None:
        if stage.name in self.reference:
            return
        target = self.fresh_copy(stage, "clean")
        self.duration[stage.name] = run_to_end(stage.command, self.env, target)
        problems = link_problems(stage, target) + [f"leftover {p}" for p in leftovers(target)]
        self.reference[stage.name] = snapshot(target)
        if stage.same_as:
            self.clean(STAGE_BY_NAME[stage.same_as])
            unlinked = {k: v for k, v in self.reference[stage.name].items() if not k.endswith("@")}
            problems += [f"not as {stage.same_as}: {p}" for p in differences(self.reference[stage.same_as], unlinked)]
        if problems:
            raise AssertionError(f"{stage.name} clean run: " + "; ".join(problems[:10]))
        shutil.rmtree(target)

    def trial(self, stage: Stage, rng: random.Random, index: int) -> list[str]:
        """One kill-and-rerun; returns the problems found (empty when the result is identical)."""
        self.clean(stage)
        target = self.fresh_copy(stage, f"trial{index}")
        proc = bhds(stage.command, self.env, target)
        delay = rng.uniform(0.0, self.duration[stage.name])
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # Workers of a killed pool may outlive their parent for a moment; make sure all are gone.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        run_to_end(stage.command, self.env, target)
        problems = differences(self.reference[stage.name], snapshot(target))
        problems += [f"leftover {p}" for p in leftovers(target)] + link_problems(stage, target)
        shutil.rmtree(target, ignore_errors=True)
        return [f"{stage.name} trial {index} (killed after {delay:.2f}s): {p}" for p in problems]


def main() -> int:
    from tests.fakebinance import build_archive, default_universe, start_in_thread

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20, help="trials per stage")
    parser.add_argument("--stage", action="append", choices=list(STAGE_BY_NAME))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bhds-crash"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    bucket = args.work / "bucket"
    universe = default_universe()
    build_archive(universe, bucket, intervals=("1m",), compress_level=1)
    fake = start_in_thread(bucket)
    env = dict(os.environ, **fake.env, CRYPTO_NJOBS="2", BHDS_NOW=universe.now_iso)
    campaign = Campaign(args.work, env)
    rng = random.Random(args.seed)
    failures: list[str] = []
    try:
        for name in args.stage or list(STAGE_BY_NAME):
            stage = STAGE_BY_NAME[name]
            for i in range(args.trials):
                found = campaign.trial(stage, rng, i)
                failures += found
                print(f"{name} trial {i + 1}/{args.trials}: {'FAIL ' + '; '.join(found[:3]) if found else 'ok'}", flush=True)
    finally:
        fake.stop()
    total = args.trials * len(args.stage or STAGE_BY_NAME)
    print(f"crash campaign: {total} trials, {len(failures)} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
