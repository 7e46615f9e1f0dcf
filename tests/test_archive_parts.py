"""The archive's parts on real bytes: listing XML and paging, CHECKSUM parsing, hashing, the zip
test, the download plan and the manifest."""

from __future__ import annotations

import asyncio
import hashlib
import io
import sqlite3
import zipfile
from pathlib import Path

import aiohttp
import pytest

from bhds.archive.checksum import (
    BrokenZip,
    ChecksumFormatError,
    check_zip,
    parse_checksum,
    sha256_file,
    verify_with_checksum_file,
)
from bhds.archive.listing import ArchiveFile, BadListing, list_prefix, page_url, parse_page
from bhds.archive.manifest import Manifest, Record
from bhds.archive.plan import ADOPT, CHECK, FETCH, SKIP, LocalFile, listed_epoch, plan_directory, scan_dir
from bhds.net import RetryPolicy

REAL = Path(__file__).parent / "data" / "real" / "spot" / "daily" / "klines" / "BTCUSDT" / "1m"
NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
FAST = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.02, max_total=5)


# ---- listing XML ------------------------------------------------------------------------------

def _contents(key: str, size: int = 10, lm: str = "2025-01-11T06:00:00.000Z", etag: str = "abc") -> str:
    return (f"<Contents><Key>{key}</Key><LastModified>{lm}</LastModified><ETag>&quot;{etag}&quot;</ETag>"
            f"<Size>{size}</Size><StorageClass>STANDARD</StorageClass></Contents>")


@pytest.mark.parametrize("namespace", [NS, ""])
def test_page_with_one_entry_and_namespace_or_not(namespace):
    body = (f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult {namespace}><Name>b</Name><Prefix>p/</Prefix>'
            f"<Marker></Marker><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>{_contents('p/a.zip', 42)}"
            "</ListBucketResult>").encode()
    page = parse_page(body)
    assert page.files == [ArchiveFile("p/a.zip", 42, "2025-01-11T06:00:00.000Z", "abc")]
    assert page.prefixes == [] and not page.is_truncated and page.next_marker is None


def test_page_with_prefixes_and_contents_keeps_both_and_ignores_the_prefix_echo():
    body = (f"<ListBucketResult {NS}><Prefix>p/</Prefix><IsTruncated>true</IsTruncated><NextMarker>p/z/</NextMarker>"
            f"<CommonPrefixes><Prefix>p/a/</Prefix></CommonPrefixes>{_contents('p/f.zip')}"
            "<CommonPrefixes><Prefix>p/b/</Prefix></CommonPrefixes></ListBucketResult>").encode()
    page = parse_page(body)
    assert page.prefixes == ["p/a/", "p/b/"]
    assert [f.key for f in page.files] == ["p/f.zip"]
    assert page.is_truncated and page.next_marker == "p/z/"
    assert page.last_entry == "p/f.zip"


def test_a_folder_object_is_no_file_but_still_moves_the_marker():
    # S3 lets a zero-byte key end in "/" (consoles create them as folders); fetching it would
    # rename a download onto the directory itself.
    body = (f"<ListBucketResult {NS}><Prefix>p/</Prefix><IsTruncated>true</IsTruncated>{_contents('p/a.zip')}"
            f"{_contents('p/q/', 0)}</ListBucketResult>").encode()
    page = parse_page(body)
    assert [f.key for f in page.files] == ["p/a.zip"]
    assert page.last_entry == "p/q/"  # no NextMarker: the next page starts after the folder object


@pytest.mark.parametrize(
    "body",
    [b'<?xml version="1.0"?><Error><Code>SlowDown</Code><Message>Please reduce</Message></Error>',
     b"<html><body>blocked by proxy</body></html>",
     b"<ListBucketResult", b""],
)
def test_anything_but_a_listing_is_refused(body):
    with pytest.raises(BadListing):
        parse_page(body)


def test_page_url_encodes_prefix_and_marker_but_keeps_slashes():
    url = page_url("http://h/bucket/", "data/a b+c&d=e/", "data/a b+c&d=e/x+y")
    assert str(url) == "http://h/bucket?delimiter=%2F&prefix=data/a%20b%2Bc%26d%3De/&marker=data/a%20b%2Bc%26d%3De/x%2By"


def _list(fake, prefix: str):
    async def go():
        async with aiohttp.ClientSession() as session:
            return await list_prefix(session, fake.aws_url, prefix, FAST)
    return asyncio.run(go())


