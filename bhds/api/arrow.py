"""numpy <-> Arrow for the API stage without `pa.array()` / `to_numpy()` on timestamps.

Those two make pyarrow import pandas on first use, about half a second of every run; a REST
run is otherwise short, so it wraps numpy buffers directly instead (zero copy, same values).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_NUMPY_TYPE = {pa.int64(): np.int64, pa.float64(): np.float64}


def from_numpy(values: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """A numpy int64/float64 array as an Arrow array of `arrow_type` (timestamps take int64 ms)."""
    dtype = np.float64 if pa.types.is_floating(arrow_type) else np.int64
    values = np.ascontiguousarray(values, dtype=dtype)
    return pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(values)])


def int64_values(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The int64 storage of an int64 or timestamp column without nulls (a timestamp's raw ticks)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.null_count:
        raise ValueError("unexpected nulls in a time column")
    data = array.buffers()[1]
    return np.frombuffer(data, dtype=np.int64, count=len(array), offset=array.offset * 8) if data is not None else np.zeros(0, np.int64)
