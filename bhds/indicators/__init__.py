"""Technical indicators (TA-Lib) over result klines: specs, computation per split segment, reading.

`specs` names the supported indicators and parses `rsi:14`; `compute` builds one symbol's file;
`read` is the reader other code (and `bhds.load`) uses. TA-Lib is an optional extra,
`pip install 'bhds[indicators]'`; it is imported only when indicators are computed.
"""

from bhds.indicators.read import read_indicators
from bhds.indicators.specs import INDICATORS, IndicatorSpec, parse_spec, parse_specs

__all__ = ["INDICATORS", "IndicatorSpec", "parse_spec", "parse_specs", "read_indicators"]