@pytest.mark.parametrize("omit_next_marker", [False, True])
def test_paging_with_and_without_next_marker(fake_binance, omit_next_marker):
    fake_binance.faults.page_size = 7
    fake_binance.faults.omit_next_marker = omit_next_marker
    listing = _list(fake_binance, "data/spot/daily/klines/BTCUSDT/1m/")
    published = sorted(p.name for p in (fake_binance.root / "data/spot/daily/klines/BTCUSDT/1m").iterdir())
    assert [f.name for f in listing.files] == published
    assert listing.pages == -(-len(published) // 7)
    symbols = _list(fake_binance, "data/spot/daily/klines/")
    assert symbols.names == sorted(p.name for p in (fake_binance.root / "data/spot/daily/klines").iterdir())


def test_listing_over_1000_keys_and_odd_characters(fake_binance):
    keys = fake_binance.add_dummy_keys("data/odd dir+x&y=z/", 1001, name="k+{i:05d} a.dat")
    listing = _list(fake_binance, "data/odd dir+x&y=z/")
    assert [f.key for f in listing.files] == sorted(keys)
    assert listing.pages == 2


def test_listing_keeps_size_lastmodified_and_etag(fake_binance):
    listing = _list(fake_binance, "data/futures/um/monthly/fundingRate/BTCUSDT/")
    for f in listing.files:
        path = fake_binance.root / f.key
        assert f.size == path.stat().st_size
        assert f.etag == hashlib.md5(path.read_bytes()).hexdigest()
        assert abs(listed_epoch(f.last_modified) - int(path.stat().st_mtime)) < 1


# ---- checksum, hash, zip test -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [("dd579c62368ded93d3f01a1904575b932279e32936e181c062763e605793c1c2  BTCUSDT-1m-2020-01-01.zip",
      "dd579c62368ded93d3f01a1904575b932279e32936e181c062763e605793c1c2"),
     ("DD579C62368DED93D3F01A1904575B932279E32936E181C062763E605793C1C2  x.zip\n",
      "dd579c62368ded93d3f01a1904575b932279e32936e181c062763e605793c1c2"),
     ("dd579c62368ded93d3f01a1904575b932279e32936e181c062763e605793c1c2",
      "dd579c62368ded93d3f01a1904575b932279e32936e181c062763e605793c1c2")],
)
def test_checksum_lines(text, expected):
    assert parse_checksum(text) == expected


@pytest.mark.parametrize("text", ["", "nothex  x.zip", "dd57  x.zip", "a" * 64 + "  x.zip  extra", "<html>403</html>"])
def test_bad_checksum_lines(text):
    with pytest.raises(ChecksumFormatError):
        parse_checksum(text)


def test_real_files_verify(tmp_path):
    for zip_path in sorted(REAL.glob("*.zip")):
        digest, size = sha256_file(zip_path)
        assert digest == hashlib.sha256(zip_path.read_bytes()).hexdigest() and size == zip_path.stat().st_size
        verdict = verify_with_checksum_file(zip_path, Path(str(zip_path) + ".CHECKSUM"))
        assert verdict.ok, verdict.reason
        assert check_zip(zip_path) == 1


def test_hash_of_a_file_larger_than_one_chunk(tmp_path):
    path = tmp_path / "big.bin"
    data = bytes(range(256)) * 20_000  # 5 MB: several 1 MiB reads
    path.write_bytes(data)
    assert sha256_file(path) == (hashlib.sha256(data).hexdigest(), len(data))


def _zip_bytes(member: str = "a.csv", data: bytes = b"1,2,3\n" * 5000) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, data)
    return buf.getvalue()


