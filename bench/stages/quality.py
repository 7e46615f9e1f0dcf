"""Quality stage: `quality report spot 1m` on a synthetic store of 200 symbols × 5 years of 1m klines.

The store is written here (not by the pipeline), once, under `<work>/quality-store-2`: 60 distinct
monthly partitions (2020-01 .. 2024-12, ~44,000 rows each, written as parse writes them: numeric
encodings, zstd, the month summary in the footer) hard-linked into every symbol (12,000 partitions, 526 M candles), two API day files per
symbol, one results file per symbol, and a daily zip + .CHECKSUM + .verified per symbol-day
(365,400 zips; empty hard links: the report only lists them). Every 10th symbol gets its own
partitions with a 90-minute hole per day and a zero-volume run, so not every file is the same.

Cases: cold (no cache: footers, listings and the 200 months with API days decoded), cold --deep
(every partition decoded: the cost on a store parse did not write, e.g. one bhds.py wrote), warm
(the per-month cache is valid), warm with the heatmap, and, when an earlier stage of the same run
parsed the bench pipeline's store, the report on that store.
"""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path

from bench.harness import REPO, BenchContext, Case

N_SYMBOLS = 200
FIRST_MONTH, N_MONTHS = (2020, 1), 60
DAY_MS, MIN_MS = 86_400_000, 60_000


def _months() -> list[tuple[int, int]]:
    year, month = FIRST_MONTH
    out = []
    for _ in range(N_MONTHS):
        out.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def _month_table(year: int, month: int, *, holey: bool, seed: int):
    import numpy as np
    import pyarrow as pa

    from bhds.schema import KLINE_SCHEMA

    start = np.datetime64(date(year, month, 1), "ms").astype(np.int64)
    end = np.datetime64(date(year + month // 12, month % 12 + 1, 1), "ms").astype(np.int64)
    ts = np.arange(start, end, MIN_MS, dtype=np.int64)
    if holey:  # 02:00-03:29 missing every day
        minute = ts % DAY_MS // MIN_MS
        ts = ts[(minute < 120) | (minute >= 210)]
    rng = np.random.default_rng(seed)
    n = len(ts)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n))), 2)
    open_ = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(open_, close) + np.round(rng.random(n) * 0.05, 2)
    low = np.minimum(open_, close) - np.round(rng.random(n) * 0.05, 2)
    volume = np.round(rng.random(n) * 10, 3)
    if holey:
        volume[1000:1030] = 0.0
    quote = volume * close
    arrays = [pa.array(ts).cast(pa.timestamp("ms", tz="UTC")), open_, high, low, close, volume, quote,
              rng.integers(0, 100, n), volume / 2, quote / 2]
    return pa.Table.from_arrays([pa.array(a) if not isinstance(a, pa.Array) else a for a in arrays], schema=KLINE_SCHEMA)


def _link(src: Path, dst: Path) -> None:
    if not dst.exists():
        os.link(src, dst)


