"""Generate stage: `generate kline-type` and `resample-type`, and bare pyarrow read+write for scale.

Prerequisites, untimed, once: the archive's 1m kline zips (spot, USDⓈ-M) and USDⓈ-M funding zips
are hard-linked into the data directory's `aws_data` with `.verified` markers and parsed with
`aws_kline parse-type-all` / `aws_funding parse-type-all`; the archive-missing days the fake REST
API has are written as API day files (what `api_data` would leave) when none are there yet.
Each timed repetition starts without the output tree, as the legacy figures did.

Run as a script (`python bench/stages/generate.py bare-kline|bare-resample ...`) it is the bare
pyarrow reference: the same files read and the same number of rows written with the same Parquet
settings as bhds (`storage.numeric_encodings`), no computing, on CRYPTO_NJOBS processes.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.harness import BenchContext, Case  # noqa: E402

SEGMENTS = {"spot": "spot", "um_futures": "futures/um"}
MARKET_OF = {"spot": "spot", "um_futures": "um"}
# bhds.py on the 2-core machine kind, 10 symbols × 365 days 1m (shared/bench-baseline.md).
BASELINE = {
    "kline spot": {"wall_s": 8.67, "peak_mb": 726.0},
    "kline um_futures": {"wall_s": 10.14, "peak_mb": 705.0},
    "resample spot 1h 5m": {"wall_s": 5.48, "peak_mb": 421.0},
    "resample spot 5m 0m": {"wall_s": 4.69, "peak_mb": 427.0},
    "resample um_futures 1h 5m": {"wall_s": 6.58, "peak_mb": 451.0},
    "resample um_futures 5m 0m": {"wall_s": 4.05, "peak_mb": 451.0},
}
KLINE_FLAGS = {"spot": ["--split-gaps", "--with-vwap", "--no-with-funding-rates"], "um_futures": ["--split-gaps", "--with-vwap", "--with-funding-rates"]}


# ---- prerequisites ----

def _link(src: Path, dst: Path) -> None:
    if dst.exists() or not src.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _mirror(ctx: BenchContext, trade_type: str, kind: str) -> None:
    """Hard-link `<market>/<kind>` zips (1m only for klines) into aws_data, marked verified."""
    source = ctx.archive_root / "data" / SEGMENTS[trade_type] / kind
    target = ctx.data_dir / "aws_data" / "data" / SEGMENTS[trade_type] / kind
    for zip_path in sorted(source.rglob("*.zip")):
        if kind.endswith("klines") and zip_path.parent.name != "1m":
            continue
        dest = target / zip_path.relative_to(source)
        _link(zip_path, dest)
        _link(zip_path.with_name(zip_path.name + ".CHECKSUM"), dest.with_name(dest.name + ".CHECKSUM"))
        dest.with_name(dest.name + ".verified").touch()


def _write_api_days(ctx: BenchContext, trade_type: str) -> int:
    """API day files for the days the archive lacks, from the fake REST API's own series."""
    import numpy as np
    import pyarrow as pa

    from bhds.paths import Layout
    from bhds.schema import KLINE_SCHEMA
    from bhds.storage import write_table
    from tests.fakebinance import series
    from tests.fakebinance.universe import DAY_MS, Universe, day_ms

    universe = Universe.from_json((ctx.archive_root / "universe.json").read_text())
    layout = Layout(ctx.data_dir)
    written = 0
    for spec in universe.symbols:
        if spec.market != MARKET_OF[trade_type]:
            continue
        for day in spec.archive_missing_days:
            path = layout.api_kline_day_file(trade_type, spec.symbol, "1m", day)
            if path.exists():
                continue
            raw = series.klines(spec, "1m", day_ms(day), day_ms(day) + DAY_MS)
            columns = [raw["open_time"], raw["open"], raw["high"], raw["low"], raw["close"], raw["volume"], raw["quote_volume"],
                       raw["count"], raw["taker_buy_volume"], raw["taker_buy_quote_volume"]]
            table = pa.Table.from_arrays([pa.array(np.asarray(c), type=f.type) for c, f in zip(columns, KLINE_SCHEMA)], schema=KLINE_SCHEMA)
            write_table(table, path)
            written += 1
    return written


def _prepare(ctx: BenchContext) -> None:
    for trade_type in SEGMENTS:
        _mirror(ctx, trade_type, "daily/klines")
        ctx.run(["aws_kline", "parse-type-all", trade_type, "1m"])
        _write_api_days(ctx, trade_type)
    _mirror(ctx, "um_futures", "monthly/fundingRate")
    ctx.run(["aws_funding", "parse-type-all", "um_futures"])


# ---- setups ----

def _results_dir(ctx: BenchContext, trade_type: str) -> Path:
    return ctx.data_dir / "results_data" / trade_type / "klines" / "1m"


def _fresh_klines(trade_type: str):
    def setup(ctx: BenchContext) -> None:
        shutil.rmtree(_results_dir(ctx, trade_type), ignore_errors=True)
    return setup


