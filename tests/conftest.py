"""Shared fixtures: the synthetic archive, a fake Binance serving it, a data root, the env."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.fakebinance import RunningFake, build_archive, default_universe, start_in_thread
from tests.motoserver import s3_bucket, s3_server  # noqa: F401  (fixtures: a real S3 server on loopback)

# Intervals written for every symbol of the default archive.
DEFAULT_ARCHIVE_INTERVALS = ("1m", "1h")


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            st = os.stat(os.path.join(dirpath, f))
            out[os.path.join(dirpath, f)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="session")
def default_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default universe's archive, built once per session (treat it as read-only)."""
    root = tmp_path_factory.mktemp("default_archive")
    build_archive(default_universe(), root, intervals=DEFAULT_ARCHIVE_INTERVALS, compress_level=1)
    return root


@pytest.fixture
def fake_binance(default_archive: Path, tmp_path: Path):
    """A fresh fake Binance over a private copy of the default archive (mutate it freely).

    The copy is made of hard links, so change files only by replacing them (the helpers in
    tests.fakebinance.archive do, and so does deleting); writing into an existing file in
    place would alter the shared archive, and is reported as an error at teardown.
    """
    root = tmp_path / "bucket"
    shutil.copytree(default_archive, root, copy_function=os.link)
    before = _snapshot(default_archive)
    fake: RunningFake = start_in_thread(root)
    try:
        yield fake
    finally:
        fake.stop()
    if _snapshot(default_archive) != before:
        pytest.fail("the shared default archive changed: a test wrote into a bucket file in place; "
                    "replace files instead (write a new file, then os.replace), e.g. with "
                    "tests.fakebinance.reupload()")


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """An empty CRYPTO_BASE_DIR."""
    root = tmp_path / "crypto_data"
    root.mkdir()
    return root


@pytest.fixture
def bhds_env(monkeypatch: pytest.MonkeyPatch, fake_binance: RunningFake, data_root: Path) -> dict[str, str]:
    """Environment aiming bhds at the fake: data root, the four URLs, 2 jobs, the fake's clock."""
    env = {
        "CRYPTO_BASE_DIR": str(data_root),
        **fake_binance.env,
        "CRYPTO_NJOBS": "2",
        "BHDS_NOW": fake_binance.universe.now_iso,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def fake_on_copy(default_archive: Path, work: Path, **faults) -> tuple[RunningFake, dict[str, str]]:
    """For module-scoped fixtures: a fake Binance on a hard-linked copy of the default archive in
    `work/bucket`, and a full environment (os.environ + the fake's URLs, 2 jobs, the fake's clock)
    aimed at `work/crypto`. The caller stops the fake."""
    bucket = work / "bucket"
    shutil.copytree(default_archive, bucket, copy_function=os.link)
    fake = start_in_thread(bucket, **faults)
    env = dict(os.environ, **fake.env, CRYPTO_BASE_DIR=str(work / "crypto"), CRYPTO_NJOBS="2",
               BHDS_NOW=fake.universe.now_iso)
    return fake, env


def store_after(default_archive: Path, work: Path, commands: list[list[str]]) -> tuple[Path, dict[str, str]]:
    """For module-scoped fixtures: run bhds `commands` in turn against a fake on a copy of the default
    archive (see `fake_on_copy`); return the data root they filled and the environment (fake stopped)."""
    import subprocess
    import sys

    fake, env = fake_on_copy(default_archive, work)
    try:
        for argv in commands:
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve().parent.parent / "bhds.py"), *argv],
                                  env=env, capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, f"{' '.join(argv)}: {proc.stderr[-2000:]}"
    finally:
        fake.stop()
    return Path(env["CRYPTO_BASE_DIR"]), env
