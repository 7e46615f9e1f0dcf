"""Parse stage: `aws_kline parse-type-all` cold and no-op, funding, and a bare pyarrow read for scale.

Before timing, the archive's kline and funding zips are hard-linked into the data directory's
`aws_data` mirror and marked verified (what download + verify would leave), so this stage does
not depend on the archive stage.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
from pathlib import Path

from bench.harness import BenchContext, Case

MARKETS = {"spot": "spot", "um_futures": "futures/um", "cm_futures": "futures/cm"}
# bhds.py on the 2-core machine kind, 10 symbols × 365 days (shared/bench-baseline.md).
BASELINE = {
    "spot": {"wall_s": 209.0, "peak_mb": 707.0},
    "um_futures": {"wall_s": 243.0, "peak_mb": 682.0},
    "cm_futures": {"wall_s": 254.0, "peak_mb": 677.0},
}
NOOP_BASELINE = {"wall_s": 2.88, "peak_mb": 180.0}
FUNDING_BASELINE = {"wall_s": 2.62, "peak_mb": 169.0}

# A bare read of the same CSV bytes: unzip in memory, pyarrow read_csv with typed columns, nothing
# written, the files split over two processes (the baseline's "physical limit" row).
BARE_READ = r"""
import sys, zipfile, multiprocessing
from pathlib import Path
def work(paths):
    import pyarrow as pa, pyarrow.csv as pcsv
    pa.set_cpu_count(1)
    names = [f"c{i}" for i in range(12)]
    types = {n: (pa.int64() if i in (0, 6, 8, 11) else pa.float64()) for i, n in enumerate(names)}
    rows = 0
    for p in paths:
        with zipfile.ZipFile(p) as z:
            data = z.read(z.namelist()[0])
        skip = 0 if data[:1].isdigit() else 1
        t = pcsv.read_csv(pa.py_buffer(data), read_options=pcsv.ReadOptions(column_names=names, skip_rows=skip, use_threads=False),
                          convert_options=pcsv.ConvertOptions(column_types=types))
        rows += t.num_rows
    return rows
if __name__ == "__main__":
    files = sorted(Path(sys.argv[1]).rglob("*.zip"))
    with multiprocessing.get_context("fork").Pool(2) as pool:  # -c scripts cannot be re-imported by spawn/forkserver
        print(sum(pool.map(work, [files[0::2], files[1::2]])))
"""


def _mirror(ctx: BenchContext, market: str, kind: str) -> tuple[int, int]:
    """Hard-link the archive's `<market>/<kind>` zips into aws_data with .verified markers; (files, bytes)."""
    source = ctx.archive_root / "data" / MARKETS[market] / kind
    target = ctx.data_dir / "aws_data" / "data" / MARKETS[market] / kind
    files = size = 0
    for zip_path in sorted(source.rglob("*.zip")):
        if kind.endswith("klines") and zip_path.parent.name != "1m":
            continue
        dest = target / zip_path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        for src, dst in ((zip_path, dest), (zip_path.with_name(zip_path.name + ".CHECKSUM"), dest.with_name(dest.name + ".CHECKSUM"))):
            if src.exists() and not dst.exists():
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)
        dest.with_name(dest.name + ".verified").touch()
        files += 1
        size += zip_path.stat().st_size
    return files, size


def _forget(ctx: BenchContext, table: str, trade_type: str) -> None:
    db = ctx.data_dir / ".bhds" / "state.sqlite"
    if not db.exists():
        return
    with sqlite3.connect(db) as conn:
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone()
        if exists:
            conn.execute(f"DELETE FROM {table} WHERE trade_type = ?", (trade_type,))


def _cold_klines(trade_type: str):
    def setup(ctx: BenchContext) -> None:
        shutil.rmtree(ctx.data_dir / "parsed_data" / trade_type / "klines", ignore_errors=True)
        _forget(ctx, "parsed_kline_sources", trade_type)
    return setup


def _ensure_parsed(trade_type: str):
    def setup(ctx: BenchContext) -> None:
        ctx.run(["aws_kline", "parse-type-all", trade_type, "1m"])
    return setup


def _cold_funding(trade_type: str):
    def setup(ctx: BenchContext) -> None:
        shutil.rmtree(ctx.data_dir / "parsed_data" / trade_type / "funding", ignore_errors=True)
        _forget(ctx, "parsed_funding_sources", trade_type)
    return setup


def cases(ctx: BenchContext) -> list[Case]:
    sizes = {market: _mirror(ctx, market, "daily/klines") for market in MARKETS}
    _mirror(ctx, "um_futures", "monthly/fundingRate")
    rows_per_file = 1440  # 1m daily files (a few partial days make this a slight over-count)
    out = []
    for market in MARKETS:
        files, size = sizes[market]
        if not files:
            continue
        base = BASELINE[market]
        out.append(Case(
            name=f"parse-type-all {market} 1m (cold)",
            argv=["aws_kline", "parse-type-all", market, "1m"],
            setup=_cold_klines(market),
            units={"files": files, "rows": files * rows_per_file, "MB zip": size / 1e6},
            baseline=base,
            target=f"≤ {base['wall_s'] / 10:.0f} s (10× legacy), ≤ 2× bare read, peak ≤ {base['peak_mb']:.0f} MB",
        ))
    out.append(Case(
        name="parse-type-all spot 1m (no-op)",
        argv=["aws_kline", "parse-type-all", "spot", "1m"],
        setup=_ensure_parsed("spot"),
        baseline=NOOP_BASELINE,
        target="< 2 s",
    ))
    out.append(Case(
        name="bare pyarrow read, 2 processes (spot)",
        argv=[],
        command=[sys.executable, "-c", BARE_READ, str(ctx.data_dir / "aws_data" / "data" / "spot" / "daily" / "klines")],
        units={"files": sizes["spot"][0]},
        target="reference: parse should be within 2× of this",
    ))
    out.append(Case(
        name="funding parse-type-all um_futures (cold)",
        argv=["aws_funding", "parse-type-all", "um_futures"],
        setup=_cold_funding("um_futures"),
        baseline=FUNDING_BASELINE,
    ))
    return out
