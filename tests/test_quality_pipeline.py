"""`quality report` on a store built by the real pipeline from the fake Binance's default universe.

The universe's documented quirks (tests/fakebinance/__init__.py) must show up in the report:
BTCUSDT's 90-minute exchange hole on 2025-01-02, ETHUSDT's three days missing from the archive
(until the API fills them), BTCUSDC's archive day that stops at 07:36, PENGUUSDT listed at 08:00,
WAVESUSDT delisted at 03:00 and LUNAUSDT's three-day halt (split in two by generate). Figures that
depend on a stage's own policy (e.g. how many recent days the API fetches) are not pinned here.
"""

from __future__ import annotations

import json

import pytest

from bhds.cli import main

SYMBOLS = ["BTCUSDT", "ETHUSDT", "BTCUSDC", "PENGUUSDT", "WAVESUSDT", "LUNAUSDT"]


def run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def report(capsys: pytest.CaptureFixture, *extra: str) -> tuple[int, dict[str, dict]]:
    code, out, err = run(["quality", "report", "spot", "1m", "--format", "json", *extra], capsys)
    assert code in (0, 3), err
    doc = json.loads(out)  # stdout holds the report only: the summary line is on stderr
    return code, {r["symbol"]: r for r in doc["symbols"]}


def test_report_shows_the_universe_quirks_before_and_after_the_api(bhds_env: dict[str, str], capsys: pytest.CaptureFixture) -> None:
    for args in (["aws_kline", "download", "spot", "1m", *SYMBOLS], ["aws_kline", "verify", "spot", "1m", *SYMBOLS],
                 ["aws_kline", "parse", "spot", "1m", *SYMBOLS]):
        code, _, err = run(args, capsys)
        assert code == 0, err

    code, before = report(capsys, "--fail-under", "99")
    assert code == 3
    assert set(before) == set(SYMBOLS)
    btc, eth, usdc = before["BTCUSDT"], before["ETHUSDT"], before["BTCUSDC"]
    assert (btc["days_in_archive"], btc["days_missing"], btc["days_partial"], btc["holes"]) == (17, 0, 1, 1)
    assert btc["longest_hole"] == {"after": "2025-01-02T01:59:00Z", "bars": 90}
    assert btc["completeness_pct"] == round(100 * (17 * 1440 - 90) / (17 * 1440), 2)
    assert (eth["days_in_archive"], eth["days_missing"], eth["days_from_api"]) == (14, 3, 0)
    assert (usdc["days_partial"], usdc["days_missing"]) == (1, 0)
    assert before["PENGUUSDT"]["first_day"] == "2024-12-30" and before["PENGUUSDT"]["completeness_pct"] == 100.0
    assert before["WAVESUSDT"]["last_day"] == "2025-01-05" and before["WAVESUSDT"]["completeness_pct"] == 100.0
    assert before["LUNAUSDT"]["days_missing"] == 3
    assert before["BTCUSDT"]["archive_last_modified"] is not None  # the archive stage's records are read
    assert all(r["ohlc_violations"]["rows"] == 0 and r["duplicate_rows"] == 0 and not r["errors"] for r in before.values())

    for args in (["api_data", "download-aws-missing-kline", "spot", "1m", *SYMBOLS],
                 ["generate", "kline-type", "spot", "1m", "--no-with-funding-rates"]):
        code, _, err = run(args, capsys)
        assert code == 0, err

    _, after = report(capsys)
    btc, eth, usdc, luna = after["BTCUSDT"], after["ETHUSDT"], after["BTCUSDC"], after["LUNAUSDT"]
    # The exchange hole is on REST too: still there. Everything else the API could fill is filled.
    assert (btc["holes"], btc["longest_hole"]["bars"], btc["days_partial"]) == (1, 90, 1)
    assert (eth["days_missing"], eth["completeness_pct"]) == (0, 100.0) and eth["days_from_api"] >= 3
    assert (usdc["days_partial"], usdc["completeness_pct"]) == (0, 100.0) and usdc["days_from_api"] >= 1
    assert after["WAVESUSDT"]["last_day"] == "2025-01-05" and after["WAVESUSDT"]["completeness_pct"] == 100.0
    assert luna["days_missing"] == 3 and luna["days_api_empty"] == 3
    assert [s["name"] for s in luna["segments"]] == ["SP0_LUNAUSDT", "LUNAUSDT"]
    assert luna["split_gaps"] == [{"after": "2025-01-01T23:59:00Z", "before": "2025-01-05T00:00:00Z", "days": 3.001}]
    assert [s["name"] for s in btc["segments"]] == ["BTCUSDT"]
