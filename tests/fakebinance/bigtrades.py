"""A large synthetic trades month, generated on the fly (never stored in the repository).

`write_trades_zip(path, csv_bytes)` streams a USDⓈ-M-shaped trades CSV (header, ms times,
`true`/`false`) of about `csv_bytes` bytes into a one-member zip, a million rows at a time, so
building a 2 GB month takes little memory. Used by bench/trades_memory.py to show that parsing
does not grow with the file.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HEADER = b"id,price,qty,quote_qty,time,is_buyer_maker\n"
CHUNK_ROWS = 1_000_000
MONTH_START_MS = 1_733_011_200_000  # 2024-12-01T00:00Z


def _chunk(rng: np.random.Generator, first_id: int, n: int, t0: int) -> tuple[bytes, int]:
    ticks = 950_000 + np.cumsum(rng.integers(-3, 4, n))  # price in 0.1
    qty = rng.integers(1, 5_000, n)  # in 0.001
    times = t0 + np.cumsum(rng.integers(0, 3, n))
    quote = ticks * qty  # in 0.0001
    cols = [
        pc.cast(pa.array(np.arange(first_id, first_id + n)), pa.string()),
        pc.binary_join_element_wise(pc.cast(pa.array(ticks // 10), pa.string()), pc.cast(pa.array(ticks % 10), pa.string()), "."),
        pc.binary_join_element_wise(pc.cast(pa.array(qty // 1000), pa.string()),
                                    pc.utf8_lpad(pc.cast(pa.array(qty % 1000), pa.string()), 3, "0"), "."),
        pc.binary_join_element_wise(pc.cast(pa.array(quote // 10_000), pa.string()),
                                    pc.utf8_lpad(pc.cast(pa.array(quote % 10_000), pa.string()), 4, "0"), "."),
        pc.cast(pa.array(times), pa.string()),
        pc.if_else(pa.array(rng.random(n) < 0.5), "true", "false"),
    ]
    lines = pc.binary_join_element_wise(*cols, ",")
    body = "\n".join(lines.to_pylist()) + "\n"
    return body.encode(), int(times[-1])


def write_trades_zip(path: Path, csv_bytes: int, *, seed: int = 7, level: int = 1) -> tuple[int, int]:
    """Write about `csv_bytes` of trades CSV into the zip at `path`; (rows, exact CSV bytes)."""
    rng = np.random.default_rng(seed)
    rows = written = 0
    t = MONTH_START_MS
    name = Path(path).name[:-4] + ".csv"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        with zf.open(name, "w", force_zip64=True) as out:
            out.write(HEADER)
            written += len(HEADER)
            while written < csv_bytes:
                data, t = _chunk(rng, rows, CHUNK_ROWS, t)
                out.write(data)
                written += len(data)
                rows += CHUNK_ROWS
    return rows, written
