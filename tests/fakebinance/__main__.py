"""`python -m tests.fakebinance --root DIR --port N [--build default|bench ...]`: serve until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from datetime import date
from pathlib import Path

from aiohttp import web

from .archive import UNIVERSE_FILE, build_archive
from .server import FakeBinance, Faults, env_for
from .universe import bench_universe, default_universe


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.fakebinance",
                                description="Serve a synthetic Binance archive bucket and REST API on loopback.")
    p.add_argument("--root", required=True, type=Path, help="archive directory (holds universe.json)")
    p.add_argument("--port", type=int, default=0, help="TCP port (0 = pick a free one)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--build", choices=("default", "bench"), help="build the archive into --root first")
    p.add_argument("--symbols", type=int, default=10, help="bench: number of base assets")
    p.add_argument("--days", type=int, default=365, help="bench: number of days")
    p.add_argument("--start", type=date.fromisoformat, default=date(2024, 7, 1), help="bench: first day")
    p.add_argument("--intervals", default="1m", help="comma-separated kline intervals to build")
    p.add_argument("--jobs", type=int, default=1, help="worker processes for the build")
    p.add_argument("--compress-level", type=int, default=6)
    p.add_argument("--build-only", action="store_true", help="build and exit without serving")
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--truncate-rate", type=float, default=0.0)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--page-size", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0, help="fault seed")
    return p


async def _serve(fake: FakeBinance, host: str, port: int) -> None:
    runner = web.AppRunner(fake.app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    await web.SockSite(runner, sock).start()
    url = f"http://{host}:{sock.getsockname()[1]}"
    print(f"fake Binance serving {fake.root} at {url} (now = {fake.universe.now_iso})", file=sys.stderr)
    for k, v in env_for(url).items():
        print(f"export {k}={v}")
    print(f"export BHDS_NOW={fake.universe.now_iso}")
    sys.stdout.flush()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    root: Path = args.root
    if args.build:
        if args.build == "default":
            universe = default_universe()
        else:
            universe = bench_universe(n_symbols=args.symbols, n_days=args.days, start=args.start)
        summary = build_archive(universe, root, intervals=tuple(args.intervals.split(",")), jobs=args.jobs,
                                compress_level=args.compress_level)
        print(f"built {summary.zips} zips ({summary.zip_bytes / 1e6:.1f} MB, {summary.kline_rows} kline rows) "
              f"in {summary.seconds:.1f} s under {root}", file=sys.stderr)
    if args.build_only:
        return 0
    if not (root / UNIVERSE_FILE).exists():
        print(f"error: {root / UNIVERSE_FILE} not found: pass --build default (or bench)", file=sys.stderr)
        return 2
    faults = Faults(seed=args.seed, error_rate=args.error_rate, truncate_rate=args.truncate_rate,
                    latency=args.latency, page_size=args.page_size)
    fake = FakeBinance(root, faults=faults)
    try:
        asyncio.run(_serve(fake, args.host, args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
