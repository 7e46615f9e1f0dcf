"""bhds: a local, research-ready copy of Binance market history (drop-in for the legacy bhds.py).

    import bhds
    df = bhds.load("um_futures", "BTCUSDT", "1m", start="2025-01-01", end="2025-02-01")

`load`, `load_arrow`, `load_polars`, `symbols` and `coverage` live in `bhds.research.load` and are
imported on first use, so `import bhds` (and every CLI start) stays free of pandas and pyarrow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bhds.errors import BhdsError, ConfigError, DataError, InputError

__version__ = "0.1.0"

_LAZY = ("load", "load_arrow", "load_polars", "symbols", "coverage")
__all__ = ["BhdsError", "ConfigError", "DataError", "InputError", "__version__", *_LAZY]

if TYPE_CHECKING:
    from bhds.research.load import coverage, load, load_arrow, load_polars, symbols


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from bhds.research import load as module

        return getattr(module, name)
    raise AttributeError(f"module 'bhds' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