def build_store(root: Path, n_symbols: int = N_SYMBOLS) -> Path:
    """Write the synthetic store under `root` (reused when complete); return its CRYPTO_BASE_DIR. Takes a minute or two."""
    done = root / "complete"
    if done.exists():
        return root
    sys.path.insert(0, str(REPO))
    import numpy as np
    import pyarrow.parquet as pq

    from bhds.paths import Layout
    from bhds.quality import footer
    from bhds.storage import write_table_numeric
    from bhds.types import TradeType

    layout = Layout(root / "binance_data")
    tt = TradeType.spot
    months = _months()
    shared = root / "shared"
    shared.mkdir(parents=True, exist_ok=True)
    masters: dict[tuple[bool, int, int], Path] = {}
    for holey in (False, True):
        for i, (year, month) in enumerate(months):
            path = shared / f"{'holey' if holey else 'clean'}-{year:04d}{month:02d}.pqt"
            if not path.exists():
                write_table_numeric(footer.with_summary(_month_table(year, month, holey=holey, seed=i), "1m", {}), path)
            masters[(holey, year, month)] = path
    last = months[-1]
    api_days = [date(last[0], last[1], 30), date(last[0], last[1], 31)]
    first_day = np.datetime64(date(*FIRST_MONTH, 1), "D")
    n_days = int((np.datetime64(date(last[0] + last[1] // 12, last[1] % 12 + 1, 1), "D") - first_day).astype(int))
    day_names = [str(first_day + i) for i in range(n_days)]
    for k in range(n_symbols):
        symbol = f"S{k:03d}USDT"
        holey = k % 10 == 0
        parsed = layout.parsed_kline_dir(tt, symbol, "1m")
        parsed.mkdir(parents=True, exist_ok=True)
        for year, month in months:
            _link(masters[(holey, year, month)], layout.parsed_kline_partition(tt, symbol, "1m", year, month))
        api = layout.api_kline_dir(tt, symbol, "1m")
        api.mkdir(parents=True, exist_ok=True)
        full = pq.read_table(masters[(holey, *last)])
        for day in api_days:
            target = layout.api_kline_day_file(tt, symbol, "1m", day)
            if not target.exists():
                lo = np.datetime64(day, "ms").astype(np.int64)
                times = full.column(0).cast("int64").to_numpy()
                pq.write_table(full.filter((times >= lo) & (times < lo + DAY_MS)), target, compression="zstd")
        results = layout.results_kline_dir(tt, "1m")
        results.mkdir(parents=True, exist_ok=True)
        _link(masters[(holey, *last)], layout.results_kline_file(tt, "1m", symbol))
        aws = layout.aws_kline_dir(tt, symbol, "1m")
        aws.mkdir(parents=True, exist_ok=True)
        empty = shared / f"empty-{symbol}"  # one inode per symbol: a file may have at most 65,000 links
        empty.touch()
        for day in day_names:
            name = f"{symbol}-1m-{day}.zip"
            for suffix in ("", ".CHECKSUM", ".verified"):
                _link(empty, aws / (name + suffix))
    done.touch()
    return root


def _command(store: Path, *args: str) -> list[str]:
    return ["env", f"CRYPTO_BASE_DIR={store}", sys.executable, str(REPO / "bhds.py"), "quality", "report", "spot", "1m", *args]


def _cache(store: Path) -> Path:
    return store / "binance_data" / ".bhds" / "cache" / "quality-spot-1m.json"


def cases(ctx: BenchContext) -> list[Case]:
    store = build_store(ctx.work.parent / "quality-store-2")
    candles = N_SYMBOLS * 1440 * sum(_days_in(y, m) for y, m in _months())
    units = {"symbols": N_SYMBOLS, "partitions": N_SYMBOLS * N_MONTHS, "M candles": candles / 1e6}
    report = str(store / "report.txt")

    def cold(_: BenchContext) -> None:
        _cache(store).unlink(missing_ok=True)

    def warm(_: BenchContext) -> None:
        if not _cache(store).exists():
            import subprocess

            subprocess.run(_command(store, "-o", report), env=ctx.env, check=False, capture_output=True)

    out = [
        Case("report cold, 200 sym x 5 y 1m", _command(store, "-o", report)[4:], setup=cold, units=units,
             target="< 10 s", command=_command(store, "-o", report)),
        Case("report cold --deep (every file decoded)", _command(store, "-o", report, "--deep")[4:], setup=cold, units=units,
             command=_command(store, "-o", report, "--deep")),
        Case("report warm (cache valid)", _command(store, "-o", report)[4:], setup=warm, units=units,
             target="< 10 s", command=_command(store, "-o", report)),
        Case("report warm + --plot", _command(store, "-o", report, "--plot", str(store / "quality.png"))[4:], setup=warm,
             units=units, command=_command(store, "-o", report, "--plot", str(store / "quality.png"))),
    ]
    if (ctx.data_dir / "parsed_data" / "spot" / "klines").is_dir():
        out.append(Case("report on the pipeline store (cold)", ["quality", "report", "spot", "1m"],
                        setup=lambda c: _cache(c.data_root).unlink(missing_ok=True)))
    return out


def _days_in(year: int, month: int) -> int:
    import calendar

    return calendar.monthrange(year, month)[1]
