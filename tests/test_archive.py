"""The archive mirror end to end, through the CLI, against the fake Binance.

Each test starts from an empty data root and a private copy of the default archive, so it may
break the bucket (re-upload, corrupt, delete) as it likes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from bhds.cli import main
from tests.fakebinance import (
    corrupt_zip_keep_checksum,
    corrupt_zip_with_valid_checksum,
    funding_key,
    kline_key,
    remove_checksum,
    reupload,
)

REPO = Path(__file__).resolve().parent.parent
SPOT_KLINES = "data/spot/daily/klines/"
# download-spot with the defaults (quote USDT, no stablecoins, no leveraged tokens) on the default universe.
SPOT_USDT = ["BTCUSDT", "ETHUSDT", "JUPUSDT", "LUNAUSDT", "PENGUUSDT", "WAVESUSDT"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """`python bhds.py argv...` in-process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as stop:
        main(list(argv))
    out, err = capsys.readouterr()
    return stop.value.code, out, err


def aws_root(data_root: Path) -> Path:
    return data_root / "binance_data" / "aws_data"


def bucket_files(bucket: Path, prefix: str) -> dict[str, bytes]:
    """Every published key under `prefix` with its bytes."""
    base = bucket / prefix
    return {str(p.relative_to(bucket)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def local_files(data_root: Path, prefix: str, *, suffix_excluded: str = ".verified") -> dict[str, bytes]:
    base = aws_root(data_root) / prefix
    if not base.exists():
        return {}
    return {str(p.relative_to(aws_root(data_root))): p.read_bytes() for p in sorted(base.rglob("*"))
            if p.is_file() and not p.name.endswith(suffix_excluded)}


def symbols_under(bucket: Path, prefix: str, symbols: list[str], interval: str = "1m") -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for symbol in symbols:
        out.update(bucket_files(bucket, f"{prefix}{symbol}/{interval}/"))
    return out


def markers_complete(data_root: Path, prefix: str) -> bool:
    """Every zip under `prefix` has its `.verified` marker, and no marker is orphaned."""
    base = aws_root(data_root) / prefix
    zips = {p for p in base.rglob("*.zip")}
    marks = {p.with_name(p.name[: -len(".verified")]) for p in base.rglob("*.verified")}
    return bool(zips) and zips == marks


def leftovers(data_root: Path) -> list[Path]:
    return [p for p in aws_root(data_root).rglob("*") if p.name.endswith(".part") or ".bhds-tmp" in p.name]


def summary_value(out: str, name: str) -> str:
    for token in out.split():
        if token.startswith(name + "="):
            return token.split("=", 1)[1]
    raise AssertionError(f"{name}= not in {out!r}")


def object_gets(fake) -> int:
    """Object downloads the fake served (listing requests excluded)."""
    return sum(n for path, n in fake.stats.requests.items() if path.startswith("/data.binance.vision/data/"))


# ---- download ---------------------------------------------------------------------------------

def test_download_spot_mirrors_the_selected_symbols_byte_for_byte(bhds_env, fake_binance, data_root, capsys):
    code, out, err = run(capsys, "aws_kline", "download-spot", "1m")
    assert code == 0, err
    expected = symbols_under(fake_binance.root, SPOT_KLINES, SPOT_USDT)
    assert local_files(data_root, SPOT_KLINES) == expected
    assert markers_complete(data_root, SPOT_KLINES)
    assert summary_value(out, "files") == str(len(expected))
    assert summary_value(out, "listed") == str(len(expected))
    assert summary_value(out, "symbols") == "6"
    assert not leftovers(data_root)
    # Only the filtered symbols were touched: no stablecoin, leveraged token or other quote.
    assert sorted(p.name for p in (aws_root(data_root) / SPOT_KLINES).iterdir()) == SPOT_USDT


def test_quote_fdusd_works(bhds_env, fake_binance, data_root, capsys):
    code, out, err = run(capsys, "aws_kline", "download-spot", "1h", "--quote", "FDUSD")
    assert code == 0, err
    assert sorted(p.name for p in (aws_root(data_root) / SPOT_KLINES).iterdir()) == ["BTCFDUSD"]
    assert local_files(data_root, SPOT_KLINES) == symbols_under(fake_binance.root, SPOT_KLINES, ["BTCFDUSD"], "1h")


def test_download_with_both_flags_adds_stablecoins_and_leveraged_tokens(bhds_env, fake_binance, data_root, capsys):
    code, _, err = run(capsys, "aws_kline", "download-spot", "1h", "--stablecoins", "--leverage-coins")
    assert code == 0, err
    names = sorted(p.name for p in (aws_root(data_root) / SPOT_KLINES).iterdir())
    assert names == sorted(SPOT_USDT + ["BTCUPUSDT", "USDCUSDT"])


def test_um_and_cm_filters(bhds_env, fake_binance, data_root, capsys):
    code, _, err = run(capsys, "aws_kline", "download-um-futures", "1h", "--contract-type", "DELIVERY")
    assert code == 0, err
    assert [p.name for p in (aws_root(data_root) / "data/futures/um/daily/klines").iterdir()] == ["BTCUSDT_250328"]
    code, _, err = run(capsys, "aws_kline", "download-cm-futures", "1h", "--concurrency", "1")
    assert code == 0, err
    assert sorted(p.name for p in (aws_root(data_root) / "data/futures/cm/daily/klines").iterdir()) == ["BTCUSD_PERP", "ETHUSD_PERP"]


def test_no_op_rerun_lists_only(bhds_env, fake_binance, data_root, capsys):
    assert run(capsys, "aws_kline", "download", "spot", "1m", "BTCUSDT", "ETHUSDT")[0] == 0
    before = local_files(data_root, SPOT_KLINES, suffix_excluded="\0")
    gets = object_gets(fake_binance)
    code, out, err = run(capsys, "aws_kline", "download", "spot", "1m", "BTCUSDT", "ETHUSDT")
    assert code == 0, err
    assert object_gets(fake_binance) == gets  # nothing fetched: only the two listings
    assert summary_value(out, "files") == "0"
    assert summary_value(out, "skipped") == str(len(before) - len([k for k in before if k.endswith(".verified")]))
    assert local_files(data_root, SPOT_KLINES, suffix_excluded="\0") == before


@pytest.mark.parametrize("streamed", [False, True], ids=["in-memory", "streamed"])
def test_flaky_server_still_ends_with_every_file_present_and_verified(bhds_env, fake_binance, data_root, capsys,
                                                                      monkeypatch, streamed):
    if streamed:  # every zip through the `.part` streaming path that large files take
        monkeypatch.setattr("bhds.archive.mirror.SMALL_BODY_BYTES", 0)
    fake_binance.faults.error_rate = 0.05
    fake_binance.faults.truncate_rate = 0.02
    fake_binance.faults.seed = 11
    code, out, err = run(capsys, "aws_kline", "download-spot", "1m", "--concurrency", "8")
    assert code == 0, err
    assert fake_binance.stats.sent_5xx > 0 and fake_binance.stats.truncations > 0  # the faults did happen
    assert local_files(data_root, SPOT_KLINES) == symbols_under(fake_binance.root, SPOT_KLINES, SPOT_USDT)
    assert markers_complete(data_root, SPOT_KLINES)
    assert not leftovers(data_root)
    # And verify agrees with the markers: nothing left to check.
    for marker in (aws_root(data_root) / SPOT_KLINES).rglob("*.verified"):
        marker.unlink()
    code, out, err = run(capsys, "aws_kline", "verify-type-all", "spot", "1m")
    assert code == 0, err
    assert summary_value(out, "failed") == "0"


@pytest.mark.parametrize("streamed", [False, True], ids=["in-memory", "streamed"])
def test_reupload_is_detected_and_replaced(bhds_env, fake_binance, data_root, capsys, monkeypatch, streamed):
    if streamed:
        monkeypatch.setattr("bhds.archive.mirror.SMALL_BODY_BYTES", 0)
    assert run(capsys, "aws_kline", "download", "spot", "1m", "BTCUSDT")[0] == 0
    key = kline_key("spot", "BTCUSDT", "1m", date(2025, 1, 3))
    old = (aws_root(data_root) / key).read_bytes()
    reupload(fake_binance.root, key)
    code, out, err = run(capsys, "aws_kline", "download", "spot", "1m", "BTCUSDT")
    assert code == 0, err
    assert summary_value(out, "files") == "2"  # the zip and its CHECKSUM, nothing else
    new = (aws_root(data_root) / key).read_bytes()
    assert new != old and new == (fake_binance.root / key).read_bytes()
    assert (aws_root(data_root) / (key + ".CHECKSUM")).read_bytes() == (fake_binance.root / (key + ".CHECKSUM")).read_bytes()
    assert (aws_root(data_root) / (key + ".verified")).exists()
    with sqlite3.connect(data_root / "binance_data" / ".bhds" / "state.sqlite") as conn:
        (sha,) = conn.execute("SELECT sha256 FROM archive_files WHERE key = ?", (key,)).fetchone()
    assert sha == hashlib.sha256(new).hexdigest()


@pytest.mark.parametrize("streamed", [False, True], ids=["in-memory", "streamed"])
def test_corrupt_zip_with_stale_checksum_is_not_installed(bhds_env, fake_binance, data_root, capsys, monkeypatch, streamed):
    if streamed:
        monkeypatch.setattr("bhds.archive.mirror.SMALL_BODY_BYTES", 0)
    key = kline_key("spot", "ETHUSDT", "1m", date(2025, 1, 5))
    corrupt_zip_keep_checksum(fake_binance.root, key)
    code, out, err = run(capsys, "aws_kline", "download", "spot", "1m", "ETHUSDT")
    assert code == 3
    assert key in err and "differs from its CHECKSUM" in err
    assert summary_value(out, "failed") == "1"
    assert not (aws_root(data_root) / key).exists()
    assert not leftovers(data_root)


@pytest.mark.parametrize("streamed", [False, True], ids=["in-memory", "streamed"])
def test_broken_zip_with_matching_checksum_is_caught(bhds_env, fake_binance, data_root, capsys, monkeypatch, streamed):
    if streamed:
        monkeypatch.setattr("bhds.archive.mirror.SMALL_BODY_BYTES", 0)
    key = kline_key("spot", "ETHUSDT", "1m", date(2025, 1, 6))
    corrupt_zip_with_valid_checksum(fake_binance.root, key)
    code, out, err = run(capsys, "aws_kline", "download", "spot", "1m", "ETHUSDT")
    assert code == 3
    assert key in err and "broken zip" in err
    assert not (aws_root(data_root) / key).exists()


def test_404_for_a_listed_key_is_reported_and_the_rest_is_mirrored(bhds_env, fake_binance, data_root, capsys):
    key = kline_key("spot", "BTCUSDT", "1m", date(2025, 1, 4))
    fake_binance.faults.status_override[f"/data.binance.vision/{key}"] = 404
    code, out, err = run(capsys, "aws_kline", "download", "spot", "1m", "BTCUSDT")
    assert code == 3
    assert "no longer published" in err or "not published" in err
    assert key in err
    expected = {k: v for k, v in symbols_under(fake_binance.root, SPOT_KLINES, ["BTCUSDT"]).items() if not k.startswith(key)}
    assert local_files(data_root, SPOT_KLINES) == expected


def test_listing_with_small_pages_and_no_next_marker(bhds_env, fake_binance, data_root, capsys):
    fake_binance.faults.page_size = 3
    fake_binance.faults.omit_next_marker = True
    code, out, err = run(capsys, "aws_kline", "download-spot", "1h")
    assert code == 0, err
    assert local_files(data_root, SPOT_KLINES) == symbols_under(fake_binance.root, SPOT_KLINES, SPOT_USDT, "1h")


def test_more_than_1000_keys_in_one_directory(bhds_env, fake_binance, data_root, capsys):
    prefix = "data/spot/daily/klines/ZZZUSDT/1m/"
    keys = fake_binance.add_dummy_keys(prefix, 1234, name="ZZZUSDT-1m-{i:05d}.dat", size=8)
    code, out, err = run(capsys, "aws_kline", "download", "spot", "1m", "ZZZUSDT")
    assert code == 0, err
    assert summary_value(out, "listed") == "1234"
    assert sorted(local_files(data_root, prefix)) == sorted(keys)
    listing_pages = fake_binance.stats.requests["/data.binance.vision"]
    assert listing_pages == 2


@pytest.fixture
def fast_retries(monkeypatch):
    """Retries without the default policy's back-off (seconds to minutes), so failure paths run fast."""
    import bhds.workflows.archive as workflow
    from bhds.net import RetryPolicy

    monkeypatch.setattr(workflow, "RETRY_POLICY", RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.02, max_total=5))


def test_failed_listing_pages_are_retried(bhds_env, fake_binance, data_root, capsys, fast_retries):
    fake_binance.faults.error_scope = "listing"
    fake_binance.faults.fail_first = 2  # every listing URL answers 503 twice, then works
    code, out, err = run(capsys, "aws_kline", "download-spot", "1h")
    assert code == 0, err
    assert local_files(data_root, SPOT_KLINES) == symbols_under(fake_binance.root, SPOT_KLINES, SPOT_USDT, "1h")


def test_a_dead_listing_fails_its_symbol_only(bhds_env, fake_binance, data_root, capsys, fast_retries):
    fake_binance.faults.error_scope = "listing"
    fake_binance.faults.fail_first = 99
    code, out, err = run(capsys, "aws_kline", "download", "spot", "1m", "BTCUSDT", "ETHUSDT")
    assert code == 3
    assert "data/spot/daily/klines/BTCUSDT/1m/: listing failed" in err
    assert summary_value(out, "failed") == "2"
    code, out, err = run(capsys, "aws_kline", "download-spot", "1m")
    assert code == 1  # without the symbol list nothing can be done
    assert "cannot list data/spot/daily/klines/" in err


def test_unknown_symbol_is_warned_about(bhds_env, fake_binance, data_root, capsys):
    code, out, err = run(capsys, "aws_kline", "download", "spot", "1m", "BTCUSDT", "NOSUCH")
    assert code == 2, err  # a symbol the archive does not list is a typo: the closest names, exit 2
    assert "bhds: error: symbol 'NOSUCH' not listed in the archive under " in err
    assert (aws_root(data_root) / "data/spot/daily/klines/BTCUSDT/1m").is_dir()  # the others were downloaded
    # Listed, but not in that interval: only a warning.
    code, out, err = run(capsys, "aws_kline", "download", "spot", "3m", "BTCUSDT")
    assert code == 0, err
    assert "nothing is listed under data/spot/daily/klines/BTCUSDT/3m/" in err
    assert summary_value(out, "empty_dirs") == "1"


def test_interrupted_run_then_rerun_equals_a_clean_run(bhds_env, fake_binance, data_root, capsys):
    fake_binance.faults.latency = 0.02
    proc = subprocess.Popen([sys.executable, str(REPO / "bhds.py"), "aws_kline", "download-spot", "1m", "--concurrency", "4"],
                            env={**os.environ, **bhds_env}, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    base = aws_root(data_root) / SPOT_KLINES
    while time.monotonic() < deadline and len(list(base.rglob("*.zip"))) < 20:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(list(base.rglob("*.zip"))) < 86  # it really was cut short
    # What else a kill can leave: a partial body and a zip renamed but not yet marked or recorded.
    some_zip = next(base.rglob("*.zip"))
    (some_zip.parent / "JUNK.zip.part").write_bytes(b"partial")
    other = base / "PENGUUSDT" / "1m" / "PENGUUSDT-1m-2025-01-02.zip"
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_bytes(b"PK\x03\x04 truncated")
    fake_binance.faults.latency = 0.0
    code, out, err = run(capsys, "aws_kline", "download-spot", "1m")
    assert code == 0, err
    assert local_files(data_root, SPOT_KLINES) == symbols_under(fake_binance.root, SPOT_KLINES, SPOT_USDT)
    assert markers_complete(data_root, SPOT_KLINES)
    assert not leftovers(data_root)


def test_tree_from_the_legacy_tool_is_adopted_without_downloading(bhds_env, fake_binance, data_root, capsys):
    # bhds.py's tree: the keys plus empty .verified markers, no bhds state database.
    prefix = f"{SPOT_KLINES}BTCUSDT/1m/"
    for key, data in bucket_files(fake_binance.root, prefix).items():
        target = aws_root(data_root) / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if key.endswith(".zip"):
            target.with_name(target.name + ".verified").touch()
    gets = object_gets(fake_binance)
    code, out, err = run(capsys, "aws_kline", "verify", "spot", "1m", "BTCUSDT")
    assert code == 0, err
    assert summary_value(out, "files") == "0" and int(summary_value(out, "skipped")) > 0  # markers honoured: nothing hashed
    code, out, err = run(capsys, "aws_kline", "download", "spot", "1m", "BTCUSDT")
    assert code == 0, err
    assert object_gets(fake_binance) == gets
    assert summary_value(out, "files") == "0"
    assert summary_value(out, "adopted") == summary_value(out, "listed")


def test_unmarked_legacy_files_are_hashed_locally_not_downloaded(bhds_env, fake_binance, data_root, capsys):
    prefix = f"{SPOT_KLINES}JUPUSDT/1m/"
    published = bucket_files(fake_binance.root, prefix)
    for key, data in published.items():
        target = aws_root(data_root) / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    gets = object_gets(fake_binance)
    code, out, err = run(capsys, "aws_kline", "download", "spot", "1m", "JUPUSDT")
    assert code == 0, err
    assert object_gets(fake_binance) == gets
    assert markers_complete(data_root, SPOT_KLINES)


def test_liquidation_and_funding_downloads(bhds_env, fake_binance, data_root, capsys):
    code, out, err = run(capsys, "aws_liquidation", "download-um-futures")
    assert code == 0, err
    liq = "data/futures/um/daily/liquidationSnapshot/"
    assert local_files(data_root, liq) == bucket_files(fake_binance.root, liq)
    assert not list((aws_root(data_root) / liq).rglob("*.verified"))  # like bhds.py: mirrored, not marked
    code, out, err = run(capsys, "aws_funding", "download-cm-futures")
    assert code == 0, err
    fund = "data/futures/cm/monthly/fundingRate/"
    assert local_files(data_root, fund) == bucket_files(fake_binance.root, fund)
    assert markers_complete(data_root, fund)
    code, out, err = run(capsys, "aws_liquidation", "download", "spot", "BTCUSDT")
    assert code == 0, err
    assert summary_value(out, "listed") == "0"


# ---- verify -----------------------------------------------------------------------------------

def _unmark(data_root: Path, prefix: str) -> None:
    for marker in (aws_root(data_root) / prefix).rglob("*.verified"):
        marker.unlink()


def test_verify_catches_corruption_and_removes_the_pair(bhds_env, fake_binance, data_root, capsys):
    assert run(capsys, "aws_kline", "download", "spot", "1m", "BTCUSDT")[0] == 0
    _unmark(data_root, SPOT_KLINES)
    base = aws_root(data_root) / SPOT_KLINES / "BTCUSDT" / "1m"
    zips = sorted(base.glob("*.zip"))
    flipped, truncated = zips[0], zips[1]
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:100])
    code, out, err = run(capsys, "aws_kline", "verify", "spot", "1m", "BTCUSDT")
    assert code == 3
    assert summary_value(out, "failed") == "2" and summary_value(out, "removed") == "2"
    assert str(flipped) in err and str(truncated) in err
    for gone in (flipped, truncated):
        assert not gone.exists() and not Path(str(gone) + ".CHECKSUM").exists()
    assert summary_value(out, "files") == str(len(zips) - 2)
    assert all(Path(str(z) + ".verified").exists() for z in zips[2:])
    # The next download fetches exactly the two removed pairs again.
    code, out, err = run(capsys, "aws_kline", "download", "spot", "1m", "BTCUSDT")
    assert code == 0, err
    assert summary_value(out, "files") == "4"
    assert local_files(data_root, SPOT_KLINES) == symbols_under(fake_binance.root, SPOT_KLINES, ["BTCUSDT"])


