"""Result klines: archive + API merge, VWAP, funding, gap split and fill, and resampling.

Pure numpy on int64 millisecond timestamps; the only I/O is in `tasks`, which the workflow runs
one symbol (or one results file) per process.
"""
