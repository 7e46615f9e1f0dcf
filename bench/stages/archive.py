"""Archive stage: `download` (cold and no-op) and `verify` (cold and no-op) against the fake S3.

The legacy figures apply to two shapes of shared/bench-baseline.md: downloads were measured on
6 symbols × 90 days (`--symbols 6 --days 90`), verify on the main 10 × 365 set. Other shapes are
timed without a baseline. Downloads run at the legacy concurrency (32, aria2's -j32).
"""

from __future__ import annotations

import shutil
import sqlite3

from bench.harness import BenchContext, Case

MARKETS = {"spot": "spot", "um_futures": "futures/um", "cm_futures": "futures/cm"}
DOWNLOAD_SHAPE = (6, 90)
VERIFY_SHAPE = (10, 365)
# bhds.py on the 2-core machine kind (shared/bench-baseline.md).
DOWNLOAD_BASELINE = {
    "spot": {"wall_s": 2.79, "peak_mb": 85.0, "files/s": 336.0},
    "um_futures": {"wall_s": 2.79, "peak_mb": 85.0, "files/s": 336.0},
}
FUNDING_DOWNLOAD_BASELINE = {"wall_s": 1.22, "peak_mb": 71.0}
NOOP_DOWNLOAD_BASELINE = {"wall_s": 0.93, "peak_mb": 59.0}
VERIFY_BASELINE = {
    "spot": {"wall_s": 5.36, "peak_mb": 154.0, "MB/s": 36.8},
    "um_futures": {"wall_s": 6.09, "peak_mb": 154.0, "MB/s": 29.8},
}
FUNDING_VERIFY_BASELINE = {"wall_s": 2.28, "peak_mb": 146.0}
NOOP_VERIFY_BASELINE = {"wall_s": 0.77, "peak_mb": 57.0}


def _klines_dir(root, market: str):
    return root / "data" / MARKETS[market] / "daily" / "klines"


def _funding_dir(root, market: str):
    return root / "data" / MARKETS[market] / "monthly" / "fundingRate"


def _published(directory, interval: str | None = "1m") -> tuple[int, int, int]:
    """(files incl. CHECKSUMs, zips, zip bytes) published under `directory` (one interval)."""
    files = zips = size = 0
    for path in directory.rglob("*"):
        if not path.is_file() or (interval and path.parent.name != interval):
            continue
        files += 1
        if path.name.endswith(".zip"):
            zips += 1
            size += path.stat().st_size
    return files, zips, size


def _forget(ctx: BenchContext, key_prefix: str) -> None:
    db = ctx.data_dir / ".bhds" / "state.sqlite"
    if db.exists():
        with sqlite3.connect(db) as conn:
            try:
                conn.execute("DELETE FROM archive_files WHERE key >= ? AND key < ?", (key_prefix, key_prefix[:-1] + "0"))
            except sqlite3.OperationalError:
                pass


def _wipe(ctx: BenchContext, local_dir, key_prefix: str) -> None:
    shutil.rmtree(local_dir, ignore_errors=True)
    _forget(ctx, key_prefix)


def _unmark(local_dir) -> None:
    for marker in local_dir.rglob("*.verified"):
        marker.unlink()


# The server's own limit, as the baseline measured it: every spot 1m key fetched by a bare aiohttp
# client over 32 connections, bodies discarded, no listing, nothing written.
BARE_TRANSFER = r"""
import asyncio, os, sys, aiohttp
base, root = os.environ["BHDS_AWS_URL"], sys.argv[1]
keys = [os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(os.path.join(root, "data/spot/daily/klines"))
        for f in fs if os.path.basename(d) == "1m"]
async def main():
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as session:
        gate = asyncio.Semaphore(32)
        async def one(key):
            async with gate, session.get(f"{base}/{key}") as response:
                await response.read()
        await asyncio.gather(*(one(k) for k in keys))
asyncio.run(main())
"""
BARE_BASELINE = {"wall_s": 1.66, "peak_mb": 27.0, "files/s": 565.0}


