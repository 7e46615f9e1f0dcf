"""Symbol inference and the download filters: every example of contract §6.2, as changed by issue #3."""

from __future__ import annotations

import pytest

from bhds.symbol_names import (
    STABLECOINS,
    infer_cm,
    infer_spot,
    infer_um,
    select_cm,
    select_spot,
    select_um,
    split_quote,
    SPOT_QUOTES,
)
from bhds.types import ContractType

SPOT = ["BTCUSDT", "ETHBTC", "USDCUSDT", "BTCUPUSDT", "JUPUSDT", "SYRUPUSDT", "BTCFDUSD", "BNBETH", "PAXGUSDT",
        "BTCUSDC", "ETHBULLUSDT", "EURUSDT", "BTCTUSD", "XUSDT"]
UM = ["BTCUSDT", "BTCUSDT_250328", "ETHBTC", "BTCUSDC", "BTCDOMUSDT", "1000PEPEUSDT", "ETHUSDT_240628", "BTCBUSD"]
CM = ["BTCUSD_PERP", "BTCUSD_250328", "ETHUSD_PERP", "BTCUSD"]


@pytest.mark.parametrize(
    ("quote", "stablecoins", "leverage_coins", "expected"),
    [
        # Contract row 1, except SYRUPUSDT: the issue says SYRUP is an ordinary coin, not a leveraged token.
        ("USDT", False, False, ["BTCUSDT", "JUPUSDT", "SYRUPUSDT", "XUSDT"]),
        # Contract row 2: both flags add the stablecoin and leveraged symbols.
        ("USDT", True, True, ["BTCUSDT", "USDCUSDT", "BTCUPUSDT", "JUPUSDT", "SYRUPUSDT", "PAXGUSDT", "ETHBULLUSDT",
                              "EURUSDT", "XUSDT"]),
        ("USDT", True, False, ["BTCUSDT", "USDCUSDT", "JUPUSDT", "SYRUPUSDT", "PAXGUSDT", "EURUSDT", "XUSDT"]),
        ("USDT", False, True, ["BTCUSDT", "BTCUPUSDT", "JUPUSDT", "SYRUPUSDT", "ETHBULLUSDT", "XUSDT"]),
        # Contract row 3 gave nothing; the issue makes --quote FDUSD work.
        ("FDUSD", False, False, ["BTCFDUSD"]),
        ("TUSD", False, False, ["BTCTUSD"]),
        ("BTC", False, False, ["ETHBTC"]),
        ("ETH", False, False, ["BNBETH"]),
        ("USDC", False, False, ["BTCUSDC"]),
        ("BNB", False, False, []),
    ],
)
def test_spot_filter_examples(quote, stablecoins, leverage_coins, expected):
    selection = select_spot(SPOT, quote=quote, stablecoins=stablecoins, leverage_coins=leverage_coins)
    assert selection.kept == expected
    assert selection.unparsed == []


@pytest.mark.parametrize(
    ("quote", "contract_type", "expected"),
    [
        ("USDT", ContractType.PERPETUAL, ["BTCUSDT", "BTCDOMUSDT", "1000PEPEUSDT"]),
        ("USDT", ContractType.DELIVERY, ["BTCUSDT_250328", "ETHUSDT_240628"]),
        ("BTC", ContractType.PERPETUAL, ["ETHBTC"]),
        ("USDC", ContractType.PERPETUAL, ["BTCUSDC"]),
        ("BUSD", ContractType.PERPETUAL, ["BTCBUSD"]),
    ],
)
def test_um_filter_examples(quote, contract_type, expected):
    assert select_um(UM, quote=quote, contract_type=contract_type).kept == expected


@pytest.mark.parametrize(
    ("contract_type", "expected"),
    [(ContractType.PERPETUAL, ["BTCUSD_PERP", "ETHUSD_PERP"]), (ContractType.DELIVERY, ["BTCUSD_250328"])],
)
def test_cm_filter_examples(contract_type, expected):
    selection = select_cm(CM, contract_type=contract_type)
    assert selection.kept == expected
    assert selection.unparsed == ["BTCUSD"]  # the pair directory has no contract suffix: reported, not kept


@pytest.mark.parametrize(
    ("symbol", "base", "quote"),
    [
        ("BTCUSDT", "BTC", "USDT"),
        ("BTCFDUSD", "BTC", "FDUSD"),
        ("XRPRLUSD", "XRP", "RLUSD"),  # longest match: not XRPRL + USD
        ("ADAEUR", "ADA", "EUR"),  # overlap rule: not AD + AEUR
        ("BTCAEUR", "BTC", "AEUR"),
        ("EURIUSDT", "EURI", "USDT"),
        ("USDTTRY", "USDT", "TRY"),
        ("BTCEURI", "BTC", "EURI"),
        ("WBETHETH", "WBETH", "ETH"),
        ("SHIBDOGE", "SHIB", "DOGE"),
        ("1000SATSFDUSD", "1000SATS", "FDUSD"),
    ],
)
def test_spot_quote_detection(symbol, base, quote):
    info = infer_spot(symbol)
    assert info is not None and (info.base, info.quote) == (base, quote)


