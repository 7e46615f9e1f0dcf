"""`python bench/ab_local_stages.py OTHER_CHECKOUT [--rounds N] [--data DIR]`: this checkout vs another, side by side.

Local stages (parse, generate, resample, a no-op generate) of both checkouts on the same data
folder, cold each time (the stage's outputs wiped), alternating which goes first, N rounds; prints
the median wall seconds and the CPU seconds of the command's process (its pool workers are not
always counted: compare wall). For "is a local run as fast as before this change": make the other
checkout with `git worktree add ../before <commit>`. The data folder is one `bench/vs_legacy.py`
left (its bhds side: verified zips); timings are never asserted.
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("other", type=Path, help="the other checkout (a folder holding bhds.py)")
parser.add_argument("--rounds", type=int, default=5)
parser.add_argument("--data", type=Path, default=REPO / "bench" / "data" / "vs-legacy-spot-10x365-2024-07-01" / "bhds" / "crypto_data")
args = parser.parse_args()
DATA = args.data
TOOLS = {"before": str(args.other.resolve() / "bhds.py"), "after": str(REPO / "bhds.py")}
env = dict(os.environ, CRYPTO_BASE_DIR=str(DATA), CRYPTO_NJOBS="2")
env.pop("PYTHONPATH", None)
STAGES = [
    ("parse", ["aws_kline", "parse-type-all", "spot", "1m"], ["parsed_data/spot", ".bhds", "results_data/spot"]),
    ("generate", ["generate", "kline-type", "spot", "1m", "--split-gaps", "--with-vwap", "--no-with-funding-rates"], ["results_data/spot", ".bhds/cache"]),
    ("resample 1h 5m", ["generate", "resample-type", "spot", "1h", "5m"], ["results_data/spot/resampled_klines"]),
    ("no-op generate", ["generate", "kline-type", "spot", "1m", "--split-gaps", "--with-vwap", "--no-with-funding-rates"], []),
]
def run(tool, argv):
    before = resource.getrusage(resource.RUSAGE_CHILDREN); t = time.monotonic()
    p = subprocess.run([sys.executable, tool, *argv], env=env, capture_output=True, text=True, cwd=Path(tool).parent)
    wall = time.monotonic() - t; after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert p.returncode == 0, p.stderr[-2000:]
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
res = {}
for r in range(args.rounds):
    order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
    for name in order:
        for stage, argv, wipe in STAGES:
            for w in wipe:
                shutil.rmtree(DATA / "binance_data" / w, ignore_errors=True)
            res.setdefault((stage, name), []).append(run(TOOLS[name], argv))
print(f"| stage | {args.other.name}: wall / CPU s | this checkout: wall / CPU s |\n|---|---|---|")
for stage, *_ in STAGES:
    cells = []
    for name in ("before", "after"):
        xs = res[(stage, name)]
        cells.append(f"{statistics.median(x[0] for x in xs):.2f} / {statistics.median(x[1] for x in xs):.2f}")
    print(f"| {stage} | " + " | ".join(cells) + " |")
