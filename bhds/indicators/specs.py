"""Which indicators exist, how `name:p1,p2` specs are read, and what their columns are called.

Adding an indicator is one entry in `INDICATORS`: the TA-Lib function, what each number of the
spec means (and its default), the output column prefixes and the kline columns it reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bhds.errors import BhdsError, InputError

INSTALL_HINT = "pip install 'bhds[indicators]'"


@dataclass(frozen=True)
class Param:
    """One number of a spec; it fills every TA-Lib parameter in `names` (bbands' one width sets both bands)."""

    kind: type  # int or float
    default: float
    names: tuple[str, ...]


def _p(kind: type, default: float, *names: str) -> Param:
    return Param(kind, default, names)


@dataclass(frozen=True)
class Indicator:
    function: str  # TA-Lib function name
    params: tuple[Param, ...]
    outputs: tuple[str, ...]  # column prefix per TA-Lib output, in TA-Lib's order
    inputs: tuple[str, ...] = ("close",)  # kline columns passed to TA-Lib, in its order


_PERIOD = "timeperiod"
_HLC = ("high", "low", "close")

# name → definition. Columns are `<output>_<numbers joined by _>`, e.g. rsi_14, macd_signal_12_26_9.
INDICATORS: dict[str, Indicator] = {
    "rsi": Indicator("RSI", (_p(int, 14, _PERIOD),), ("rsi",)),
    "sma": Indicator("SMA", (_p(int, 20, _PERIOD),), ("sma",)),
    "ema": Indicator("EMA", (_p(int, 20, _PERIOD),), ("ema",)),
    "wma": Indicator("WMA", (_p(int, 20, _PERIOD),), ("wma",)),
    "dema": Indicator("DEMA", (_p(int, 20, _PERIOD),), ("dema",)),
    "tema": Indicator("TEMA", (_p(int, 20, _PERIOD),), ("tema",)),
    "kama": Indicator("KAMA", (_p(int, 30, _PERIOD),), ("kama",)),
    "mom": Indicator("MOM", (_p(int, 10, _PERIOD),), ("mom",)),
    "roc": Indicator("ROC", (_p(int, 10, _PERIOD),), ("roc",)),
    "stddev": Indicator("STDDEV", (_p(int, 20, _PERIOD), _p(float, 1, "nbdev")), ("stddev",)),
    "macd": Indicator("MACD", (_p(int, 12, "fastperiod"), _p(int, 26, "slowperiod"), _p(int, 9, "signalperiod")),
                      ("macd", "macd_signal", "macd_hist")),
    "bbands": Indicator("BBANDS", (_p(int, 20, _PERIOD), _p(float, 2, "nbdevup", "nbdevdn")),
                        ("bbands_upper", "bbands_middle", "bbands_lower")),
    "atr": Indicator("ATR", (_p(int, 14, _PERIOD),), ("atr",), _HLC),
    "natr": Indicator("NATR", (_p(int, 14, _PERIOD),), ("natr",), _HLC),
    "adx": Indicator("ADX", (_p(int, 14, _PERIOD),), ("adx",), _HLC),
    "cci": Indicator("CCI", (_p(int, 14, _PERIOD),), ("cci",), _HLC),
    "willr": Indicator("WILLR", (_p(int, 14, _PERIOD),), ("willr",), _HLC),
    "stoch": Indicator("STOCH", (_p(int, 5, "fastk_period"), _p(int, 3, "slowk_period"), _p(int, 3, "slowd_period")),
                       ("stoch_k", "stoch_d"), _HLC),
    "mfi": Indicator("MFI", (_p(int, 14, _PERIOD),), ("mfi",), (*_HLC, "volume")),
    "obv": Indicator("OBV", (), ("obv",), ("close", "volume")),
}

_SPEC_RE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*(?::\s*(.*?)\s*)?$")


def _number_text(value: float) -> str:
    """`14`, `2`, `2.5`: as few digits as give the value back."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True)
class IndicatorSpec:
    """One indicator with its numbers, e.g. `macd:12,26,9`."""

    name: str
    values: tuple[float, ...]

    @property
    def indicator(self) -> Indicator:
        return INDICATORS[self.name]

    @property
    def text(self) -> str:
        """The canonical spelling, e.g. `bbands:20,2`."""
        return self.name + (":" + ",".join(_number_text(v) for v in self.values) if self.values else "")

    @property
    def columns(self) -> tuple[str, ...]:
        # A '.' would need quoting in SQL: 2.5 is spelt 2p5 in column names.
        suffix = "".join(f"_{_number_text(v).replace('.', 'p')}" for v in self.values)
        return tuple(f"{prefix}{suffix}" for prefix in self.indicator.outputs)

    @property
    def talib_kwargs(self) -> dict[str, float]:
        return {name: param.kind(value) for param, value in zip(self.indicator.params, self.values) for name in param.names}


def known_names() -> str:
    return ", ".join(sorted(INDICATORS))


def parse_spec(text: str) -> IndicatorSpec:
    """`rsi:14` → IndicatorSpec; `rsi` alone takes the defaults. Bad specs raise InputError (exit 2)."""
    match = _SPEC_RE.match(text or "")
    name = match.group(1).lower() if match else ""
    if name not in INDICATORS:
        raise InputError(f"--indicator {text!r}: unknown indicator; use one of {known_names()}, e.g. rsi:14", exit_code=2)
    indicator = INDICATORS[name]
    example = IndicatorSpec(name, tuple(p.default for p in indicator.params)).text
    raw = match.group(2) if match else None
    if raw is None or raw == "":
        return IndicatorSpec(name, tuple(float(p.default) for p in indicator.params))
    pieces = [piece.strip() for piece in raw.split(",")]
    if len(pieces) != len(indicator.params):
        wanted = f"{len(indicator.params)} number{'s' if len(indicator.params) != 1 else ''}" if indicator.params else "no numbers"
        raise InputError(f"--indicator {text!r}: {name} takes {wanted}, e.g. {example}", exit_code=2)
    values = []
    for piece, param in zip(pieces, indicator.params):
        try:
            value = float(piece) if param.kind is float else int(piece)
        except ValueError:
            kind = "a whole number" if param.kind is int else "a number"
            raise InputError(f"--indicator {text!r}: {piece!r} is not {kind}; e.g. {example}", exit_code=2) from None
        if not value > 0 or value != value or value == float("inf"):
            raise InputError(f"--indicator {text!r}: {piece!r} must be a positive number; e.g. {example}", exit_code=2)
        values.append(float(value))
    return IndicatorSpec(name, tuple(values))


def parse_specs(texts: list[str] | tuple[str, ...]) -> list[IndicatorSpec]:
    """Parse and de-duplicate, keeping the order given; at least one is needed."""
    if not texts:
        raise InputError("no indicator given: pass at least one --indicator, e.g. --indicator rsi:14 --indicator macd:12,26,9", exit_code=2)
    specs: dict[str, IndicatorSpec] = {}
    for text in texts:
        spec = parse_spec(text)
        specs.setdefault(spec.text, spec)
    return list(specs.values())


def load_talib():  # noqa: ANN201 - the talib module
    """The `talib` module, or a one-line error saying how to install it."""
    try:
        import talib
    except ImportError:
        raise BhdsError(f"technical indicators need TA-Lib, which is not installed: {INSTALL_HINT}") from None
    return talib


def check_with_talib(specs: list[IndicatorSpec]) -> None:
    """Let TA-Lib judge each spec's numbers on a tiny series, so a bad one fails up front (exit 2), not per symbol."""
    import numpy as np

    talib = load_talib()
    sample = np.linspace(1.0, 2.0, 8)
    for spec in specs:
        try:
            getattr(talib, spec.indicator.function)(*[sample] * len(spec.indicator.inputs), **spec.talib_kwargs)
        except Exception as exc:  # noqa: BLE001 - TA-Lib raises a bare Exception for a bad parameter
            raise InputError(f"--indicator {spec.text}: TA-Lib refuses these numbers ({exc}); e.g. "
                             f"{IndicatorSpec(spec.name, tuple(p.default for p in spec.indicator.params)).text}", exit_code=2) from None
