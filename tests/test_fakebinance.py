"""The fake Binance holds to the real one: listing protocol, file formats, REST, fault switches.

Everything here talks to the server with a plain aiohttp client, never through bhds.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import subprocess
import sys
import time
import zipfile
from datetime import date, timedelta
from pathlib import Path
from xml.etree import ElementTree as ET

import aiohttp
import numpy as np
import pytest
import yarl

from tests.fakebinance import (
    build_archive,
    corrupt_zip_keep_checksum,
    corrupt_zip_with_valid_checksum,
    default_universe,
    funding_key,
    kline_key,
    klines,
    read_member,
    remove_checksum,
    reupload,
    start_in_thread,
)
from tests.fakebinance.archive import archive_days, complete_months
from tests.fakebinance.series import _funding_day, minute_mask
from tests.fakebinance.universe import DAY_MS, Universe, bench_universe, day_ms

NS = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
REAL_DIR = Path(__file__).parent / "data" / "real" / "spot" / "daily" / "klines" / "BTCUSDT" / "1m"
U = default_universe()


# ---- a tiny client -----------------------------------------------------------------------

def run(coro):
    return asyncio.run(coro)


async def fetch(url, params=None, **kw):
    """(status, headers, body bytes) of one GET."""
    async with aiohttp.ClientSession() as s:
        async with s.get(url, params=params, **kw) as r:
            return r.status, r.headers, await r.read()


def get(url, params=None, **kw):
    return run(fetch(url, params, **kw))


def get_json(url, params=None):
    status, headers, body = get(url, params)
    return status, headers, json.loads(body)


def parse_listing(body: bytes) -> dict:
    root = ET.fromstring(body)
    assert root.tag == "{%s}ListBucketResult" % NS["s3"]
    text = lambda tag: root.findtext(f"s3:{tag}", namespaces=NS)  # noqa: E731
    return {
        "name": text("Name"), "prefix": text("Prefix"), "marker": text("Marker"), "max_keys": text("MaxKeys"),
        "delimiter": text("Delimiter"), "truncated": text("IsTruncated"), "next_marker": text("NextMarker"),
        "prefixes": [p.text for p in root.findall("s3:CommonPrefixes/s3:Prefix", NS)],
        "contents": [{c.tag.split("}")[1]: c.text for c in e} for e in root.findall("s3:Contents", NS)],
    }


def list_all(aws_url: str, prefix: str, *, use_next_marker: bool = True) -> tuple[list[str], list[dict]]:
    """Page through a directory; returns (entries in order, pages)."""
    async def go():
        entries, pages, marker = [], [], None
        async with aiohttp.ClientSession() as s:
            while True:
                params = {"delimiter": "/", "prefix": prefix}
                if marker:
                    params["marker"] = marker
                async with s.get(aws_url, params=params) as r:
                    assert r.status == 200
                    page = parse_listing(await r.read())
                pages.append(page)
                names = page["prefixes"] + [c["Key"] for c in page["contents"]]
                entries.extend(sorted(names))
                if page["truncated"] == "false":
                    return entries, pages
                marker = page["next_marker"] if use_next_marker and page["next_marker"] else max(names)
    return run(go())


def csv_rows(data: bytes) -> list[list[str]]:
    lines = data.decode().split("\n")
    assert lines[-1] == ""
    return [line.split(",") for line in lines[:-1]]


# ---- listing -------------------------------------------------------------------------------

def test_listing_a_directory_gives_common_prefixes(fake_binance):
    status, headers, body = get(fake_binance.aws_url, {"delimiter": "/", "prefix": "data/spot/daily/klines/"})
    assert status == 200 and headers["Content-Type"].startswith("application/xml")
    page = parse_listing(body)
    assert page["name"] == "data.binance.vision"
    assert page["prefix"] == "data/spot/daily/klines/"
    assert page["max_keys"] == "1000" and page["delimiter"] == "/" and page["truncated"] == "false"
    assert page["next_marker"] is None and page["contents"] == []
    symbols = [p.split("/")[-2] for p in page["prefixes"]]
    assert symbols == sorted(s.symbol for s in U.market("spot"))
    assert {"BTCUSDT", "USDCUSDT", "BTCUPUSDT", "JUPUSDT", "BTCFDUSD", "ETHBTC", "WAVESUSDT"} <= set(symbols)

    page = parse_listing(get(fake_binance.aws_url, {"delimiter": "/", "prefix": "data/futures/cm/daily/klines/"})[2])
    assert [p.split("/")[-2] for p in page["prefixes"]] == ["BTCUSD_250328", "BTCUSD_PERP", "ETHUSD_PERP"]
    page = parse_listing(get(fake_binance.aws_url, {"delimiter": "/", "prefix": ""})[2])
    assert page["prefixes"] == ["data/"] and page["contents"] == []  # universe.json is not a key


def test_listing_files_gives_contents_with_size_etag_lastmodified(fake_binance):
    prefix = "data/spot/daily/klines/BTCUSDT/1m/"
    page = parse_listing(get(fake_binance.aws_url, {"delimiter": "/", "prefix": prefix})[2])
    assert page["prefixes"] == []
    keys = [c["Key"] for c in page["contents"]]
    days = archive_days(U, U.spec("spot", "BTCUSDT"))
    expected = sorted(k for d in days for k in (kline_key("spot", "BTCUSDT", "1m", d),
                                                 kline_key("spot", "BTCUSDT", "1m", d) + ".CHECKSUM"))
    assert keys == expected and len(keys) == 2 * 17
    first = page["contents"][0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z", first["LastModified"])
    assert first["LastModified"] == "2024-12-26T06:00:00.000Z"
    assert first["StorageClass"] == "STANDARD"
    _, headers, body = get(f"{fake_binance.aws_url}/{first['Key']}")
    assert int(first["Size"]) == len(body)
    assert first["ETag"] == '"%s"' % hashlib.md5(body).hexdigest() == headers["ETag"]


def test_empty_and_missing_prefixes(fake_binance):
    page = parse_listing(get(fake_binance.aws_url, {"delimiter": "/", "prefix": "data/spot/daily/klines/NOPE/"})[2])
    assert page["truncated"] == "false" and page["prefixes"] == [] and page["contents"] == []
    # a symbol without the interval: nothing
    page = parse_listing(get(fake_binance.aws_url, {"delimiter": "/", "prefix": "data/spot/daily/klines/BTCUSDT/5m/"})[2])
    assert page["contents"] == []
    # a prefix that is not a directory matches names
    page = parse_listing(get(fake_binance.aws_url, {"delimiter": "/", "prefix": "data/spot/daily/klines/BTC"})[2])
    assert [p.split("/")[-2] for p in page["prefixes"]] == ["BTCFDUSD", "BTCUPUSDT", "BTCUSDC", "BTCUSDT"]


def test_contents_and_common_prefixes_in_one_listing(fake_binance):
    fake_binance.add_dummy_keys("data/mixed/", 3, name="file{i}.zip")
    fake_binance.add_dummy_keys("data/mixed/sub/", 2)
    page = parse_listing(get(fake_binance.aws_url, {"delimiter": "/", "prefix": "data/mixed/"})[2])
    assert page["prefixes"] == ["data/mixed/sub/"]
    assert [c["Key"] for c in page["contents"]] == [f"data/mixed/file{i}.zip" for i in range(3)]
    # without a delimiter every key is listed flat
    page = parse_listing(get(fake_binance.aws_url, {"prefix": "data/mixed/"})[2])
    assert page["prefixes"] == [] and len(page["contents"]) == 5 and page["delimiter"] is None


@pytest.mark.parametrize("use_next_marker", [True, False])
def test_paging_over_more_than_1000_keys(fake_binance, use_next_marker):
    fake_binance.faults.omit_next_marker = not use_next_marker
    prefix = "data/spot/daily/klines/ZZTEST/1m/"
    keys = fake_binance.add_dummy_keys(prefix, 2345, name="ZZTEST-1m-{i:05d}.zip")
    entries, pages = list_all(fake_binance.aws_url, prefix, use_next_marker=use_next_marker)
    assert entries == sorted(keys)
    assert [len(p["contents"]) for p in pages] == [1000, 1000, 345]
    assert [p["truncated"] for p in pages] == ["true", "true", "false"]
    if use_next_marker:
        assert pages[0]["next_marker"] == sorted(keys)[999]
    else:
        assert all(p["next_marker"] is None for p in pages)
    assert pages[1]["marker"] == sorted(keys)[999]
    # the objects are served too
    status, _, body = get(f"{fake_binance.aws_url}/{keys[0]}")
    assert status == 200 and len(body) == 16


def test_paging_common_prefixes_with_small_pages(fake_binance):
    fake_binance.faults.page_size = 4
    spot = sorted(s.symbol for s in U.market("spot"))
    entries, pages = list_all(fake_binance.aws_url, "data/spot/daily/klines/")
    assert [e.split("/")[-2] for e in entries] == spot
    assert [len(p["prefixes"]) for p in pages] == [4, 4, 3]
    assert pages[0]["next_marker"] == f"data/spot/daily/klines/{spot[3]}/"
    entries2, _ = list_all(fake_binance.aws_url, "data/spot/daily/klines/", use_next_marker=False)
    assert entries2 == entries


def test_single_entry_pages(fake_binance):
    fake_binance.faults.page_size = 1
    entries, pages = list_all(fake_binance.aws_url, "data/futures/cm/daily/klines/")
    assert len(pages) == 3 and all(len(p["prefixes"]) == 1 for p in pages)
    # max-keys from the client is honoured too
    fake_binance.faults.page_size = 1000
    page = parse_listing(get(fake_binance.aws_url, {"delimiter": "/", "prefix": "data/futures/cm/daily/klines/",
                                                    "max-keys": "2"})[2])
    assert len(page["prefixes"]) == 2 and page["truncated"] == "true" and page["max_keys"] == "2"


def test_prefix_url_encoding(fake_binance):
    odd = "data/odd dir&x=1+y/"
    keys = fake_binance.add_dummy_keys(odd, 3, name="a b&c={i}.zip")
    page = parse_listing(get(fake_binance.aws_url, {"delimiter": "/", "prefix": odd})[2])
    assert page["prefix"] == odd and [c["Key"] for c in page["contents"]] == keys
    # fully percent-encoded by hand, '/' included
    raw = ("?delimiter=%2F&prefix=" + "".join(c if c.isalnum() else "%%%02X" % ord(c) for c in odd))
    page = parse_listing(get(yarl.URL(fake_binance.aws_url + raw, encoded=True))[2])
    assert page["prefix"] == odd and len(page["contents"]) == 3
    # listing the parent shows the odd directory as a common prefix; its objects download
    page = parse_listing(get(fake_binance.aws_url, {"delimiter": "/", "prefix": "data/"})[2])
    assert odd in page["prefixes"]
    url = yarl.URL(fake_binance.aws_url) / keys[0].split("/", 1)[0] / keys[0].split("/", 1)[1].split("/")[0] \
        / keys[0].rsplit("/", 1)[1]
    assert get(url)[0] == 200


def test_missing_key_is_404_with_s3_error(fake_binance):
    status, _, body = get(f"{fake_binance.aws_url}/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-01.zip")
    assert status == 404
    err = ET.fromstring(body)
    assert err.tag == "Error" and err.findtext("Code") == "NoSuchKey"
    assert get(f"{fake_binance.aws_url}/universe.json")[0] == 404
    assert get(f"{fake_binance.aws_url}/data/../universe.json")[0] == 404


def test_head_and_unknown_paths(fake_binance):
    key = kline_key("spot", "BTCUSDT", "1m", date(2025, 1, 5))
    size = (fake_binance.root / key).stat().st_size

    async def head():
        async with aiohttp.ClientSession() as s:
            async with s.head(f"{fake_binance.aws_url}/{key}") as r:
                return r.status, r.headers, await r.read()
    status, headers, body = run(head())
    assert status == 200 and int(headers["Content-Length"]) == size and body == b""
    status, headers, _ = get(fake_binance.url + "/fapi/v1/premiumIndex")
    assert status == 404 and "X-MBX-USED-WEIGHT-1M" in headers


def test_range_requests(fake_binance):
    key = kline_key("spot", "BTCUSDT", "1m", date(2025, 1, 5))
    full = (fake_binance.root / key).read_bytes()
    status, headers, body = get(f"{fake_binance.aws_url}/{key}", headers={"Range": "bytes=100-"})
    assert status == 206 and body == full[100:] and headers["Content-Range"] == f"bytes 100-{len(full) - 1}/{len(full)}"


# ---- files and formats -------------------------------------------------------------------

def test_downloads_match_their_checksums(fake_binance):
    entries, _ = list_all(fake_binance.aws_url, "data/futures/um/monthly/fundingRate/ETHUSDT/")
    entries += list_all(fake_binance.aws_url, "data/spot/daily/klines/ETHUSDT/1m/")[0]
    zips = [k for k in entries if k.endswith(".zip")]
    assert len(zips) == 1 + 14  # 17 days minus 3 missing
    for key in zips:
        _, _, data = get(f"{fake_binance.aws_url}/{key}")
        _, _, checksum = get(f"{fake_binance.aws_url}/{key}.CHECKSUM")
        name = key.rsplit("/", 1)[1]
        assert checksum == f"{hashlib.sha256(data).hexdigest()}  {name}".encode()
        zf = zipfile.ZipFile(io.BytesIO(data))
        assert zf.namelist() == [name[:-4] + ".csv"]
        assert zf.infolist()[0].compress_type == zipfile.ZIP_DEFLATED
        assert zf.testzip() is None


def _zip_member(data: bytes) -> tuple[zipfile.ZipInfo, bytes]:
    zf = zipfile.ZipFile(io.BytesIO(data))
    (info,) = zf.infolist()
    return info, zf.read(info)


def _shape(row: list[str]) -> list[str]:
    """Per column: 'int' or 'dec<N>'."""
    return ["int" if re.fullmatch(r"\d+", v) else "dec%d" % len(v.split(".")[1]) for v in row]


def test_spot_format_matches_the_real_sample(default_archive):
    real_zip = REAL_DIR / "BTCUSDT-1m-2020-01-01.zip"
    real_info, real_csv = _zip_member(real_zip.read_bytes())
    real_checksum = (REAL_DIR / "BTCUSDT-1m-2020-01-01.zip.CHECKSUM").read_bytes()
    checksum_re = re.compile(rb"[0-9a-f]{64}  [A-Z0-9]+-1m-\d{4}-\d\d-\d\d\.zip")
    assert checksum_re.fullmatch(real_checksum)
    real_rows = csv_rows(real_csv)

    for d, unit in ((date(2024, 12, 31), 10 ** 3), (date(2025, 1, 1), 10 ** 6)):
        key = kline_key("spot", "BTCUSDT", "1m", d)
        data = (default_archive / key).read_bytes()
        info, csv = _zip_member(data)
        assert info.filename == f"BTCUSDT-1m-{d}.csv"
        assert info.compress_type == real_info.compress_type == zipfile.ZIP_DEFLATED
        assert info.create_system == real_info.create_system and info.external_attr == real_info.external_attr
        checksum = (default_archive / (key + ".CHECKSUM")).read_bytes()
        assert checksum_re.fullmatch(checksum) and not checksum.endswith(b"\n")
        assert b"\r" not in csv and csv.endswith(b"\n") and csv[:1].isdigit()  # no header
        rows = csv_rows(csv)
        assert len(rows) == 1440
        assert all(len(r) == 12 for r in rows)
        assert _shape(rows[0]) == _shape(real_rows[0])  # 8 decimals everywhere, ints where ints
        open_t = np.array([int(r[0]) for r in rows])
        close_t = np.array([int(r[6]) for r in rows])
        digits = 13 if unit == 10 ** 3 else 16
        assert all(len(r[0]) == digits and len(r[6]) == digits for r in rows)
        assert open_t[0] == day_ms(d) * (unit // 1000)
        assert (np.diff(open_t) == 60 * unit).all() and (close_t == open_t + 60 * unit - 1).all()
        o, h, lo, c = (np.array([float(r[i]) for r in rows]) for i in (1, 2, 3, 4))
        assert (h >= np.maximum(o, c)).all() and (lo <= np.minimum(o, c)).all()
        vol = np.array([float(r[5]) for r in rows])
        assert 1 <= (vol == 0).sum() <= 3  # a few bars without trades
        zero = vol == 0
        assert (o[zero] == c[zero]).all() and (h[zero] == o[zero]).all()
        assert all(r[8] == "0" for r, z in zip(rows, zero) if z)
        quote = np.array([float(r[7]) for r in rows])
        ratio = quote[~zero] / vol[~zero]
        assert ((ratio >= lo[~zero] * 0.999) & (ratio <= h[~zero] * 1.001)).all()  # quote ≈ volume × price


def test_futures_kline_files_have_a_header_and_milliseconds(default_archive):
    header = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,"
              "taker_buy_volume,taker_buy_quote_volume,ignore")
    for market, symbol in (("um", "BTCUSDT"), ("cm", "BTCUSD_PERP")):
        csv = read_member(default_archive, kline_key(market, symbol, "1m", date(2025, 1, 5)))
        lines = csv.decode().split("\n")
        assert lines[0] == header and len(lines) == 1442 and lines[-1] == ""
        row = lines[1].split(",")
        assert len(row[0]) == 13 and int(row[6]) == int(row[0]) + 59_999
    cm = [line.split(",") for line in read_member(default_archive, kline_key(
        "cm", "BTCUSD_PERP", "1m", date(2025, 1, 5))).decode().split("\n")[1:-1]]
    # COIN-M: volume in whole contracts, column 8 is the base volume = contracts × 100 / price
    assert all(re.fullmatch(r"\d+", r[5]) for r in cm)
    for r in cm[:50]:
        if r[5] != "0":
            base = int(r[5]) * 100 / float(r[4])
            assert abs(float(r[7]) - base) / base < 0.01


def test_funding_and_liquidation_files(default_archive):
    csv = read_member(default_archive, funding_key("um", "ETHUSDT", 2024, 12)).decode()
    lines = csv.split("\n")
    assert lines[0] == "calc_time,funding_interval_hours,last_funding_rate" and lines[-1] == ""
    rows = [line.split(",") for line in lines[1:-1]]
    times = [int(r[0]) for r in rows]
    assert all(0 <= t % 3_600_000 <= 9 for t in times)  # 0-9 ms of jitter
    assert any(t % 3_600_000 for t in times)
    hours = [int(r[1]) for r in rows]
    assert hours[0] == 8 and hours[-1] == 4  # the interval changes 8 h → 4 h on 2024-12-29
    assert len(rows) == 4 * 3 + 3 * 6  # 12-25..12-28 at 8 h, 12-29..12-31 at 4 h
    assert all(re.fullmatch(r"-?\d\.\d{8}", r[2]) for r in rows)
    assert not (default_archive / funding_key("um", "ETHUSDT", 2025, 1)).exists()  # month incomplete
    assert not (default_archive / "data/futures/um/monthly/fundingRate/BTCUSDT_250328").exists()

    liq = read_member(default_archive, "data/futures/cm/daily/liquidationSnapshot/BTCUSD_PERP/"
                                       "BTCUSD_PERP-liquidationSnapshot-2025-01-05.zip").decode().split("\n")
    assert liq[0] == ("time,side,order_type,time_in_force,original_quantity,price,average_price,order_status,"
                      "last_fill_quantity,accumulated_fill_quantity")
    assert len(liq) > 2 and all(len(line.split(",")) == 10 for line in liq[1:-1])


def test_archive_quirks(default_archive):
    def rows(market, symbol, d, interval="1m"):
        path = default_archive / kline_key(market, symbol, interval, d)
        if not path.exists():
            return None
        lines = read_member(default_archive, kline_key(market, symbol, interval, d)).decode().split("\n")[:-1]
        return [line for line in lines if line[:1].isdigit()]

    assert rows("spot", "ETHUSDT", date(2025, 1, 3)) is None  # archive-missing day
    assert len(rows("spot", "BTCUSDT", date(2025, 1, 2))) == 1440 - 90  # hole 02:00-03:30
    assert len(rows("spot", "BTCUSDC", date(2025, 1, 7))) == 456  # partial archive day
    assert len(rows("spot", "PENGUUSDT", date(2024, 12, 30))) == 960  # listed 08:00
    assert rows("spot", "PENGUUSDT", date(2024, 12, 29)) is None
    assert len(rows("spot", "WAVESUSDT", date(2025, 1, 5))) == 180  # delisted 03:00
    assert rows("spot", "WAVESUSDT", date(2025, 1, 6)) is None
    assert rows("spot", "LUNAUSDT", date(2025, 1, 3)) is None  # halted
    before = rows("spot", "LUNAUSDT", date(2025, 1, 1))
    after = rows("spot", "LUNAUSDT", date(2025, 1, 5))
    assert float(after[0].split(",")[1]) / float(before[-1].split(",")[4]) > 1.1  # jump
    assert rows("spot", "BTCUSDT", date(2025, 1, 11)) is None  # after the publication cutoff
    assert len(rows("spot", "BTCUSDT", date(2025, 1, 10))) == 1440
    assert len(rows("spot", "BTCUSDT", date(2025, 1, 2), "1h")) == 23


def test_builds_are_deterministic(tmp_path, default_archive):
    small = Universe(seed=U.seed, symbols=(U.spec("spot", "BTCUSDT"), U.spec("um", "ETHUSDT")), now_ms=U.now_ms)
    build_archive(small, tmp_path / "a", intervals=("1m", "1h"), compress_level=1)
    for key in (kline_key("spot", "BTCUSDT", "1m", date(2025, 1, 1)), kline_key("um", "ETHUSDT", "1h", date(2024, 12, 30)),
                funding_key("um", "ETHUSDT", 2024, 12)):
        assert (tmp_path / "a" / key).read_bytes() == (default_archive / key).read_bytes()
        assert (tmp_path / "a" / (key + ".CHECKSUM")).read_bytes() == (default_archive / (key + ".CHECKSUM")).read_bytes()
    assert Universe.from_json(U.to_json()) == U


def test_bench_universe_has_the_baseline_shape():
    u = bench_universe()
    assert len(u.symbols) == 30
    spot = u.market("spot")
    days = [(s, d) for s in spot for d in archive_days(u, s)]
    assert len(days) == 3397
    assert sum(int(minute_mask(s, d, archive=True).sum()) for s, d in days) == 4_889_040
    assert sum(len(complete_months(u, s)) for s in u.market("um")) == 114
    um = u.market("um")
    n_funding = sum(len(_funding_day(s, (d - date(1970, 1, 1)).days)[0])
                    for s in um for d in (s.first_day + timedelta(days=k) for k in range(365))
                    if d <= date(2025, 6, 30) and s.trades_on(d))
    assert n_funding == 10_224
    assert sorted(s.symbol for s in u.market("cm"))[0].endswith("USD_PERP")


# ---- REST ---------------------------------------------------------------------------------

def _rest_klines(url, market, **params):
    path = {"spot": "/api/v3/klines", "um": "/fapi/v1/klines", "cm": "/dapi/v1/klines"}[market]
    status, headers, body = get_json(url + path, {k: str(v) for k, v in params.items()})
    assert status == 200, body
    return body, headers


def _archive_rows(root, market, symbol, d, interval="1m"):
    lines = read_member(root, kline_key(market, symbol, interval, d)).decode().split("\n")[:-1]
    rows = [line.split(",") for line in lines if line[:1].isdigit()]
    if market == "spot" and d >= date(2025, 1, 1):
        for r in rows:
            r[0], r[6] = str(int(r[0]) // 1000), str(int(r[6]) // 1000)
    return rows


def _same_rows(rest, archive):
    assert len(rest) == len(archive)
    for a, b in zip(rest, archive):
        assert [float(x) for x in a] == [float(x) for x in b]


def test_rest_klines_equal_archive_rows(fake_binance):
    url, root = fake_binance.url, fake_binance.root
    d = date(2025, 1, 5)
    start = day_ms(d)
    # spot: 1440 bars need two requests of at most 1000
    first, headers = _rest_klines(url, "spot", symbol="BTCUSDT", interval="1m", startTime=start, limit=1000)
    second, _ = _rest_klines(url, "spot", symbol="BTCUSDT", interval="1m", startTime=first[-1][0] + 60_000,
                             endTime=start + DAY_MS - 1, limit=1000)
    _same_rows(first + second, _archive_rows(root, "spot", "BTCUSDT", d))
    assert all(isinstance(r[0], int) and isinstance(r[1], str) and r[11] == "0" for r in first)
    assert headers["X-MBX-USED-WEIGHT-1M"] == "2"
    # UM: one request of 1500; CM: the most recent `limit` bars before endTime
    um, headers = _rest_klines(url, "um", symbol="BTCUSDT", interval="1m", startTime=start,
                               endTime=start + DAY_MS - 1, limit=1500)
    _same_rows(um, _archive_rows(root, "um", "BTCUSDT", d))
    assert headers["X-MBX-USED-WEIGHT-1M"] == "10"
    cm, _ = _rest_klines(url, "cm", symbol="BTCUSD_PERP", interval="1m", startTime=start,
                         endTime=start + DAY_MS - 1, limit=1000)
    _same_rows(cm, _archive_rows(root, "cm", "BTCUSD_PERP", d)[-1000:])
    # 1h files agree as well
    hourly, _ = _rest_klines(url, "spot", symbol="BTCUSDT", interval="1h", startTime=start, endTime=start + DAY_MS - 1)
    _same_rows(hourly, _archive_rows(root, "spot", "BTCUSDT", d, "1h"))


def test_rest_has_what_the_archive_misses(fake_binance):
    url, root = fake_binance.url, fake_binance.root
    # a day missing from the archive: REST has it, equal to the series
    d = date(2025, 1, 2)
    um, _ = _rest_klines(url, "um", symbol="ETHUSDT", interval="1m", startTime=day_ms(d),
                         endTime=day_ms(d) + DAY_MS - 1, limit=1500)
    assert len(um) == 1440
    series = klines(U.spec("um", "ETHUSDT"), "1m", day_ms(d), day_ms(d) + DAY_MS)
    assert [r[0] for r in um] == series["open_time"].tolist()
    assert [float(r[4]) for r in um] == series["close"].tolist()
    # a partial archive day: REST has the whole day
    d = date(2025, 1, 7)
    spot = []
    start = day_ms(d)
    while True:
        page, _ = _rest_klines(url, "spot", symbol="BTCUSDC", interval="1m", startTime=start,
                               endTime=day_ms(d) + DAY_MS - 1, limit=1000)
        spot += page
        if len(page) < 1000:
            break
        start = page[-1][0] + 60_000
    assert len(spot) == 1440
    _same_rows(spot[:456], _archive_rows(root, "spot", "BTCUSDC", d))
    # halts and holes have no bars on REST either
    halted, _ = _rest_klines(url, "spot", symbol="LUNAUSDT", interval="1d", startTime=day_ms(date(2024, 12, 30)),
                             endTime=day_ms(date(2025, 1, 8)))
    assert [date(1970, 1, 1) + timedelta(days=r[0] // DAY_MS) for r in halted] == \
        [date(2024, 12, 30), date(2024, 12, 31), date(2025, 1, 1), date(2025, 1, 5), date(2025, 1, 6),
         date(2025, 1, 7), date(2025, 1, 8)]
    hole, _ = _rest_klines(url, "spot", symbol="BTCUSDT", interval="1m", startTime=day_ms(date(2025, 1, 2)) + 7_200_000,
                           limit=10)
    assert hole[0][0] == day_ms(date(2025, 1, 2)) + 12_600_000
    # days after the last archive day exist only on REST
    recent, _ = _rest_klines(url, "um", symbol="BTCUSDT", interval="1h", startTime=day_ms(date(2025, 1, 11)), limit=1000)
    assert recent[0][0] == day_ms(date(2025, 1, 11))


def test_still_forming_bar_and_nothing_after_now(fake_binance):
    url, now = fake_binance.url, U.now_ms
    for market, symbol in (("spot", "BTCUSDT"), ("um", "BTCUSDT"), ("cm", "BTCUSD_PERP")):
        rows, _ = _rest_klines(url, market, symbol=symbol, interval="1m", limit=5)
        assert len(rows) == 5
        assert rows[-1][0] == now - now % 60_000 and rows[-1][6] > now  # still forming
        assert [r[0] for r in rows] == [rows[-1][0] - 60_000 * k for k in range(4, -1, -1)]
        hourly, _ = _rest_klines(url, market, symbol=symbol, interval="1h", limit=2)
        assert hourly[-1][0] == now - now % 3_600_000
        later, _ = _rest_klines(url, market, symbol=symbol, interval="1m", startTime=now + 60_000, limit=5)
        assert later == []
    # the forming bar differs from the complete one the archive will have
    full = klines(U.spec("spot", "BTCUSDT"), "1m", now - now % 60_000, now - now % 60_000 + 60_000)
    rows, _ = _rest_klines(url, "spot", symbol="BTCUSDT", interval="1m", limit=1)
    assert float(rows[0][5]) < full["volume"][0]
    status, _, body = get_json(url + "/api/v3/time")
    assert body == {"serverTime": now}


def test_delisted_and_listed_symbols_on_rest(fake_binance):
    url = fake_binance.url
    rows, _ = _rest_klines(url, "spot", symbol="WAVESUSDT", interval="1m", limit=3)
    assert rows[-1][0] == day_ms(date(2025, 1, 5)) + 179 * 60_000  # last bar before 03:00
    rows, _ = _rest_klines(url, "spot", symbol="PENGUUSDT", interval="1m", startTime=0, limit=3)
    assert rows[0][0] == day_ms(date(2024, 12, 30)) + 8 * 3_600_000


def test_rest_errors(fake_binance):
    url = fake_binance.url
    for path in ("/api/v3/klines", "/fapi/v1/klines", "/dapi/v1/klines"):
        status, headers, body = get_json(url + path, {"symbol": "NOPEUSDT", "interval": "1m"})
        assert status == 400 and body == {"code": -1121, "msg": "Invalid symbol."}
        assert "X-MBX-USED-WEIGHT-1M" in headers
    status, _, body = get_json(url + "/fapi/v1/klines", {"symbol": "BTCUSDT", "interval": "1s"})
    assert status == 400 and body["code"] == -1120
    status, _, body = get_json(url + "/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": "1001"})
    assert status == 400 and body["code"] == -1130
    status, _, body = get_json(url + "/api/v3/klines", {"interval": "1m"})
    assert status == 400 and body["code"] == -1102
    status, _, body = get_json(url + "/dapi/v1/klines", {"symbol": "BTCUSD_PERP", "interval": "1d",
                                                        "startTime": "0", "endTime": str(201 * DAY_MS)})
    assert status == 400 and body["code"] == -1127
    status, _, body = get_json(url + "/dapi/v1/fundingRate", {})
    assert status == 400 and body["code"] == -1102
    status, _, body = get_json(url + "/dapi/v1/fundingRate", {"symbol": "BTCUSD_250328"})
    assert status == 200 and body == []
    status, _, body = get_json(url + "/fapi/v1/fundingRate", {"symbol": "NOPE"})
    assert status == 400 and body["code"] == -1121


def test_exchange_info(fake_binance):
    url = fake_binance.url
    status, headers, spot = get_json(url + "/api/v3/exchangeInfo")
    assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "20"
    by = {s["symbol"]: s for s in spot["symbols"]}
    assert by["WAVESUSDT"]["status"] == "BREAK" and by["BTCUSDT"]["status"] == "TRADING"
    assert by["BTCUPUSDT"]["permissionSets"] == [["LEVERAGED"]] and by["JUPUSDT"]["permissionSets"] != [["LEVERAGED"]]
    assert (by["ETHBTC"]["baseAsset"], by["ETHBTC"]["quoteAsset"]) == ("ETH", "BTC")
    assert by["BTCFDUSD"]["quoteAsset"] == "FDUSD"
    assert spot["rateLimits"][0]["limit"] == 6000
    _, _, one = get_json(url + "/api/v3/exchangeInfo", {"symbol": "ETHBTC"})
    assert [s["symbol"] for s in one["symbols"]] == ["ETHBTC"]
    _, _, um = get_json(url + "/fapi/v1/exchangeInfo")
    by = {s["symbol"]: s for s in um["symbols"]}
    assert by["BTCUSDT"]["contractType"] == "PERPETUAL" and by["BTCUSDT"]["deliveryDate"] == 4133404800000
    assert by["BTCUSDT_250328"]["contractType"] == "CURRENT_QUARTER"
    assert by["BTCDOMUSDT"]["underlyingType"] == "INDEX"
    _, _, cm = get_json(url + "/dapi/v1/exchangeInfo")
    by = {s["symbol"]: s for s in cm["symbols"]}
    assert by["BTCUSD_PERP"]["contractSize"] == 100 and by["ETHUSD_PERP"]["contractSize"] == 10
    assert by["BTCUSD_PERP"]["contractStatus"] == "TRADING" and by["BTCUSD_PERP"]["marginAsset"] == "BTC"


def test_funding_rest_matches_the_archive(fake_binance):
    url, root = fake_binance.url, fake_binance.root
    rows = [line.split(",") for line in read_member(root, funding_key("um", "ETHUSDT", 2024, 12)).decode().split("\n")[1:-1]]
    status, headers, rest = get_json(url + "/fapi/v1/fundingRate", {
        "symbol": "ETHUSDT", "startTime": str(day_ms(date(2024, 12, 1))), "endTime": str(day_ms(date(2025, 1, 1)) - 1),
        "limit": "1000"})
    assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "0"
    assert [(r["fundingTime"], float(r["fundingRate"])) for r in rest] == [(int(r[0]), float(r[2])) for r in rows]
    assert all(r["symbol"] == "ETHUSDT" and float(r["markPrice"]) > 0 for r in rest)
    # no start/end: the most recent 200 at most, ascending, up to now
    _, _, recent = get_json(url + "/fapi/v1/fundingRate", {"symbol": "BTCUSDT", "limit": "1000"})
    times = [r["fundingTime"] for r in recent]
    assert times == sorted(times) and times[-1] <= U.now_ms and len(recent) == 19 * 3 + 2
    _, _, few = get_json(url + "/dapi/v1/fundingRate", {"symbol": "BTCUSD_PERP", "limit": "3"})
    assert len(few) == 3 and few[-1]["fundingTime"] // 3_600_000 == U.now_ms // 3_600_000 - 4
    # more than limit in range: the first `limit` from startTime
    _, _, first = get_json(url + "/fapi/v1/fundingRate", {"symbol": "BTCUSDT", "startTime": "0", "limit": "2"})
    assert [r["fundingTime"] // 3_600_000 * 3_600_000 for r in first] == [day_ms(date(2024, 12, 25)),
                                                                         day_ms(date(2024, 12, 25)) + 8 * 3_600_000]
    # without a symbol (UM): every perpetual
    _, _, every = get_json(url + "/fapi/v1/fundingRate", {"startTime": str(day_ms(date(2025, 1, 1))), "limit": "20"})
    assert {"BTCUSDT", "ETHUSDT", "1000PEPEUSDT"} <= {r["symbol"] for r in every}


# ---- fault switches -----------------------------------------------------------------------

def _statuses(url, n, params=None):
    async def go():
        out = []
        async with aiohttp.ClientSession() as s:
            for i in range(n):
                async with s.get(url if params is None else url, params=params(i) if params else None) as r:
                    await r.read()
                    out.append(r.status)
        return out
    return run(go())


def test_error_rate_gives_a_reproducible_share_of_5xx(fake_binance, default_archive, tmp_path):
    fake_binance.faults.error_rate = 0.3
    params = lambda i: {"symbol": "BTCUSDT", "interval": "1m", "limit": "1", "startTime": str(day_ms(date(2025, 1, 1)) + i * 60_000)}  # noqa: E731
    statuses = _statuses(fake_binance.url + "/api/v3/klines", 200, params)
    errors = [s for s in statuses if s != 200]
    assert set(errors) <= {500, 502, 503} and len(set(errors)) == 3
    assert 0.2 < len(errors) / 200 < 0.4
    assert fake_binance.stats.sent_5xx == len(errors)
    # the same seed gives the same fates on a fresh server
    with start_in_thread(fake_binance.root, error_rate=0.3) as other:
        assert _statuses(other.url + "/api/v3/klines", 200, params) == statuses
    # S3 objects too; a retry of a failed URL rolls again
    fake_binance.faults.error_scope = "files"
    key = kline_key("spot", "BTCUSDT", "1m", date(2025, 1, 1))
    got = _statuses(f"{fake_binance.aws_url}/{key}", 30)
    assert 200 in got and any(s >= 500 for s in got)
    assert get(fake_binance.url + "/api/v3/time")[0] == 200  # out of scope now


def test_fail_first(fake_binance):
    fake_binance.faults.fail_first = 2
    fake_binance.faults.error_scope = "listing"
    got = _statuses(fake_binance.aws_url + "?delimiter=/&prefix=data/", 3)
    assert got == [503, 503, 200]
    status, _, body = get(fake_binance.aws_url, {"delimiter": "/", "prefix": "data/spot/"})
    assert status == 503 and ET.fromstring(body).findtext("Code") == "ServiceUnavailable"


def test_truncated_bodies_raise_payload_errors(fake_binance):
    fake_binance.faults.truncate_rate = 1.0
    key = kline_key("spot", "BTCUSDT", "1m", date(2025, 1, 1))
    with pytest.raises(aiohttp.ClientPayloadError):
        get(f"{fake_binance.aws_url}/{key}")
    assert fake_binance.stats.truncations == 1
    fake_binance.faults.truncate_rate = 0.0
    status, _, body = get(f"{fake_binance.aws_url}/{key}")
    assert status == 200 and body == (fake_binance.root / key).read_bytes()


def test_latency(fake_binance):
    fake_binance.faults.latency = 0.3
    t0 = time.perf_counter()
    assert get(fake_binance.url + "/fapi/v1/time")[0] == 200
    assert time.perf_counter() - t0 >= 0.3


def test_weight_budget_429_retry_after_then_418(default_archive):
    clock = [20_000 * 60.0]  # a minute boundary
    with start_in_thread(default_archive, clock=lambda: clock[0], weight_budget={"spot": 10, "um": 2400, "cm": 2400},
                         ban_after=1, ban_seconds=120) as fake:
        url = fake.url + "/api/v3/klines"
        q = {"symbol": "BTCUSDT", "interval": "1m", "limit": "1"}
        weights = []
        for _ in range(5):
            status, headers, _ = get(url, q)
            assert status == 200
            weights.append(int(headers["X-MBX-USED-WEIGHT-1M"]))
        assert weights == [2, 4, 6, 8, 10]
        clock[0] += 20  # 40 s left in this minute
        status, headers, body = get_json(url, q)
        assert status == 429 and body["code"] == -1003 and headers["Retry-After"] == "40"
        # other markets have their own budget
        assert get(fake.url + "/fapi/v1/time")[0] == 200
        # ignoring Retry-After: a violation (429 again), then past ban_after a 418 ban
        status, _, _ = get(url, q)
        assert status == 429 and fake.stats.violations == 1
        status, headers, body = get_json(url, q)
        assert status == 418 and body["code"] == -1003 and headers["Retry-After"] == "120"
        clock[0] += 60
        assert get(url, q)[0] == 418  # still banned
        clock[0] += 61
        assert get(url, q)[0] == 200
        assert fake.stats.sent_429 == 2 and fake.stats.sent_418 == 2 and fake.stats.weight_max["spot"] == 10

        # a client that waits Retry-After is never banned
        clock[0] = 2_000_000 * 60.0
        fake.faults.weight_budget = {"spot": 4, "um": 2400, "cm": 2400}
        got = []
        for _ in range(6):
            status, headers, _ = get(url, q)
            got.append(status)
            if status == 429:
                clock[0] += int(headers["Retry-After"])
        assert got == [200, 200, 429, 200, 200, 429]


def test_futures_weight_depends_on_limit(fake_binance):
    url = fake_binance.url + "/fapi/v1/klines"
    used = []
    for limit in (99, 100, 499, 500, 1000, 1001):
        _, headers, _ = get(url, {"symbol": "BTCUSDT", "interval": "1m", "limit": str(limit)})
        used.append(int(headers["X-MBX-USED-WEIGHT-1M"]))
    assert np.diff([0] + used).tolist() == [1, 2, 2, 5, 5, 10]


def test_funding_budget(fake_binance):
    fake_binance.faults.funding_budget = 3
    fake_binance.faults.ban_after = 100
    got = _statuses(fake_binance.url + "/fapi/v1/fundingRate?symbol=BTCUSDT&limit=5", 5)
    assert got == [200, 200, 200, 429, 429]
    assert fake_binance.stats.violations == 1  # the 5th came during Retry-After
    assert get(fake_binance.url + "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=1")[0] == 200  # own bucket
    assert get(fake_binance.url + "/dapi/v1/fundingRate?symbol=BTCUSD_PERP&limit=5")[0] == 200  # COIN-M: weight only


def test_s3_error_documents(fake_binance):
    fake_binance.faults.s3_error_xml = "AccessDenied"
    status, _, body = get(fake_binance.aws_url, {"delimiter": "/", "prefix": "data/"})
    assert status == 403 and ET.fromstring(body).findtext("Code") == "AccessDenied"
    key = kline_key("spot", "BTCUSDT", "1m", date(2025, 1, 1))
    assert get(f"{fake_binance.aws_url}/{key}")[0] == 200  # objects unaffected unless asked
    fake_binance.faults.s3_error_xml_files = True
    assert get(f"{fake_binance.aws_url}/{key}")[0] == 403
    fake_binance.faults.s3_error_xml = "SlowDown"
    status, _, body = get(fake_binance.aws_url, {"delimiter": "/", "prefix": "data/"})
    assert status == 503 and ET.fromstring(body).findtext("Code") == "SlowDown"


def test_rest_html_and_status_overrides(fake_binance):
    fake_binance.faults.rest_html = 200
    status, headers, body = get(fake_binance.url + "/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m"})
    assert status == 200 and headers["Content-Type"].startswith("text/html") and body.startswith(b"<!DOCTYPE html>")
    with pytest.raises(ValueError):
        json.loads(body)
    fake_binance.faults.rest_html = 502
    assert get(fake_binance.url + "/fapi/v1/time")[0] == 502
    fake_binance.faults.rest_html = None
    fake_binance.faults.status_override = {"/fapi/": 451, "/data.binance.vision": 403, "/dapi/v1/klines": 418}
    status, _, body = get_json(fake_binance.url + "/fapi/v1/time")
    assert status == 451 and "restricted location" in body["msg"]
    assert get(fake_binance.aws_url, {"prefix": "data/"})[0] == 403
    assert get(fake_binance.url + "/dapi/v1/klines")[0] == 418
    assert get(fake_binance.url + "/dapi/v1/time")[0] == 200


def test_archive_mutations(fake_binance):
    root, aws = fake_binance.root, fake_binance.aws_url
    key = kline_key("spot", "BTCUSDT", "1m", date(2025, 1, 6))
    prefix = key.rsplit("/", 1)[0] + "/"

    def listing():
        return {c["Key"]: c for c in parse_listing(get(aws, {"delimiter": "/", "prefix": prefix})[2])["contents"]}

    before = listing()
    # a re-upload: new bytes, new checksum, later LastModified, new ETag
    new_sha = reupload(root, key)
    after = listing()
    assert after[key]["ETag"] != before[key]["ETag"] and after[key]["LastModified"] > before[key]["LastModified"]
    _, _, data = get(f"{aws}/{key}")
    assert hashlib.sha256(data).hexdigest() == new_sha
    assert get(f"{aws}/{key}.CHECKSUM")[2].split()[0].decode() == new_sha
    assert read_member(root, key) == read_member(fake_binance.root, key)
    rows = [[1, 2, 3]]
    reupload(root, key, rows)
    assert read_member(root, key) == b"1,2,3\n"

    key2 = kline_key("spot", "BTCUSDT", "1m", date(2025, 1, 7))
    corrupt_zip_keep_checksum(root, key2)
    _, _, data = get(f"{aws}/{key2}")
    assert hashlib.sha256(data).hexdigest() != get(f"{aws}/{key2}.CHECKSUM")[2].split()[0].decode()
    with pytest.raises(Exception):
        zipfile.ZipFile(io.BytesIO(data)).read("BTCUSDT-1m-2025-01-07.csv")

    key3 = kline_key("spot", "BTCUSDT", "1m", date(2025, 1, 8))
    corrupt_zip_with_valid_checksum(root, key3)
    _, _, data = get(f"{aws}/{key3}")
    assert hashlib.sha256(data).hexdigest() == get(f"{aws}/{key3}.CHECKSUM")[2].split()[0].decode()
    with pytest.raises(Exception):
        zipfile.ZipFile(io.BytesIO(data)).read("BTCUSDT-1m-2025-01-08.csv")

    key4 = kline_key("spot", "BTCUSDT", "1m", date(2025, 1, 9))
    remove_checksum(root, key4)
    assert key4 + ".CHECKSUM" not in listing() and key4 in listing()
    assert get(f"{aws}/{key4}.CHECKSUM")[0] == 404


# ---- the command line -----------------------------------------------------------------------

def test_command_line_builds_and_serves(tmp_path):
    repo = Path(__file__).resolve().parent.parent
    root = tmp_path / "bench"
    with subprocess.Popen(
        [sys.executable, "-m", "tests.fakebinance", "--root", str(root), "--port", "0", "--build", "bench",
         "--symbols", "2", "--days", "3", "--compress-level", "1"],
        cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
        try:
            lines = [proc.stdout.readline().strip() for _ in range(5)]
            env = dict(line.removeprefix("export ").split("=", 1) for line in lines)
            assert set(env) == {"BHDS_AWS_URL", "BHDS_SPOT_API_URL", "BHDS_UM_API_URL", "BHDS_CM_API_URL", "BHDS_NOW"}
            assert env["BHDS_AWS_URL"].endswith("/data.binance.vision")
            page = parse_listing(get(env["BHDS_AWS_URL"], {"delimiter": "/", "prefix": "data/futures/cm/daily/klines/"})[2])
            assert page["prefixes"] == ["data/futures/cm/daily/klines/BTCUSD_PERP/", "data/futures/cm/daily/klines/ETHUSD_PERP/"]
            assert get_json(env["BHDS_UM_API_URL"] + "/fapi/v1/time")[0] == 200
        finally:
            proc.terminate()
            proc.wait(10)


def test_throttle_rate_answers_429_with_retry_after(tmp_path):
    """A share of REST requests gets 429 + Retry-After even under budget; asking again early is a violation."""
    import asyncio

    import aiohttp

    from tests.fakebinance import build_archive, default_universe, start_in_thread

    build_archive(default_universe(), tmp_path, intervals=("1m",), markets=("um",), funding=False, liquidation=False, compress_level=1)
    with start_in_thread(tmp_path, throttle_rate=1.0) as fake:
        async def go():
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{fake.url}/fapi/v1/klines", params={"symbol": "BTCUSDT", "interval": "1m", "limit": "5"}) as resp:
                    first = (resp.status, resp.headers.get("Retry-After"))
                async with session.get(f"{fake.url}/fapi/v1/klines", params={"symbol": "BTCUSDT", "interval": "1m", "limit": "6"}) as resp:
                    second = resp.status
            return first, second

        (status, retry_after), second = asyncio.run(go())
    assert status == 429 and retry_after == "1"
    assert second == 429 and fake.stats.violations == 1 and fake.stats.sent_429 == 2
