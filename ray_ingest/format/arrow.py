"""The Arrow form of binary columns (record bytes, encoded images) in Ray Data blocks."""

from __future__ import annotations

from typing import List, Tuple

import numpy as np


def binary_buffer(column) -> Tuple[memoryview, np.ndarray]:
    """``(data, offsets)`` of an Arrow binary column, zero-copy (a chunked column is combined
    first): value ``i`` is ``data[offsets[i]:offsets[i + 1]]``."""
    import pyarrow as pa

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    large = pa.types.is_large_binary(arr.type)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64 if large else np.int32) \
        if bufs[1] is not None else np.zeros(1, np.int64)
    offsets = offsets[arr.offset : arr.offset + len(arr) + 1]
    data = memoryview(bufs[2]).cast("B") if bufs[2] is not None else memoryview(b"")
    return data, offsets


def binary_values(column) -> List[memoryview]:
    """Zero-copy views of each value of an Arrow binary column."""
    if len(column) == 0:
        return []
    data, offsets = binary_buffer(column)
    return [data[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
