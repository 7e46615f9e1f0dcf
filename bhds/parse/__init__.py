"""Archive zips → Arrow tables in the contract schema, and the monthly partitions they feed.

`zipcsv` opens one zip, `klines`/`funding` turn CSV bytes into typed tables, `checks` refuses
files whose times do not fit and rows no market can have, `partitions` merges a month,
`sources` lists verified zips, `ledger` remembers what fed each partition, `plan` decides what
a run must redo and `jobs` holds the worker-process entry points.
"""