def test_a_broken_zip_whose_checksum_matches_passes_verify_and_parse_names_and_skips_it(bhds_env, fake_binance, data_root, capsys):
    # A matching SHA-256 means Binance published these very bytes: verify does not inflate them
    # again. Parse reads every member through its CRC, so it is parse that names the zip and skips it.
    assert run(capsys, "aws_kline", "download", "spot", "1m", "ETHUSDT")[0] == 0
    _unmark(data_root, SPOT_KLINES)
    key = kline_key("spot", "ETHUSDT", "1m", date(2025, 1, 2))
    corrupt_zip_with_valid_checksum(fake_binance.root, key)
    # Plant the broken pair locally, as a tool that trusted the checksum would have.
    shutil.copyfile(fake_binance.root / key, aws_root(data_root) / key)
    shutil.copyfile(fake_binance.root / (key + ".CHECKSUM"), aws_root(data_root) / (key + ".CHECKSUM"))
    code, out, err = run(capsys, "aws_kline", "verify-type-all", "spot", "1m")
    assert code == 0, err
    assert (aws_root(data_root) / (key + ".verified")).exists()
    code, out, err = run(capsys, "aws_kline", "parse-type-all", "spot", "1m")
    assert code == 3
    assert summary_value(out, "failed") == "1"
    assert key.rsplit("/", 1)[1] in err and "not a readable zip" in err
    partitions = sorted((data_root / "binance_data" / "parsed_data" / "spot" / "klines" / "ETHUSDT" / "1m").glob("*.pqt"))
    assert partitions  # the other days were parsed