def _fresh_resample(trade_type: str, interval: str):
    def setup(ctx: BenchContext) -> None:
        if not _results_dir(ctx, trade_type).is_dir():
            ctx.run(["generate", "kline-type", trade_type, "1m", *KLINE_FLAGS[trade_type]])
        shutil.rmtree(ctx.data_dir / "results_data" / trade_type / "resampled_klines" / interval, ignore_errors=True)
        shutil.rmtree(ctx.work / "bare-out", ignore_errors=True)
    return setup


def _fresh_bare(ctx: BenchContext) -> None:
    shutil.rmtree(ctx.work / "bare-out", ignore_errors=True)


def cases(ctx: BenchContext) -> list[Case]:
    _prepare(ctx)
    rows = ctx.n_symbols * ctx.n_days * 1440  # rows in (a slight over-count: listing, delisting, holes)
    out: list[Case] = []
    for trade_type in SEGMENTS:
        base = BASELINE[f"kline {trade_type}"]
        out.append(Case(
            name=f"kline-type {trade_type} 1m",
            argv=["generate", "kline-type", trade_type, "1m", *KLINE_FLAGS[trade_type]],
            setup=_fresh_klines(trade_type),
            units={"rows": rows},
            baseline=base,
            target=f"≤ {base['wall_s'] / 3:.2f} s (3× legacy), ≤ 1.5× bare read+write, peak ≤ {base['peak_mb']:.0f} MB",
        ))
        out.append(Case(
            name=f"bare read+write, kline {trade_type}",
            argv=[],
            command=[sys.executable, __file__, "bare-kline", str(ctx.data_dir / "parsed_data" / trade_type / "klines"), str(ctx.work / "bare-out")],
            setup=_fresh_bare,
            units={"rows": rows},
            target="reference for kline-type",
        ))
    for trade_type, interval, offset in (("spot", "1h", "5m"), ("spot", "5m", "0m"), ("um_futures", "1h", "5m"), ("um_futures", "5m", "0m")):
        base = BASELINE[f"resample {trade_type} {interval} {offset}"]
        out.append(Case(
            name=f"resample-type {trade_type} {interval} {offset}",
            argv=["generate", "resample-type", trade_type, interval, offset],
            setup=_fresh_resample(trade_type, interval),
            units={"rows": rows},
            baseline=base,
            target=f"≤ {base['wall_s'] / 3:.2f} s (3× legacy), ≤ 1.5× bare read+write, peak ≤ {base['peak_mb']:.0f} MB",
        ))
        if trade_type == "spot":
            per_window = {"1h": 60, "5m": 5}[interval]
            n_offsets = 12 if offset == "5m" else 1
            out.append(Case(
                name=f"bare read+write, resample {trade_type} {interval} {offset}",
                argv=[],
                command=[sys.executable, __file__, "bare-resample", str(_results_dir(ctx, trade_type)), str(ctx.work / "bare-out"), str(per_window), str(n_offsets)],
                setup=_fresh_resample(trade_type, interval),
                units={"rows": rows},
                target=f"reference for resample-type {interval} {offset}",
            ))
    return out


# ---- the bare pyarrow reference (run as a script) ----

def _bare_kline(task: tuple[list[str], str]) -> int:
    """Read one symbol's partitions, write one table of the same rows plus a VWAP-sized column."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from bhds.storage import numeric_write_options

    pa.set_cpu_count(1)
    paths, out = task
    table = pa.concat_tables([pq.read_table(p) for p in paths])
    table = table.append_column("avg", pc.divide(table["quote_volume"], table["volume"]))
    pq.write_table(table, out, **numeric_write_options(table.schema))
    return table.num_rows


def _bare_resample(task: tuple[str, str, int, int]) -> int:
    """Read one 1m results file, write `n_offsets` tables of every `per_window`-th row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bhds.storage import NUMERIC_COMPRESSION_LEVEL, numeric_encodings

    pa.set_cpu_count(1)
    path, out, per_window, n_offsets = task
    table = pq.read_table(path)
    for k in range(n_offsets):
        pq.write_table(table.take(pa.array(range(k, table.num_rows, per_window))), f"{out}.{k}.pqt", compression="zstd",
                       compression_level=NUMERIC_COMPRESSION_LEVEL, use_dictionary=False, column_encoding=numeric_encodings(table.schema))
    return table.num_rows


def _main(argv: list[str]) -> int:
    import multiprocessing

    mode, source, out = argv[0], Path(argv[1]), Path(argv[2])
    out.mkdir(parents=True, exist_ok=True)
    jobs = int(os.environ.get("CRYPTO_NJOBS", "2"))
    if mode == "bare-kline":
        func, tasks = _bare_kline, [([str(p) for p in sorted((d / "1m").glob("*.pqt"))], str(out / f"{d.name}.pqt")) for d in sorted(source.iterdir()) if (d / "1m").is_dir()]
    else:
        func, tasks = _bare_resample, [(str(p), str(out / p.stem), int(argv[3]), int(argv[4])) for p in sorted(source.glob("*.pqt"))]
    with multiprocessing.get_context("forkserver").Pool(jobs) as pool:
        print(sum(pool.imap_unordered(func, tasks)))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))

