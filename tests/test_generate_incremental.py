"""Incremental `generate kline-type` and `resample-type`: only what changed is built again.

Each test checks by inode and mtime which result files were rewritten, and that the tree after
an incremental run equals a full rebuild's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from bhds.cli import main
from bhds.generate.contracts import CONTRACT_SIZES_CACHE
from bhds.paths import Layout
from bhds.storage import read_table
from bhds.types import TradeType
from bhds.workflows import generate
from tests.fakebinance import kline_key, reupload_corrected_hour
from tests.test_generate_support import klines, ms, settings_for, steps, write_api_day, write_archive, write_funding

REPO = Path(__file__).resolve().parent.parent
SPOT, UM, CM = TradeType.spot, TradeType.um_futures, TradeType.cm_futures
OPTIONS = dict(split_gaps=True, min_days=1, min_price_chg=0.1, with_vwap=True, with_funding_rates=True)
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")

Snapshot = dict[str, tuple[int, int, int]]


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "binance_data")


def kline_type(base: Path, trade_type: TradeType = SPOT, **options: object):
    return generate.kline_type(settings_for(base), trade_type=trade_type, time_interval="1m", **{**OPTIONS, **options})


def resample_type(base: Path, trade_type: TradeType = SPOT, offset: str = "15m"):
    return generate.resample_type(settings_for(base), trade_type=trade_type, resample_interval="1h", base_offset=offset)


def snapshot(root: Path) -> Snapshot:
    """Every file and folder under `root`: (inode, mtime_ns, size)."""
    out = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.stat()
        out[str(path.relative_to(root))] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return out


def rewritten(before: Snapshot, after: Snapshot) -> set[str]:
    """Result files that are new or not the same file (inode or mtime) as before, and those gone."""
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name) and name.endswith(".pqt")}


def tables(root: Path) -> dict[str, pa.Table]:
    return {str(p.relative_to(root)): read_table(p) for p in sorted(root.rglob("*.pqt"))}


def write_three(layout: Layout, trade_type: TradeType = SPOT) -> None:
    """Three symbols over two months with a long hole in BTCUSDT (so it has an SP0_ segment)."""
    t = steps("2024-01-30", "2024-02-03")
    for i, symbol in enumerate(SYMBOLS):
        kept = t if symbol != "BTCUSDT" else t[(t < ms("2024-01-31")) | (t >= ms("2024-02-02T12:00"))]
        price = np.where(kept < ms("2024-02-01"), 100.0 + i, 150.0 + i)
        write_archive(layout, trade_type, symbol, "1m", klines(kept, price, seed=i))


def full_rebuild_equals(tmp_path: Path, layout: Layout, trade_type: TradeType = SPOT, offset: str = "15m") -> None:
    """The results after the incremental runs equal what a run from nothing writes."""
    results = layout.root / "results_data"
    incremental = tables(results)
    shutil.rmtree(results)
    shutil.rmtree(layout.root / ".bhds" / "cache")
    kline_type(tmp_path, trade_type)
    resample_type(tmp_path, trade_type, offset)
    assert tables(results).keys() == incremental.keys()
    for name, table in tables(results).items():
        assert table.equals(incremental[name]), name


def test_a_second_run_with_nothing_changed_writes_nothing(tmp_path: Path, layout: Layout) -> None:
    write_three(layout)
    kline_type(tmp_path)
    resample_type(tmp_path)
    results = layout.root / "results_data"
    before = snapshot(results)
    record = snapshot(layout.root / ".bhds" / "cache")

    klines_summary = kline_type(tmp_path)
    resampled_summary = resample_type(tmp_path)
    assert snapshot(results) == before  # no file, no folder rewritten: not even the tree swapped
    assert snapshot(layout.root / ".bhds" / "cache") == record
    assert (klines_summary.files, klines_summary.notes) == (0, {"unchanged": 3})
    assert (resampled_summary.files, resampled_summary.notes) == (0, {"unchanged": 4})  # SP0_BTCUSDT, BTCUSDT, ETHUSDT, SOLUSDT


def test_one_changed_partition_rebuilds_that_symbol_and_its_resamples_only(tmp_path: Path, layout: Layout) -> None:
    write_three(layout)
    kline_type(tmp_path)
    resample_type(tmp_path)
    results = layout.root / "results_data"
    before = snapshot(results)

    # A re-parsed February for ETHUSDT: one day's prices differ.
    t = steps("2024-02-01", "2024-02-03")
    write_archive(layout, SPOT, "ETHUSDT", "1m", klines(t, np.where(t < ms("2024-02-02"), 151.0, 152.0), seed=1))
    summary = kline_type(tmp_path)
    assert (summary.files, summary.notes) == (1, {"unchanged": 2, "extended": 1})  # January kept, February re-encoded
    middle = snapshot(results)
    assert rewritten(before, middle) == {"spot/klines/1m/ETHUSDT.pqt"}
    summary = resample_type(tmp_path)
    assert (summary.files, summary.notes) == (4, {"unchanged": 3})
    after = snapshot(results)
    assert rewritten(middle, after) == {f"spot/resampled_klines/1h/{o}/ETHUSDT.pqt" for o in ("0m", "15m", "30m", "45m")}
    full_rebuild_equals(tmp_path, layout)


@pytest.mark.parametrize("change", ["api day", "archive funding", "api funding"])
def test_api_days_and_funding_files_are_inputs_too(tmp_path: Path, layout: Layout, change: str) -> None:
    write_three(layout, UM)
    for symbol in SYMBOLS:
        write_funding(layout, UM, symbol, [ms("2024-01-31T08:00")], [0.0001])
    kline_type(tmp_path, UM)
    resample_type(tmp_path, UM)
    before = snapshot(layout.root / "results_data")
    if change == "api day":
        t = steps("2024-02-03", "2024-02-04")
        write_api_day(layout, UM, "SOLUSDT", "1m", date(2024, 2, 3), klines(t, 152.0))
    else:
        write_funding(layout, UM, "SOLUSDT", [ms("2024-01-31T08:00"), ms("2024-01-31T16:00")], [0.0001, 0.0002], api=change == "api funding")
    kline_type(tmp_path, UM)
    resample_type(tmp_path, UM)
    changed = rewritten(before, snapshot(layout.root / "results_data"))
    assert changed and {Path(name).name for name in changed} == {"SOLUSDT.pqt"}
    full_rebuild_equals(tmp_path, layout, UM)


def test_a_changed_coin_m_contract_size_rebuilds_that_symbol(tmp_path: Path, layout: Layout) -> None:
    t = steps("2024-01-30", "2024-02-02")
    for i, (symbol, usd) in enumerate((("BTCUSD_PERP", 100.0), ("ETHUSD_PERP", 10.0))):
        table = klines(t, 100.0 + i, seed=i)  # `volume` counts contracts; `quote_volume` is the base-asset volume
        base_volume = table.column("volume").to_numpy() * usd / (100.0 + i)
        write_archive(layout, CM, symbol, "1m", table.set_column(6, "quote_volume", pa.array(base_volume)))
    sizes = layout.cache_file(CONTRACT_SIZES_CACHE)
    sizes.parent.mkdir(parents=True, exist_ok=True)
    sizes.write_text(json.dumps({"BTCUSD_PERP": 100.0, "ETHUSD_PERP": 10.0}))
    kline_type(tmp_path, CM)
    before = snapshot(layout.root / "results_data")
    sizes.write_text(json.dumps({"BTCUSD_PERP": 100.0, "ETHUSD_PERP": 20.0}))
    summary = kline_type(tmp_path, CM)
    assert (summary.files, summary.notes) == (1, {"unchanged": 1})
    assert rewritten(before, snapshot(layout.root / "results_data")) == {"cm_futures/klines/1m/ETHUSD_PERP.pqt"}


def test_other_options_rebuild_every_symbol(tmp_path: Path, layout: Layout) -> None:
    write_three(layout)
    kline_type(tmp_path)
    before = snapshot(layout.root / "results_data")
    summary = kline_type(tmp_path, split_gaps=False)
    assert (summary.files, summary.notes) == (3, {})
    after = snapshot(layout.root / "results_data")
    # BTCUSDT is one file now; the others have no gap, came out the same and stay the same files.
    assert rewritten(before, after) == {"spot/klines/1m/BTCUSDT.pqt", "spot/klines/1m/SP0_BTCUSDT.pqt"}
    assert "spot/klines/1m/SP0_BTCUSDT.pqt" not in after


def test_a_vanished_symbol_loses_its_outputs_and_the_rest_is_kept(tmp_path: Path, layout: Layout) -> None:
    write_three(layout)
    kline_type(tmp_path)
    resample_type(tmp_path)
    before = snapshot(layout.root / "results_data")
    shutil.rmtree(layout.aws_kline_symbols_dir(SPOT) / "BTCUSDT")
    assert kline_type(tmp_path).files == 0
    resample_type(tmp_path)
    after = snapshot(layout.root / "results_data")
    gone = rewritten(before, after)
    assert gone == {name for name in before if "BTCUSDT" in name}
    assert not any("BTCUSDT" in name for name in after)
    full_rebuild_equals(tmp_path, layout)


def test_an_output_deleted_or_rewritten_by_hand_is_built_again_and_strays_go(tmp_path: Path, layout: Layout) -> None:
    write_three(layout)
    kline_type(tmp_path)
    resample_type(tmp_path)
    klines_dir = layout.results_kline_dir(SPOT, "1m")
    (klines_dir / "ETHUSDT.pqt").unlink()
    shutil.copyfile(klines_dir / "BTCUSDT.pqt", klines_dir / "SOLUSDT.pqt")  # another tool wrote over it
    (klines_dir / "OLDUSDT.pqt").write_bytes(b"not ours")
    summary = kline_type(tmp_path)
    assert (summary.files, summary.notes) == (2, {"unchanged": 1})
    assert sorted(p.name for p in klines_dir.iterdir()) == ["BTCUSDT.pqt", "ETHUSDT.pqt", "SOLUSDT.pqt", "SP0_BTCUSDT.pqt"]
    assert read_table(klines_dir / "SOLUSDT.pqt").column("open").to_numpy()[0] == pytest.approx(102.0, rel=0.01)
    full_rebuild_equals(tmp_path, layout)


def test_a_new_base_offset_keeps_the_offsets_it_shares_and_drops_the_others(tmp_path: Path, layout: Layout) -> None:
    write_three(layout)
    kline_type(tmp_path)
    resample_type(tmp_path, offset="15m")
    interval_dir = layout.resampled_interval_dir(SPOT, "1h")
    before = snapshot(interval_dir)
    summary = resample_type(tmp_path, offset="30m")
    after = snapshot(interval_dir)
    assert summary.files == 0
    assert sorted(p.name for p in interval_dir.iterdir()) == ["0m", "30m"]
    assert {name: after[name] for name in after if name.endswith(".pqt")} == {name: before[name] for name in after if name.endswith(".pqt")}


def test_a_crash_between_the_swap_and_the_record_rebuilds_that_symbol_on_the_next_run(tmp_path: Path, layout: Layout, monkeypatch: pytest.MonkeyPatch) -> None:
    write_three(layout)
    kline_type(tmp_path)
    t = steps("2024-02-01", "2024-02-03")
    write_archive(layout, SPOT, "SOLUSDT", "1m", klines(t, 160.0, seed=2))

    def killed(self, units):  # the process dies after the new tree is in, before the record is written
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr("bhds.generate.builds.BuildRecord.save", killed)
        with pytest.raises(KeyboardInterrupt):
            kline_type(tmp_path)
    swapped = snapshot(layout.root / "results_data")
    summary = kline_type(tmp_path)  # the record did not know SOLUSDT's new file: built again, the same bytes, kept
    assert (summary.files, summary.notes) == (1, {"unchanged": 2})
    assert rewritten(swapped, snapshot(layout.root / "results_data")) == set()
    assert kline_type(tmp_path).notes == {"unchanged": 3}
    resample_type(tmp_path)
    full_rebuild_equals(tmp_path, layout)


def test_a_symlinked_results_folder_stays_a_symlink_and_unchanged_files_keep_their_inodes(tmp_path: Path, layout: Layout) -> None:
    write_three(layout)
    elsewhere = tmp_path / "other_disk" / "klines_1m"
    elsewhere.mkdir(parents=True)
    link = layout.results_kline_dir(SPOT, "1m")
    link.parent.mkdir(parents=True)
    link.symlink_to(elsewhere)
    kline_type(tmp_path)
    before = snapshot(elsewhere)
    t = steps("2024-02-01", "2024-02-03")
    write_archive(layout, SPOT, "SOLUSDT", "1m", klines(t, 160.0, seed=2))
    kline_type(tmp_path)
    assert link.is_symlink() and link.resolve() == elsewhere.resolve()
    assert rewritten(before, snapshot(elsewhere)) == {"SOLUSDT.pqt"}
    assert sorted(p.name for p in link.parent.iterdir()) == ["1m"]  # no build folder left behind
    assert sorted(p.name for p in elsewhere.parent.iterdir()) == ["klines_1m"]


def test_single_symbol_commands_leave_the_type_commands_nothing_to_do(tmp_path: Path, layout: Layout) -> None:
    write_three(layout)
    kline_type(tmp_path)
    resample_type(tmp_path)
    t = steps("2024-02-01", "2024-02-03")
    write_archive(layout, SPOT, "ETHUSDT", "1m", klines(t, 155.0, seed=1))
    generate.kline(settings_for(tmp_path), trade_type=SPOT, time_interval="1m", symbol="ETHUSDT", **OPTIONS)
    generate.resample(settings_for(tmp_path), trade_type=SPOT, symbol="ETHUSDT", resample_interval="1h", base_offset="15m")
    before = snapshot(layout.root / "results_data")
    assert kline_type(tmp_path).files == 0 and resample_type(tmp_path).files == 0
    assert snapshot(layout.root / "results_data") == before
    # With other options the symbol's files are not what kline-type would write: it builds them again.
    generate.kline(settings_for(tmp_path), trade_type=SPOT, time_interval="1m", symbol="ETHUSDT", **{**OPTIONS, "with_vwap": False})
    summary = kline_type(tmp_path)
    assert (summary.files, summary.notes) == (1, {"unchanged": 2})
    assert "avg_price_1m" in read_table(layout.results_kline_file(SPOT, "1m", "ETHUSDT")).column_names


def test_a_run_with_nothing_to_do_loads_neither_numpy_nor_pyarrow(tmp_path: Path, layout: Layout) -> None:
    """What keeps a no-op run at interpreter start-up plus a few stat calls per symbol."""
    write_three(layout)
    kline_type(tmp_path)
    resample_type(tmp_path)
    env = dict(os.environ, CRYPTO_BASE_DIR=str(tmp_path), CRYPTO_NJOBS="2")
    for argv in (["kline-type", "spot", "1m", "--split-gaps", "--with-vwap", "--with-funding-rates"], ["resample-type", "spot", "1h", "15m"]):
        done = subprocess.run([sys.executable, "-X", "importtime", str(REPO / "bhds.py"), "generate", *argv], env=env, capture_output=True, text=True, check=True)
        assert "files=0 " in done.stdout and "unchanged=" in done.stdout
        imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
        assert not {"numpy", "pyarrow"} & imported


# ---- the whole pipeline against the fake Binance: a re-uploaded day ----

def run(capsys: pytest.CaptureFixture, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0, err
    return out


def test_a_reuploaded_day_rebuilds_one_symbol_through_the_pipeline(bhds_env, fake_binance, data_root: Path, capsys: pytest.CaptureFixture) -> None:
    steps_ = [("aws_kline", "download-spot", "1m"), ("aws_kline", "parse-type-all", "spot", "1m"),
              ("generate", "kline-type", "spot", "1m"), ("generate", "resample-type", "spot", "1h", "15m")]
    for argv in steps_:
        run(capsys, *argv)
    results = data_root / "binance_data" / "results_data"
    before = snapshot(results)

    key = kline_key("spot", "ETHUSDT", "1m", date(2025, 1, 6))
    reupload_corrected_hour(fake_binance.root, key)
    outputs = [run(capsys, *argv) for argv in steps_]
    # ETHUSDT has two segments (days 3-4 are missing): the older one, SP0_ETHUSDT, came out the
    # same and stays the same file, so its resamples are not made again either.
    assert {name for name in before if "SP0_ETHUSDT" in name}
    assert rewritten(before, snapshot(results)) == {name for name in before if name.endswith("/ETHUSDT.pqt")}
    assert "files=2 " in outputs[2] and "unchanged=5" in outputs[2]
    assert "files=4 " in outputs[3] and "unchanged=" in outputs[3]

    again = [run(capsys, *argv) for argv in steps_[2:]]  # and once more: nothing to do
    assert all("files=0 " in line for line in again)
    incremental = tables(results)
    shutil.rmtree(results)
    shutil.rmtree(data_root / "binance_data" / ".bhds" / "cache", ignore_errors=True)
    for argv in steps_[2:]:
        run(capsys, *argv)
    assert {name: t.equals(incremental[name]) for name, t in tables(results).items()} == {name: True for name in incremental}
    assert os.listdir(results / "spot" / "klines" / "1m")