def test_verify_fetches_a_missing_checksum_instead_of_deleting(bhds_env, fake_binance, data_root, capsys):
    assert run(capsys, "aws_funding", "download", "um_futures", "BTCUSDT", "ETHUSDT")[0] == 0
    fund = "data/futures/um/monthly/fundingRate/"
    _unmark(data_root, fund)
    key = funding_key("um", "BTCUSDT", 2024, 12)
    (aws_root(data_root) / (key + ".CHECKSUM")).unlink()
    other = funding_key("um", "ETHUSDT", 2024, 12)
    (aws_root(data_root) / (other + ".CHECKSUM")).unlink()
    remove_checksum(fake_binance.root, other)  # this one cannot be fetched any more
    code, out, err = run(capsys, "aws_funding", "verify-type-all", "um_futures")
    assert code == 3
    assert (aws_root(data_root) / (key + ".verified")).exists()
    assert (aws_root(data_root) / (key + ".CHECKSUM")).read_bytes() == (fake_binance.root / (key + ".CHECKSUM")).read_bytes()
    assert (aws_root(data_root) / other).exists() and not (aws_root(data_root) / (other + ".verified")).exists()
    assert "no CHECKSUM is published" in err and "kept unverified" in err
    assert summary_value(out, "failed") == "1"


