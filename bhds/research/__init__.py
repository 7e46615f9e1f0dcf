"""Reading the store back: `bhds.load`, `bhds.symbols`, `bhds.coverage`, `list-data` and the SQL catalog.

`store` finds the datasets and their files and reads Parquet footers; `load` reads rows; `listing`
builds the `list-data` rows; `catalog` writes the DuckDB views. Nothing here writes Parquet: it
only reads what the pipeline wrote (and, for the catalog, one DuckDB file of views).
"""