@pytest.mark.parametrize(
    ("symbol", "leveraged"),
    [("BTCUPUSDT", True), ("ETHDOWNUSDT", True), ("BNBBEARUSDT", True), ("XRPBULLUSDT", True), ("LINKUPUSDT", True),
     ("JUPUSDT", False), ("SYRUPUSDT", False), ("SUPUSDT", False), ("SYRUPDOWNUSDT", False)],
)
def test_leveraged_tokens(symbol, leveraged):
    info = infer_spot(symbol)
    assert info is not None and info.is_leveraged is leveraged


def test_leveraged_token_on_a_coin_seen_in_the_listing():
    # PEPE is not a built-in underlying, but PEPEUSDT in the same listing makes PEPEUP a leveraged token.
    selection = select_spot(["PEPEUSDT", "PEPEUPUSDT"], quote="USDT", stablecoins=False, leverage_coins=False)
    assert selection.kept == ["PEPEUSDT"]


@pytest.mark.parametrize("symbol", ["BTC", "USDT", "btcusdt", "ABC_DEF", "", "BTCUSD", "X-Y"])
def test_unreadable_spot_names_are_reported(symbol):
    assert infer_spot(symbol) is None
    assert select_spot([symbol, "BTCUSDT"], quote="USDT", stablecoins=False, leverage_coins=False).unparsed == [symbol]


@pytest.mark.parametrize(
    ("symbol", "base", "quote", "contract", "settled"),
    [
        ("BTCUSDT", "BTC", "USDT", ContractType.PERPETUAL, False),
        ("BTCUSDT_250328", "BTC", "USDT", ContractType.DELIVERY, False),
        ("1000PEPEUSDT", "1000PEPE", "USDT", ContractType.PERPETUAL, False),
        ("BTCDOMUSDT", "BTCDOM", "USDT", ContractType.PERPETUAL, False),
        ("ETHBTC", "ETH", "BTC", ContractType.PERPETUAL, False),
        ("LUNAUSDT_SETTLED", "LUNA", "USDT", ContractType.PERPETUAL, True),
        ("CVCUSDTSETTLED", "CVC", "USDT", ContractType.PERPETUAL, True),
        ("ICPUSDT_SETTLED1", "ICP", "USDT", ContractType.PERPETUAL, True),
    ],
)
def test_um_inference(symbol, base, quote, contract, settled):
    info = infer_um(symbol)
    assert info is not None
    assert (info.base, info.quote, info.contract_type, info.settled) == (base, quote, contract, settled)


@pytest.mark.parametrize("symbol", ["BTCUSDT_PERP", "BTCUSDT_2503", "BTCEUR", "_", "BTCUSDT__250328"])
def test_um_unreadable(symbol):
    assert infer_um(symbol) is None


@pytest.mark.parametrize(
    ("symbol", "base", "contract"),
    [("BTCUSD_PERP", "BTC", ContractType.PERPETUAL), ("ETHUSD_250627", "ETH", ContractType.DELIVERY),
     ("LUNAUSD_PERP_SETTLED", "LUNA", ContractType.PERPETUAL)],
)
def test_cm_inference(symbol, base, contract):
    info = infer_cm(symbol)
    assert info is not None and (info.base, info.quote, info.contract_type) == (base, "USD", contract)


@pytest.mark.parametrize("symbol", ["BTCUSD", "BTCUSD_PERP_X", "BTC_PERP", "USD_PERP", "BTCUSDT_PERP", "BTCUSD_2503"])
def test_cm_names_with_odd_shapes_are_reported_not_raised(symbol):
    # The legacy tool crashed with ValueError on a second underscore.
    assert infer_cm(symbol) is None
    assert select_cm([symbol], contract_type=ContractType.PERPETUAL).unparsed == [symbol]


def test_stablecoin_set_is_the_contracts():
    assert STABLECOINS == {"BKRW", "USDC", "USDP", "TUSD", "BUSD", "FDUSD", "DAI", "EUR", "GBP", "USBP", "SUSD", "PAXG",
                           "AEUR", "USDS", "USDSB"}


def test_split_quote_needs_a_non_empty_base():
    assert split_quote("USDT", SPOT_QUOTES) is None
    assert split_quote("BTCUSDT", []) is None