def cases(ctx: BenchContext) -> list[Case]:
    import sys

    shape = (ctx.n_symbols, ctx.n_days)
    out: list[Case] = []
    local = ctx.data_dir / "aws_data"

    spot_files, _, spot_size = _published(_klines_dir(ctx.archive_root, "spot"))
    out.append(Case(
        name="bare transfer of the spot 1m keys (no bhds)",
        argv=[],
        command=[sys.executable, "-c", BARE_TRANSFER, str(ctx.archive_root)],
        units={"files": spot_files, "MB": spot_size / 1e6},
        baseline=BARE_BASELINE if shape == DOWNLOAD_SHAPE else {},
        target="the fake server's limit on this machine, for scale",
    ))

    for market, command in (("spot", "download-spot"), ("um_futures", "download-um-futures")):
        files, zips, size = _published(_klines_dir(ctx.archive_root, market))
        target = _klines_dir(local, market)
        prefix = f"data/{MARKETS[market]}/daily/klines/"
        out.append(Case(
            name=f"aws_kline {command} 1m (cold)",
            argv=["aws_kline", command, "1m", "--concurrency", "32"],
            setup=lambda c, t=target, p=prefix: _wipe(c, t, p),
            units={"files": files, "MB": size / 1e6},
            baseline=DOWNLOAD_BASELINE[market] if shape == DOWNLOAD_SHAPE else {},
            target="≥ 2× legacy files/s at equal concurrency; peak RSS < 200 MB",
        ))

    funding_files, _, funding_size = _published(_funding_dir(ctx.archive_root, "um_futures"), interval=None)
    out.append(Case(
        name="aws_funding download-um-futures (cold)",
        argv=["aws_funding", "download-um-futures", "--concurrency", "32"],
        setup=lambda c: _wipe(c, _funding_dir(local, "um_futures"), "data/futures/um/monthly/fundingRate/"),
        units={"files": funding_files},
        baseline=FUNDING_DOWNLOAD_BASELINE if shape == DOWNLOAD_SHAPE else {},
    ))

    def ensure_spot(c: BenchContext) -> None:
        c.run(["aws_kline", "download-spot", "1m"])

    out.append(Case(
        name="aws_kline download-spot 1m (no-op)",
        argv=["aws_kline", "download-spot", "1m"],
        setup=ensure_spot,
        units={"files": _published(_klines_dir(ctx.archive_root, "spot"))[0]},
        baseline=NOOP_DOWNLOAD_BASELINE if shape == DOWNLOAD_SHAPE else {},
        target="listing only, seconds",
    ))

    for market, command in (("spot", "download-spot"), ("um_futures", "download-um-futures")):
        _, zips, size = _published(_klines_dir(ctx.archive_root, market))
        target = _klines_dir(local, market)

        def prepare(c: BenchContext, cmd=command, t=target) -> None:
            c.run(["aws_kline", cmd, "1m"])
            _unmark(t)

        out.append(Case(
            name=f"aws_kline verify-type-all {market} 1m",
            argv=["aws_kline", "verify-type-all", market, "1m"],
            setup=prepare,
            units={"files": zips, "MB": size / 1e6},
            baseline=VERIFY_BASELINE[market] if shape == VERIFY_SHAPE else {},
            target="≥ 70% of the 2-core hashing limit (~434 MB/s on the baseline machine); peak RSS < 200 MB",
        ))

    # The same files as a bhds.py tree would hold them: no manifest rows (verify hashes every zip
    # either way; a matching SHA-256 is never inflated again).
    _, zips, size = _published(_klines_dir(ctx.archive_root, "spot"))

    def prepare_legacy(c: BenchContext) -> None:
        c.run(["aws_kline", "download-spot", "1m"])
        _unmark(_klines_dir(local, "spot"))
        _forget(c, "data/spot/daily/klines/")

    out.append(Case(
        name="aws_kline verify-type-all spot 1m (legacy tree)",
        argv=["aws_kline", "verify-type-all", "spot", "1m"],
        setup=prepare_legacy,
        units={"files": zips, "MB": size / 1e6},
        baseline=VERIFY_BASELINE["spot"] if shape == VERIFY_SHAPE else {},
        target="hashing only: within 2× of sha256sum on both cores",
    ))

    def prepare_funding(c: BenchContext) -> None:
        c.run(["aws_funding", "download-um-futures"])
        _unmark(_funding_dir(local, "um_futures"))

    out.append(Case(
        name="aws_funding verify-type-all um_futures",
        argv=["aws_funding", "verify-type-all", "um_futures"],
        setup=prepare_funding,
        units={"files": _published(_funding_dir(ctx.archive_root, "um_futures"), interval=None)[1]},
        baseline=FUNDING_VERIFY_BASELINE if shape == VERIFY_SHAPE else {},
    ))
    out.append(Case(
        name="aws_kline verify-type-all spot 1m (no-op)",
        argv=["aws_kline", "verify-type-all", "spot", "1m"],
        setup=ensure_spot,
        units={"files": _published(_klines_dir(ctx.archive_root, "spot"))[1]},
        baseline=NOOP_VERIFY_BASELINE if shape == VERIFY_SHAPE else {},
    ))
    return out
