"""api_data recent-funding commands against the fake Binance."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from bhds.errors import InputError
from bhds.paths import Layout
from bhds.schema import API_FUNDING_SCHEMA, HOUR_MS, PARSED_FUNDING_SCHEMA
from bhds.settings import load_settings
from bhds.storage import read_table, write_table
from bhds.workflows import api_data
from tests.fakebinance import series


@pytest.fixture
def env(bhds_env, fake_binance):
    settings = load_settings()
    return settings, Layout(settings.data_dir), fake_binance


def expected(fake, market: str, symbol: str, newest: int) -> pa.Table:
    """The fake's newest `newest` settlements as an API funding table."""
    spec = fake.universe.spec(market, symbol)
    keep = series.funding(spec, 0, fake.universe.now_ms + 1, now_ms=fake.universe.now_ms)[-newest:]
    times = pa.array([t for t, *_ in keep], pa.int64())
    stamp = API_FUNDING_SCHEMA.field(0).type
    return pa.Table.from_arrays([times.cast(stamp), pa.array([t - t % HOUR_MS for t, *_ in keep]).cast(stamp),
                                 pa.array([r for _, _, r, _ in keep], pa.float64())], schema=API_FUNDING_SCHEMA)


def local_funding_dirs(layout: Layout, tt: str, symbols: list[str]) -> None:
    for symbol in symbols:
        layout.aws_funding_dir(tt, symbol).mkdir(parents=True, exist_ok=True)


def test_type_fetches_every_local_symbol_and_skips_invalid_ones(env):
    settings, layout, fake = env
    local_funding_dirs(layout, "um_futures", ["BTCUSDT", "ETHUSDT", "WAVESUSDT", "BTCUSDT_250328", "GHOSTUSDT"])
    summary = api_data.download_recent_funding_type(settings, trade_type="um_futures")
    assert summary.failed == 0
    assert summary.notes["symbols"] == 5 and summary.notes["filled"] == 3 and summary.notes["empty"] == 1
    assert summary.notes["invalid_symbols"] == "GHOSTUSDT" and summary.skipped == 1
    for symbol in ("BTCUSDT", "ETHUSDT", "WAVESUSDT"):  # ETHUSDT pays every 4 h since 2024-12-29
        got = read_table(layout.api_funding_file("um_futures", symbol))
        assert got.equals(expected(fake, "um", symbol, 200)), symbol
    assert not layout.api_funding_file("um_futures", "BTCUSDT_250328").exists()  # a delivery contract
    assert fake.stats.requests["/fapi/v1/fundingRate"] == 5


def test_named_invalid_symbol_is_a_failure_and_cm_sizes_are_cached(env):
    settings, layout, fake = env
    # A name neither Binance nor the local store knows is a typo: exit 2, after the others are fetched.
    with pytest.raises(InputError) as refused:
        api_data.download_recent_funding(settings, trade_type="cm_futures", symbols=["ETHUSD_PERP", "NOPEUSD_PERP"])
    assert refused.value.exit_code == 2 and "'NOPEUSD_PERP'" in refused.value.message
    # One the local archive has (delisted since) stays a failed item.
    layout.aws_funding_dir("cm_futures", "NOPEUSD_PERP").mkdir(parents=True)
    summary = api_data.download_recent_funding(settings, trade_type="cm_futures", symbols=["ETHUSD_PERP", "NOPEUSD_PERP"])
    assert summary.failed == 1 and summary.failures == ["NOPEUSD_PERP: Binance does not know this symbol (Invalid symbol.)"]
    assert read_table(layout.api_funding_file("cm_futures", "ETHUSD_PERP")).equals(expected(fake, "cm", "ETHUSD_PERP", 200))
    sizes = json.loads(layout.cache_file("cm_contract_sizes.json").read_text())
    assert sizes["BTCUSD_PERP"] == 100.0 and sizes["ETHUSD_PERP"] == 10.0
    # a size Binance no longer lists survives the next refresh
    sizes["OLDUSD_201225"] = 10.0
    layout.cache_file("cm_contract_sizes.json").write_text(json.dumps(sizes))
    api_data.download_recent_funding(settings, trade_type="cm_futures", symbols=["BTCUSD_PERP"])
    assert json.loads(layout.cache_file("cm_contract_sizes.json").read_text())["OLDUSD_201225"] == 10.0


def test_the_gap_back_to_the_archive_is_bridged(env):
    settings, layout, fake = env
    fake.faults.funding_recent = 10  # an open-ended call returns only the newest 10
    spec = fake.universe.spec("um", "BTCUSDT")
    archive = series.funding(spec, 0, fake.universe.now_ms + 1, now_ms=fake.universe.now_ms)[:6]
    stamp = PARSED_FUNDING_SCHEMA.field(0).type
    times = [t for t, *_ in archive]
    write_table(pa.Table.from_arrays([pa.array(times).cast(stamp), pa.array([8] * 6), pa.array([r for _, _, r, _ in archive]),
                                      pa.array([t - t % HOUR_MS for t in times]).cast(stamp)], schema=PARSED_FUNDING_SCHEMA),
                layout.parsed_funding_file("um_futures", "BTCUSDT"))
    summary = api_data.download_recent_funding(settings, trade_type="um_futures", symbols=["BTCUSDT"])
    assert summary.failed == 0
    got = read_table(layout.api_funding_file("um_futures", "BTCUSDT"))
    every = series.funding(spec, 0, fake.universe.now_ms + 1, now_ms=fake.universe.now_ms)
    assert got.num_rows == len(every) - 6  # from the first settlement after the archive's last one
    assert got.column("funding_time").cast(pa.int64()).to_pylist() == [t for t, *_ in every[6:]]
    assert fake.stats.requests["/fapi/v1/fundingRate"] == 2


def test_spot_has_no_funding_and_no_local_symbols_is_not_an_error(env):
    settings, layout, fake = env
    with pytest.raises(InputError) as info:
        api_data.download_recent_funding_type(settings, trade_type="spot")
    assert info.value.exit_code == 2 and "spot has no funding rates" in str(info.value)
    summary = api_data.download_recent_funding_type(settings, trade_type="cm_futures")
    assert summary.failed == 0 and summary.notes["symbols"] == 0
    assert fake.stats.total_requests == 0


def test_funding_bucket_is_paced_not_burst(env):
    """A (shrunk) funding bucket of 6 requests per second, 7 symbols, 8 workers: no 429."""
    import time

    from bhds.api.connect import ApiOptions
    from bhds.api.ratelimit import Budget

    settings, layout, fake = env
    fake.faults.funding_budget = 6
    fake.faults.funding_window = 1.0
    symbols = ["BTCUSDT", "ETHUSDT", "1000PEPEUSDT", "BTCDOMUSDT", "ETHBTC", "BTCUSDC", "WAVESUSDT"] * 2
    started = time.monotonic()
    summary = api_data.download_recent_funding(settings, trade_type="um_futures", symbols=symbols,
                                               api=ApiOptions(funding_budget=Budget(6, 1.0)))
    assert summary.failed == 0 and summary.notes["symbols"] == 7 and summary.files == 7  # duplicates asked once
    assert fake.stats.sent_429 == 0 and fake.stats.requests["/fapi/v1/fundingRate"] == 7
    assert time.monotonic() - started >= 1.0  # half the bucket at once, the rest as it refills