def test_verify_type_all_without_local_data_says_so(bhds_env, data_root, capsys):
    code, out, err = run(capsys, "aws_kline", "verify-type-all", "cm_futures", "1m")
    assert code == 0
    assert "no local cm_futures klines" in err
    assert summary_value(out, "symbols") == "0"
    code, out, err = run(capsys, "aws_funding", "verify-type-all", "um_futures")
    assert code == 0
    assert "no local um_futures funding rates" in err


def test_bad_interval_is_a_usage_error(bhds_env, capsys):
    code, _, err = run(capsys, "aws_kline", "download-spot", "7m")
    assert code == 2
    assert "7m" in err and "not published" in err


def test_verify_of_a_symbol_never_downloaded_says_so(bhds_env, data_root, capsys):
    code, out, err = run(capsys, "aws_kline", "verify", "spot", "1m", "NOSUCH")
    assert code == 0
    assert "NOSUCH" in err and "does not exist" in err
    assert summary_value(out, "missing_dirs") == "1"


def test_download_waits_for_nobody_when_the_stage_is_locked(bhds_env, data_root, capsys):
    from bhds.paths import Layout
    from bhds.storage import stage_lock

    with stage_lock(Layout(data_root / "binance_data"), "archive-spot-klines-1m"):
        code, _, err = run(capsys, "aws_kline", "download", "spot", "1m", "BTCUSDT")
    assert code == 75
    assert "archive-spot-klines-1m" in err
    # Another trade type is not blocked.
    assert run(capsys, "aws_kline", "download", "um_futures", "1h", "BTCUSDT_250328")[0] == 0


def test_the_proxy_is_used(bhds_env, data_root, capsys, fast_retries):
    # Nothing listens on port 9 of loopback: if the proxy is really used, the listing cannot work.
    code, _, err = run(capsys, "aws_kline", "download-spot", "1m", "--http-proxy", "http://127.0.0.1:9")
    assert code == 1
    assert "cannot list data/spot/daily/klines/" in err and "127.0.0.1:9" in err
