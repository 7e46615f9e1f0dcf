"""Output folders that are symlinks (to another disk) stay links, and relative paths given to the scripts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import store_after

REPO = Path(__file__).resolve().parent.parent
GEN = ["generate", "kline-type", "spot", "1m", "--split-gaps", "--with-vwap", "--no-with-funding-rates"]
RESAMPLE = ["generate", "resample-type", "spot", "1h", "15m"]
KLINES_1M = Path("binance_data/results_data/spot/klines/1m")
RESAMPLED_1H = Path("binance_data/results_data/spot/resampled_klines/1h")


def bhds(argv: list[str], env: dict[str, str], base: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bhds.py"), *argv], cwd=REPO, env=dict(env, CRYPTO_BASE_DIR=str(base)),
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def generated(default_archive: Path, tmp_path_factory: pytest.TempPathFactory):
    """A data root with spot 1m parsed, generated and resampled (1h at 15m offsets), and the env."""
    return store_after(default_archive, tmp_path_factory.mktemp("symlinks"), [
        ["aws_kline", "download-spot", "1m"], ["aws_kline", "verify-type-all", "spot", "1m"],
        ["aws_kline", "parse-type-all", "spot", "1m"], GEN, RESAMPLE])


def frames(folder: Path) -> dict[str, pd.DataFrame]:
    return {p.relative_to(folder).as_posix(): pd.read_parquet(p) for p in sorted(folder.rglob("*.pqt"))}


def link_out(base: Path, folder: Path, disk: Path) -> Path:
    """Move `base/folder` onto `disk` (another "disk") and put an absolute symlink in its place."""
    outside = disk / folder.name
    disk.mkdir(parents=True)
    shutil.move(base / folder, outside)
    (base / folder).symlink_to(outside, target_is_directory=True)
    return outside


@pytest.mark.parametrize(("folder", "argv"), [(KLINES_1M, GEN), (RESAMPLED_1H, RESAMPLE)], ids=["kline-type", "resample-type"])
def test_a_symlinked_results_folder_stays_a_link_to_a_current_tree(generated, tmp_path: Path, folder: Path, argv: list[str]) -> None:
    base, env = generated
    reference = frames(base / folder)
    root = tmp_path / "crypto"
    shutil.copytree(base, root)
    outside = link_out(root, folder, tmp_path / "otherdisk")
    # The destination holds a stale file the next run must not keep, and a killed run's build folder.
    shutil.copy(next(outside.rglob("*.pqt")), outside / "OLDUSDT.pqt")
    (outside.parent / f".{outside.name}.deadbeef.bhds-build").mkdir()

    proc = bhds(argv, env, root)

    assert proc.returncode == 0, proc.stderr[-2000:]
    link = root / folder
    assert link.is_symlink() and Path(os.readlink(link)) == outside
    assert sorted(p.name for p in link.parent.iterdir()) == [folder.name]  # nothing left beside the link
    assert sorted(p.name for p in outside.parent.iterdir()) == [outside.name]  # nor beside its destination
    result = frames(outside)
    assert list(result) == list(reference)
    for name, frame in reference.items():
        pd.testing.assert_frame_equal(result[name], frame, check_exact=True)


def test_a_link_to_a_missing_folder_is_refused_and_nothing_is_built_there(generated, tmp_path: Path) -> None:
    base, env = generated
    root = tmp_path / "crypto"
    shutil.copytree(base, root)
    shutil.rmtree(root / KLINES_1M)
    unmounted = tmp_path / "unmounted" / "klines-1m"
    (root / KLINES_1M).symlink_to(unmounted, target_is_directory=True)

    proc = bhds(GEN, env, root)

    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("bhds: error:")]
    assert len(errors) == 1 and str(root / KLINES_1M) in errors[0] and "mount" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert (root / KLINES_1M).is_symlink() and not (tmp_path / "unmounted").exists()


@pytest.mark.parametrize("shell", ["bash", "sh"])  # `sh aws_download.sh` worked with the legacy scripts
def test_scripts_take_relative_paths_from_where_they_are_called(generated, tmp_path: Path, shell: str) -> None:
    """A relative CRYPTO_BASE_DIR (and PYTHON) means the caller's folder, not the repository the scripts cd into."""
    base, env = generated
    caller = tmp_path / "caller"
    shutil.copytree(base, caller / "store")
    wrapper = caller / "bin" / "py"  # a relative PYTHON, as `venv/bin/python` would be
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    env = {k: v for k, v in env.items() if k != "CRYPTO_BASE_DIR"}

    proc = subprocess.run([shell, str(REPO / "scripts" / "resample.sh")], cwd=caller, capture_output=True, text=True, timeout=600,
                          env=dict(env, CRYPTO_BASE_DIR="store", PYTHON="bin/py"))

    assert proc.returncode == 0, proc.stderr[-3000:]
    five = caller / "store/binance_data/results_data/spot/resampled_klines/5m/0m"
    assert sorted(p.name for p in five.glob("*.pqt")) == sorted(p.name for p in (base / KLINES_1M).glob("*.pqt"))
    assert not (REPO / "store").exists()
