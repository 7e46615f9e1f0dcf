"""bhds: a local, research-ready copy of Binance market history (drop-in for the legacy bhds.py)."""

__version__ = "0.1.0"
