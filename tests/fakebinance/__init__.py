"""A fake Binance for tests and benchmarks: a synthetic data.binance.vision archive on disk and
an aiohttp server on 127.0.0.1 serving it (S3 V1 listing + objects) together with the spot,
USDⓈ-M and COIN-M REST endpoints built from the same deterministic series. It never imports
`bhds`.

    from tests.fakebinance import build_archive, default_universe, start_in_thread
    build_archive(default_universe(), root)            # S3 keys under root/, plus universe.json
    with start_in_thread(root) as fake:                # free port, own loop in a daemon thread
        os.environ.update(fake.env)                    # BHDS_AWS_URL, BHDS_{SPOT,UM,CM}_API_URL
        fake.faults.error_rate = 0.05                  # fault switches, see server.Faults
        ... fake.stats.sent_429 ...                    # counters, see server.Stats

Command line: `python -m tests.fakebinance --root DIR --port N [--build default|bench]`.

The default universe (seed 20250113; now = 2025-01-13T12:34:56.789Z; archive days
2024-12-25..2025-01-10, i.e. before now − 2 days; 2025-01-11..13 exist on REST only):

spot  BTCUSDT     hole 2025-01-02 02:00-03:30 (no bars anywhere)
      ETHUSDT     archive misses 2024-12-28, 2025-01-03, 2025-01-04 (REST has them)
      BTCUSDC     archive file of 2025-01-07 stops at 07:36 (REST has the whole day)
      ETHBTC, BTCFDUSD, USDCUSDT (stablecoin, tiny moves), BTCUPUSDT (leveraged), JUPUSDT
      WAVESUSDT   delisted: last day 2025-01-05, ends 03:00 (exchangeInfo status BREAK)
      PENGUUSDT   listed 2024-12-30 08:00
      LUNAUSDT    halted 2025-01-02 00:00 .. 2025-01-05 00:00, then prices × 1.35
um    BTCUSDT, 1000PEPEUSDT, BTCDOMUSDT (INDEX), ETHBTC, BTCUSDC: perpetuals, funding every 8 h
      ETHUSDT     funding 8 h until 2024-12-28, 4 h from 2024-12-29; archive misses 2025-01-02
      WAVESUSDT   delisted like spot (funding stops)
      BTCUSDT_250328  delivery, no funding
cm    BTCUSD_PERP (contract 100 USD), ETHUSD_PERP (10 USD; archive misses 2025-01-08): funding 8 h
      BTCUSD_250328   delivery
liquidationSnapshot: um BTCUSDT, ETHUSDT; cm BTCUSD_PERP, ETHUSD_PERP (daily).
fundingRate monthly files: 2024-12 only (January is not complete before the cutoff).

Every other dataset (trades, aggTrades, markPriceKlines, bookDepth, metrics ...), daily and
monthly files side by side, comes from `build_datasets(datasets_universe(), root)`: see
tests/fakebinance/datasets.py.
"""

from .archive import (
    ArchiveSummary,
    build_archive,
    corrupt_zip_keep_checksum,
    corrupt_zip_with_valid_checksum,
    funding_key,
    kline_key,
    liquidation_key,
    load_universe,
    read_member,
    remove_checksum,
    remove_key,
    reupload,
    reupload_corrected_hour,
)
from .datasets import SHAPES, build_datasets, dataset_key, datasets_of, datasets_universe, day_lines, file_csv
from .series import day_bars, funding, funding_rows, kline_bars, klines, klines_table
from .server import FakeBinance, Faults, RunningFake, Stats, env_for, start_in_thread
from .universe import SymbolSpec, Universe, bench_universe, default_universe

__all__ = [
    "SHAPES", "build_datasets", "dataset_key", "datasets_of", "datasets_universe", "day_lines", "file_csv",
    "ArchiveSummary", "FakeBinance", "Faults", "RunningFake", "Stats", "SymbolSpec", "Universe",
    "bench_universe", "build_archive", "corrupt_zip_keep_checksum", "corrupt_zip_with_valid_checksum",
    "day_bars", "default_universe", "env_for", "funding", "funding_key", "funding_rows", "kline_bars",
    "kline_key", "klines", "klines_table", "liquidation_key", "load_universe", "read_member",
    "remove_checksum", "remove_key", "reupload", "reupload_corrected_hour", "start_in_thread",
]
