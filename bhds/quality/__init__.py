"""The data quality report: what the local store holds for one trade type and interval, and how far to trust it.

Read-only over the store (archive mirror, parsed partitions and their footers, API day files,
results, funding, the state DB); the only thing written is a cache of per-month findings under
`.bhds/cache/`.

    inventory.py  list a symbol's files (names, sizes, mtimes; no Parquet is opened)
    grid.py       the interval's bar grid: alignment, units, bars per day
    pieces.py     one month (parsed partition + API days) read and reduced to a `PieceStats`
    footer.py     the `PieceStats` parse stores in each partition's footer, and its validity checks
    cache.py      per-month `PieceStats` keyed by the files' sizes and mtimes
    series.py     months stitched into a symbol's figures (days, holes, zero-volume runs)
    funding.py    funding coverage and interval changes
    segments.py   split segments of the generated results (metadata only)
    statedb.py    facts the archive and API stages left in the state DB, read defensively
    analyse.py    one symbol end to end (runs in a worker process)
    record.py     `SymbolQuality`, the per-symbol record and its stable JSON form
    report.py     table / JSON / CSV rendering
    plot.py       completeness heatmap (matplotlib, optional)
"""
