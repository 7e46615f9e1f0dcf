"""`python bench/working_copy_scale.py [--files 100000]`: the local side of syncing and publishing a big tree.

A tree of N one-byte files published to an in-process store (`memory://`, so the network is out of
the picture), then a sync and a publish with nothing new: what every command pays per tree it
touches, for walking the working copy, reading the manifest and the sync record, and comparing.
Prints wall seconds, best of --rounds. Timings are never asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from bhds import paths
    from bhds.objstore.manifest import publish, sync_down
    from bhds.objstore.store import open_store
    from bhds.paths import Layout
    from bhds.types import TradeType

    store = open_store(f"memory://wc-scale-{time.time_ns()}/store")
    with tempfile.TemporaryDirectory(prefix="bhds-wc-scale-") as tmp:
        layout = Layout(Path(tmp) / "binance_data")
        tree = paths.store_tree_dir(layout, "aws", TradeType.spot)
        base = sync_down(store, layout, tree)
        for i in range(args.files):
            f = tree / f"daily/klines/S{i % 500:03d}USDT/1m/S{i % 500:03d}USDT-1m-{i // 500:05d}.zip"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"x")
        manifest = publish(store, layout, tree, base)
        for name, step in (("no-op sync", lambda: sync_down(store, layout, tree)),
                           ("no-op publish", lambda: publish(store, layout, tree, manifest))):
            best = float("inf")
            for _ in range(args.rounds):
                started = time.monotonic()
                step()
                best = min(best, time.monotonic() - started)
            print(f"{args.files:,} files, {name}: {best:.2f} s")


if __name__ == "__main__":
    main()