def test_zip_test_catches_damaged_truncated_empty_and_non_zips(tmp_path):
    good = _zip_bytes()
    damaged = bytearray(good)
    damaged[60] ^= 0xFF  # inside the deflate stream
    cases = {"damaged": bytes(damaged), "truncated": good[: len(good) // 2], "notzip": b"<html>no</html>"}
    empty = io.BytesIO()
    zipfile.ZipFile(empty, "w").close()
    cases["empty"] = empty.getvalue()
    for name, data in cases.items():
        path = tmp_path / f"{name}.zip"
        path.write_bytes(data)
        with pytest.raises(BrokenZip):
            check_zip(path)
    ok = tmp_path / "ok.zip"
    ok.write_bytes(good)
    assert check_zip(ok) == 1


def test_verdicts_name_the_problem(tmp_path):
    path = tmp_path / "x.zip"
    path.write_bytes(_zip_bytes())
    checksum = tmp_path / "x.zip.CHECKSUM"
    assert "CHECKSUM file is missing" in verify_with_checksum_file(path, checksum).reason
    checksum.write_text("0" * 64 + "  x.zip")
    assert "checksum mismatch" in verify_with_checksum_file(path, checksum).reason
    checksum.write_text("garbage")
    assert "unreadable CHECKSUM" in verify_with_checksum_file(path, checksum).reason
    checksum.write_text(hashlib.sha256(path.read_bytes()).hexdigest() + "  x.zip")
    assert verify_with_checksum_file(path, checksum).ok


# ---- the plan ----------------------------------------------------------------------------------

LM = "2025-01-11T06:00:00.000Z"
LM_EPOCH = listed_epoch(LM)
Z = ArchiveFile("p/X-2025-01-10.zip", 100, LM, "e1")
C = ArchiveFile("p/X-2025-01-10.zip.CHECKSUM", 91, LM, "e2")
FRESH = LM_EPOCH + 3600  # a local copy written after the upload


def _rec(f: ArchiveFile, **kw) -> Record:
    values = dict(key=f.key, size=f.size, last_modified=f.last_modified, etag=f.etag, sha256="s")
    values.update(kw)
    return Record(**values)


@pytest.mark.parametrize(
    ("local", "records", "action"),
    [
        ({}, {}, FETCH),  # nothing here
        ({"X-2025-01-10.zip": LocalFile(100, FRESH), "X-2025-01-10.zip.CHECKSUM": LocalFile(91, FRESH)},
         {Z.key: _rec(Z), C.key: _rec(C)}, SKIP),  # recorded and present
        ({"X-2025-01-10.zip.CHECKSUM": LocalFile(91, FRESH)}, {Z.key: _rec(Z), C.key: _rec(C)}, FETCH),  # zip deleted
        ({"X-2025-01-10.zip": LocalFile(100, FRESH), "X-2025-01-10.zip.CHECKSUM": LocalFile(91, FRESH)},
         {Z.key: _rec(Z, last_modified="2025-01-11T05:00:00.000Z"), C.key: _rec(C)}, FETCH),  # re-uploaded
        ({"X-2025-01-10.zip": LocalFile(100, FRESH), "X-2025-01-10.zip.CHECKSUM": LocalFile(91, FRESH)},
         {Z.key: _rec(Z, size=99), C.key: _rec(C)}, FETCH),  # re-uploaded with another size
        ({"X-2025-01-10.zip": LocalFile(100, FRESH), "X-2025-01-10.zip.CHECKSUM": LocalFile(91, FRESH),
          "X-2025-01-10.zip.verified": LocalFile(0, FRESH)}, {}, ADOPT),  # a bhds.py tree
        ({"X-2025-01-10.zip": LocalFile(100, FRESH), "X-2025-01-10.zip.CHECKSUM": LocalFile(91, FRESH)}, {}, CHECK),
        ({"X-2025-01-10.zip": LocalFile(100, LM_EPOCH - 86400), "X-2025-01-10.zip.CHECKSUM": LocalFile(91, FRESH),
          "X-2025-01-10.zip.verified": LocalFile(0, FRESH)}, {}, FETCH),  # older than the upload: stale
        ({"X-2025-01-10.zip": LocalFile(50, FRESH), "X-2025-01-10.zip.CHECKSUM": LocalFile(91, FRESH),
          "X-2025-01-10.zip.verified": LocalFile(0, FRESH)}, {}, FETCH),  # partial (legacy aria2 leftover)
        ({"X-2025-01-10.zip": LocalFile(100, FRESH), "X-2025-01-10.zip.CHECKSUM": LocalFile(91, FRESH),
          "X-2025-01-10.zip.verified": LocalFile(0, FRESH)}, {Z.key: _rec(Z, last_modified=None)}, ADOPT),  # verified offline
    ],
)
def test_plan_pair(local, records, action):
    plan = plan_directory([C, Z], local, records, markers=True)
    assert [(u.action, u.main, u.checksum) for u in plan.units] == [(action, Z, C)]


def test_plan_without_markers_hashes_instead_of_adopting():
    local = {"X-2025-01-10.zip": LocalFile(100, FRESH), "X-2025-01-10.zip.CHECKSUM": LocalFile(91, FRESH),
             "X-2025-01-10.zip.verified": LocalFile(0, FRESH)}
    assert plan_directory([Z, C], local, {}, markers=False).units[0].action == CHECK


def test_plan_keeps_lone_keys_as_their_own_units():
    lone_sum = ArchiveFile("p/Y.zip.CHECKSUM", 91, LM, "e3")
    other = ArchiveFile("p/readme.txt", 5, LM, "e4")
    plan = plan_directory([Z, lone_sum, other], {"readme.txt": LocalFile(5, FRESH)}, {}, markers=True)
    assert [(u.action, u.main.key, u.checksum) for u in plan.units] == [
        (FETCH, Z.key, None), (FETCH, lone_sum.key, None), (ADOPT, other.key, None)]
    assert plan.count(FETCH) == 2


def test_scan_dir_sweeps_part_files(tmp_path):
    (tmp_path / "a.zip").write_bytes(b"x")
    (tmp_path / "b.zip.part").write_bytes(b"partial")
    (tmp_path / "sub").mkdir()
    found, swept = scan_dir(tmp_path)
    assert set(found) == {"a.zip"} and swept == 1 and not (tmp_path / "b.zip.part").exists()
    assert scan_dir(tmp_path / "missing") == ({}, 0)


# ---- the manifest ------------------------------------------------------------------------------

def test_manifest_prefix_reads_and_batched_writes(tmp_path):
    conn = sqlite3.connect(tmp_path / "s.sqlite", isolation_level=None)
    manifest = Manifest(conn, lambda: "2025-01-13T00:00:00+00:00")
    manifest.put("data/a/BTC/1m/x.zip", 1, LM, "e", "s1")
    manifest.put("data/a/BTCUP/1m/y.zip", 2, LM, "e", "s2")
    manifest.put("data/a/BTC/1m/z.zip", 3, None, None, "s3")
    assert manifest.under("data/a/BTC/") == {}  # not flushed yet
    manifest.flush()
    assert set(manifest.under("data/a/BTC/")) == {"data/a/BTC/1m/x.zip", "data/a/BTC/1m/z.zip"}
    manifest.forget("data/a/BTC/1m/x.zip")
    manifest.flush()
    assert set(manifest.under("data/a/")) == {"data/a/BTCUP/1m/y.zip", "data/a/BTC/1m/z.zip"}
    assert manifest.get("data/a/BTC/1m/z.zip") == Record("data/a/BTC/1m/z.zip", 3, None, None, "s3", "2025-01-13T00:00:00+00:00")


# ---- markers -----------------------------------------------------------------------------------

def test_markers_are_empty_files_sharing_one_inode(tmp_path):
    from bhds.archive.markers import MarkerWriter
    from bhds.paths import Layout

    layout = Layout(tmp_path / "binance_data")
    zips = [tmp_path / "binance_data" / "aws_data" / f"d{i}" / f"X-{i}.zip" for i in range(3)]
    for z in zips:
        z.parent.mkdir(parents=True)
        z.write_bytes(b"zip")
    writer = MarkerWriter(layout)
    for z in zips:
        writer.mark(z)
        writer.mark(z)  # marking twice is harmless
    markers = [z.with_name(z.name + ".verified") for z in zips]
    assert all(m.is_file() and m.stat().st_size == 0 for m in markers)
    assert len({m.stat().st_ino for m in markers}) == 1 and markers[0].stat().st_nlink == 4  # 3 markers + template
    MarkerWriter.unmark(zips[0])
    assert not markers[0].exists() and markers[1].exists()


def test_markers_fall_back_to_plain_files_without_hard_links(tmp_path, monkeypatch):
    import errno
    import os as os_module

    from bhds.archive import markers as markers_module
    from bhds.paths import Layout

    def no_links(src, dst):
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr(os_module, "link", no_links)
    z = tmp_path / "X.zip"
    z.write_bytes(b"zip")
    markers_module.MarkerWriter(Layout(tmp_path / "binance_data")).mark(z)
    marker = tmp_path / "X.zip.verified"
    assert marker.is_file() and marker.stat().st_size == 0 and os_module.stat(marker).st_nlink == 1


def test_a_new_template_when_the_link_limit_is_near(tmp_path, monkeypatch):
    from bhds.archive import markers as markers_module
    from bhds.paths import Layout

    monkeypatch.setattr(markers_module, "LINKS_PER_TEMPLATE", 3)
    layout = Layout(tmp_path / "binance_data")
    zips = [tmp_path / f"X-{i}.zip" for i in range(5)]
    for z in zips:
        z.write_bytes(b"zip")
    for z in zips:
        markers_module.MarkerWriter(layout).mark(z)  # a new writer per file, like separate runs
    inodes = {z.with_name(z.name + ".verified").stat().st_ino for z in zips}
    assert len(inodes) >= 2 and all(z.with_name(z.name + ".verified").stat().st_size == 0 for z in zips)
