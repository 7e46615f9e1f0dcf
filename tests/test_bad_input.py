"""Every bad input gets one clear line, a non-zero exit code, no traceback, and nothing on disk lost."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import fake_on_copy

REPO = Path(__file__).resolve().parent.parent
SPOT_1M = "binance_data/aws_data/data/spot/daily/klines/BTCUSDT/1m"
PARSED = "binance_data/parsed_data/spot/klines/BTCUSDT/1m"


def bhds(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bhds.py"), *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def prepared(default_archive: Path, tmp_path_factory: pytest.TempPathFactory):
    """A data root with spot BTCUSDT downloaded, verified, parsed and generated, plus a fake server."""
    work = tmp_path_factory.mktemp("badinput")
    fake, env = fake_on_copy(default_archive, work)
    base = Path(env["CRYPTO_BASE_DIR"])
    for argv in (["aws_kline", "download", "spot", "1m", "BTCUSDT"], ["aws_kline", "verify", "spot", "1m", "BTCUSDT"],
                 ["aws_kline", "parse", "spot", "1m", "BTCUSDT"], ["generate", "kline", "spot", "1m", "BTCUSDT"]):
        proc = bhds(argv, env)
        assert proc.returncode == 0, proc.stderr
    yield base, env, fake
    fake.stop()


def _zip_with(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _replace_zip(root: Path, day: str, content: bytes) -> None:
    """Swap one verified zip for `content` (and make its checksum match, so verify passes it)."""
    import hashlib

    zip_path = root / SPOT_1M / f"BTCUSDT-1m-{day}.zip"
    zip_path.write_bytes(content)
    (root / SPOT_1M / f"BTCUSDT-1m-{day}.zip.CHECKSUM").write_text(f"{hashlib.sha256(content).hexdigest()}  {zip_path.name}")
    (root / SPOT_1M / f"BTCUSDT-1m-{day}.zip.verified").unlink()  # as if freshly downloaded


def _two_csvs(root: Path) -> None:
    _replace_zip(root, "2025-01-05", _zip_with({"a.csv": b"1,2\n", "b.csv": b"3,4\n"}))


def _no_member(root: Path) -> None:
    _replace_zip(root, "2025-01-05", _zip_with({}))


def _garbage_row(root: Path) -> None:
    with zipfile.ZipFile(root / SPOT_1M / "BTCUSDT-1m-2025-01-05.zip") as zf:
        text = zf.read(zf.namelist()[0])
    lines = text.splitlines()
    lines[100] = b"this,is,not,a,kline,row,at,all,!,?,x,y"
    _replace_zip(root, "2025-01-05", _zip_with({"BTCUSDT-1m-2025-01-05.csv": b"\n".join(lines) + b"\n"}))


def _one_token_checksum(root: Path) -> None:
    path = root / SPOT_1M / "BTCUSDT-1m-2025-01-06.zip"
    (path.parent / (path.name + ".CHECKSUM")).write_text("deadbeef")
    for marker in (path.parent / (path.name + ".verified"),):
        marker.unlink(missing_ok=True)


def _corrupt_partition(root: Path) -> None:
    (root / PARSED / "202501.pqt").write_bytes(b"PAR1 not really parquet PAR1")


def _base_dir_is_file(root: Path) -> None:
    (root.parent / "a-file").write_text("x")


# (id, argv, env overrides (use {root} / {file}), mutation of the prepared copy, expected exit, text in stderr)
CASES = [
    ("unknown trade type", ["aws_kline", "parse", "futures", "1m", "BTCUSDT"], {}, None, 2, "is not one of 'spot', 'um_futures', 'cm_futures'"),
    ("unknown contract type", ["aws_kline", "download-um-futures", "1m", "--contract-type", "SWAP"], {}, None, 2, "is not one of 'PERPETUAL', 'DELIVERY'"),
    ("interval 7x", ["aws_kline", "parse", "spot", "7x", "BTCUSDT"], {}, None, 2, "'7x' is not an interval"),
    ("interval 0m", ["aws_kline", "download-spot", "0m"], {}, None, 2, "'0m' is zero"),
    ("empty interval", ["aws_kline", "verify", "spot", "", "BTCUSDT"], {}, None, 2, "is not an interval"),
    ("interval not on the archive", ["aws_kline", "download", "spot", "7m", "BTCUSDT"], {}, None, 2, "not published by Binance"),
    ("api interval 7x", ["api_data", "download-aws-missing-kline", "spot", "7x", "BTCUSDT"], {}, None, 2, "is not an interval"),
    ("generate interval 7x", ["generate", "kline", "spot", "7x", "BTCUSDT"], {}, None, 2, "is not an interval"),
    ("resample interval 1x", ["generate", "resample", "spot", "BTCUSDT", "1x", "5m"], {}, None, 2, "is not an interval"),
    ("base offset not below interval", ["generate", "resample-type", "spot", "1h", "1h"], {}, None, 2, "offset"),
    ("base offset 0h", ["generate", "resample-type", "spot", "1h", "0h"], {}, None, 2, "0h"),
    ("base offset not dividing", ["generate", "resample-type", "spot", "1h", "7m"], {}, None, 2, "offset"),
    ("min-days -1", ["generate", "kline-type", "spot", "1m", "--min-days", "-1"], {}, None, 2, "min-days"),
    ("min-price-chg negative", ["generate", "kline-type", "spot", "1m", "--min-price-chg", "-0.5"], {}, None, 2, "min-price-chg"),
    ("concurrency 0", ["aws_kline", "download-spot", "1m", "--concurrency", "0"], {}, None, 2, "--concurrency"),
    ("unknown symbol on the API", ["api_data", "download-kline", "spot", "1m", "NOSUCHCOIN", "20250105"], {}, None, 3, "NOSUCHCOIN"),
    ("a date that is not a date", ["api_data", "download-kline", "spot", "1m", "BTCUSDT", "2025-13-45"], {}, None, 2, "2025-13-45"),
    ("a date that is not a date (word)", ["api_data", "download-kline", "spot", "1m", "BTCUSDT", "yesterday"], {}, None, 2, "yesterday"),
    ("CRYPTO_BASE_DIR is a file", ["aws_kline", "parse", "spot", "1m", "BTCUSDT"], {"CRYPTO_BASE_DIR": "{file}"}, _base_dir_is_file, 1, "CRYPTO_BASE_DIR"),
    ("CRYPTO_BASE_DIR unwritable", ["aws_kline", "parse", "spot", "1m", "BTCUSDT"], {"CRYPTO_BASE_DIR": "/proc/bhds-data"}, None, 1, "/proc/bhds-data"),
    ("CRYPTO_NJOBS=abc", ["aws_kline", "verify", "spot", "1m", "BTCUSDT"], {"CRYPTO_NJOBS": "abc"}, None, 1, "CRYPTO_NJOBS"),
    ("proxy not a URL", ["aws_kline", "download", "spot", "1m", "BTCUSDT", "--http-proxy", "proxy:3128"], {}, None, 1, "--http-proxy"),
    ("proxy env not a URL", ["aws_kline", "download", "spot", "1m", "BTCUSDT"], {"HTTP_PROXY": "not a url"}, None, 1, "HTTP_PROXY"),
    ("bad BHDS_AWS_URL", ["aws_kline", "download", "spot", "1m", "BTCUSDT"], {"BHDS_AWS_URL": "s3.example"}, None, 1, "BHDS_AWS_URL"),
    ("corrupted Parquet partition", ["generate", "kline", "spot", "1m", "BTCUSDT"], {}, _corrupt_partition, 1, "202501.pqt"),
    ("corrupted partition, whole type", ["generate", "kline-type", "spot", "1m"], {}, _corrupt_partition, 3, "202501.pqt"),
    ("zip holding two CSVs", ["aws_kline", "parse", "spot", "1m", "BTCUSDT", "--force-update"], {}, _two_csvs, 3, "BTCUSDT-1m-2025-01-05.zip"),
    ("zip holding no CSV", ["aws_kline", "parse", "spot", "1m", "BTCUSDT", "--force-update"], {}, _no_member, 3, "BTCUSDT-1m-2025-01-05.zip"),
    ("CSV with a garbage row", ["aws_kline", "parse", "spot", "1m", "BTCUSDT", "--force-update"], {}, _garbage_row, 3, "BTCUSDT-1m-2025-01-05.zip"),
    (".CHECKSUM with one token", ["aws_kline", "verify", "spot", "1m", "BTCUSDT"], {}, _one_token_checksum, 3, "BTCUSDT-1m-2025-01-06.zip"),
    ("funding for spot", ["aws_funding", "parse-type-all", "spot"], {}, None, 2, "spot"),
    ("recent funding for spot", ["api_data", "download-recent-funding", "spot", "BTCUSDT"], {}, None, 2, "spot"),
]


def _files(root: Path) -> dict[str, bytes]:
    data = root / "binance_data"
    return {p.relative_to(data).as_posix(): p.read_bytes() for p in data.rglob("*")
            if p.is_file() and not p.relative_to(data).as_posix().startswith(".bhds/")}


@pytest.mark.parametrize(("argv", "env_over", "mutate", "code", "text"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(prepared, tmp_path: Path, argv, env_over, mutate, code: int, text: str) -> None:
    base, env, _ = prepared
    root = tmp_path / "root"
    shutil.copytree(base, root)
    if mutate:
        mutate(root)
    env = dict(env, CRYPTO_BASE_DIR=str(root))
    env.update({k: v.format(root=root, file=root.parent / "a-file") for k, v in env_over.items()})
    if mutate in (_two_csvs, _no_member, _garbage_row):
        # As Binance would serve it: the bad zip has a matching checksum, so it passes verify.
        assert bhds(["aws_kline", "verify", "spot", "1m", "BTCUSDT"], env).returncode == 0
    before = _files(root)
    proc = bhds(argv, env)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert text in proc.stderr, proc.stderr
    messages = [line for line in proc.stderr.splitlines() if line.startswith(("bhds: error:", "bhds: failed:", "Error:"))]
    assert messages, proc.stderr
    after = _files(root)
    lost = [name for name in before if name not in after and not name.startswith(SPOT_1M.removeprefix("binance_data/"))]
    assert lost == []
    # Files the command did not mean to replace keep their bytes; a corrupt input stays for inspection.
    if mutate is _corrupt_partition:
        assert after[f"{PARSED.removeprefix('binance_data/')}/202501.pqt"] == before[f"{PARSED.removeprefix('binance_data/')}/202501.pqt"]


def test_s3_error_xml_instead_of_a_listing(prepared, tmp_path: Path) -> None:
    base, env, fake = prepared
    fake.faults.s3_error_xml = "AccessDenied"
    try:
        proc = bhds(["aws_kline", "download-spot", "1m"], dict(env, CRYPTO_BASE_DIR=str(tmp_path)))
    finally:
        fake.faults.s3_error_xml = None
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "AccessDenied" in proc.stderr or "403" in proc.stderr, proc.stderr


def test_rest_answer_that_is_html(prepared, tmp_path: Path) -> None:
    base, env, fake = prepared
    root = tmp_path / "root"
    shutil.copytree(base, root)
    fake.faults.rest_html = 200
    try:
        proc = bhds(["api_data", "download-kline", "spot", "1m", "BTCUSDT", "20250111"], dict(env, CRYPTO_BASE_DIR=str(root)))
    finally:
        fake.faults.rest_html = None
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "html" in proc.stderr.lower() or "json" in proc.stderr.lower(), proc.stderr
    assert not (root / "binance_data/api_data/spot/klines/BTCUSDT/1m/20250111.pqt").exists()


def test_disk_full_while_writing(prepared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """Simulated ENOSPC on every rename into place: one line, non-zero, previous results intact."""
    import errno

    from bhds.cli import main

    base, env, _ = prepared
    root = tmp_path / "root"
    shutil.copytree(base, root)
    before = _files(root)
    for key, value in dict(env, CRYPTO_BASE_DIR=str(root), CRYPTO_NJOBS="1").items():
        monkeypatch.setenv(key, value)

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "kline", "spot", "1m", "BTCUSDT"])
    assert exit_info.value.code not in (0, None)
    err = capsys.readouterr().err
    assert "disk full" in err and "Traceback" not in err
    assert _files(root) == before
