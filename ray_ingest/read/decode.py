"""JPEG decoding of records into preallocated batch arrays (libjpeg-turbo), in a read task or
in the consuming process's threads, with errors that name the shard file and the record.

Encoded batches travel as Arrow tables: an ``encoded`` binary column (one buffer of all the
JPEG bytes plus offsets), ``label``, and where each record came from (``shard``, ``record``).
The consumer decodes straight from that buffer into one ``uint8[N, H, W, 3]`` array: no
per-image Python ``bytes`` and no copy of the encoded data.
"""

from __future__ import annotations

import collections
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np

from ray_ingest.errors import ConfigError, ExampleDecodeError
from ray_ingest.format import keys
from ray_ingest.format.arrow import binary_buffer
from ray_ingest.read.options import JPEG_DCT
from ray_ingest.runtime import tune_malloc

IMAGE = keys.IMAGE_COLUMN
LABEL = keys.LABEL_COLUMN
ENCODED = keys.ENCODED_COLUMN
FILENAME = keys.FILENAME_COLUMN
#: Where each encoded record came from (consumer decode): shard path and record number.
SHARD = "shard"
RECORD = "record"
#: A read that crops at decode time: int32 ``(y, x, h, w, flip, size)`` per encoded record (the
#: box in stored pixels, drawn by the read task), so every decode placement takes the same box.
CROP = "crop"

Batch = Union[Dict[str, np.ndarray], "pyarrow.Table"]  # noqa: F821


def undecodable(path: str, record: int, error: Exception) -> ExampleDecodeError:
    return ExampleDecodeError(f"{path}: record {record}: undecodable JPEG: {error}")


def decode_jpeg_into(data, out: np.ndarray, fast: bool) -> None:
    """Decodes one JPEG into ``out`` (``uint8[H, W, 3]``); raises ``ValueError`` if it cannot."""
    import simplejpeg

    simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out, fastdct=fast)


def encoded_table(payloads: List[memoryview], labels: np.ndarray, shards: List[str],
                  records: np.ndarray, filenames: Optional[List[str]] = None,
                  crop: Optional[np.ndarray] = None):
    """An Arrow table of encoded records: the payloads copied once into one binary buffer;
    ``crop``: int32[N, 6] boxes (the ``crop`` column)."""
    import pyarrow as pa

    sizes = np.fromiter((len(p) for p in payloads), np.int64, len(payloads))
    offsets = np.zeros(len(payloads) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    data = pa.py_buffer(b"".join(payloads))
    encoded = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(payloads),
                                               [None, pa.py_buffer(offsets), data])
    columns = {ENCODED: encoded, LABEL: pa.array(labels, pa.int64()),
               SHARD: pa.array(shards, pa.string()), RECORD: pa.array(records, pa.int64())}
    if filenames is not None:
        columns[FILENAME] = pa.array(filenames, pa.string())
    if crop is not None:
        flat = pa.array(np.ascontiguousarray(crop, np.int32).reshape(-1))
        columns[CROP] = pa.FixedSizeListArray.from_arrays(flat, 6)
    return pa.table(columns)


def crop_boxes(batch: Batch) -> Optional[np.ndarray]:
    """The ``crop`` column of a batch as int32[N, 6], or None when it has none."""
    names = batch if isinstance(batch, dict) else batch.column_names
    if CROP not in names:
        return None
    if isinstance(batch, dict):
        col = batch[CROP]
        return np.asarray(np.stack(col) if col.dtype == object else col, np.int32).reshape(-1, 6)
    import pyarrow as pa

    col = batch.column(CROP)
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return arr.flatten().to_numpy(zero_copy_only=False).astype(np.int32, copy=False
                                                                ).reshape(-1, 6)



class _Encoded:
    """The encoded images of a batch, whatever its format: indexable views, and where each
    record came from (for error messages, looked up only then)."""

    def __init__(self, batch: Batch):
        self._batch = batch
        if isinstance(batch, dict):
            self._values = batch[ENCODED]
            self._data = self._offsets = None
            self.n = len(self._values)
        else:
            self._data, offsets = binary_buffer(batch.column(ENCODED))
            self._offsets = offsets.tolist()  # Python ints: the fastest slice bounds
            self.n = batch.num_rows

    def __getitem__(self, i: int):
        if self._data is None:
            return self._values[i]
        return self._data[self._offsets[i] : self._offsets[i + 1]]

    def views(self) -> Iterator:
        """Every record's bytes in order (zero-copy views of an Arrow batch)."""
        if self._data is None:
            return iter(self._values)
        data, offsets = self._data, self._offsets
        return (data[offsets[i] : offsets[i + 1]] for i in range(self.n))

    def where(self, i: int) -> Tuple[str, int]:
        batch = self._batch
        names = batch if isinstance(batch, dict) else set(batch.column_names)
        if SHARD not in names or RECORD not in names:
            return "a batch", i
        if isinstance(batch, dict):
            return str(batch[SHARD][i]), int(batch[RECORD][i])
        return (str(batch.column(SHARD)[i].as_py()), int(batch.column(RECORD)[i].as_py()))


def _columns(batch: Batch, names) -> Dict[str, np.ndarray]:
    if isinstance(batch, dict):
        return {n: batch[n] for n in names if n in batch}
    return {n: batch.column(n).to_numpy(zero_copy_only=False) for n in names
            if n in batch.column_names}


def labels_of(batch: Batch) -> np.ndarray:
    """The ``label`` column of a batch of any format, as ``int64[N]``."""
    return np.asarray(_columns(batch, (LABEL,))[LABEL], np.int64)


def is_encoded(batch: Batch) -> bool:
    return ENCODED in (batch if isinstance(batch, dict) else batch.column_names)


def decode_batch(batch: Batch, dct: str = "fast", out: Optional[np.ndarray] = None
                 ) -> Dict[str, np.ndarray]:
    """An encoded batch (an Arrow table or a dict of numpy columns) → ``image``
    (``uint8[N, H, W, 3]``, into ``out`` when given) and ``label`` (and ``filename``).

    The size comes from the first record's header; every record of a dataset has the size its
    manifest gives, which the read task checked."""
    import simplejpeg

    tune_malloc()
    crop = crop_boxes(batch)
    if crop is not None:
        return decode_crop_batch(batch, crop, dct, out)
    enc = _Encoded(batch)
    if out is None:
        if enc.n == 0:
            out = np.empty((0, 0, 0, 3), np.uint8)
        else:
            try:
                height, width, _, _ = simplejpeg.decode_jpeg_header(enc[0])
            except ValueError as e:
                raise undecodable(*enc.where(0), e) from None
            out = np.empty((enc.n, height, width, 3), dtype=np.uint8)
    fast = dct == "fast"
    for i, data in enumerate(enc.views()):
        try:
            decode_jpeg_into(data, out[i], fast)
        except ValueError as e:
            raise undecodable(*enc.where(i), e) from None
    result = {IMAGE: out}
    result.update(_columns(batch, (LABEL, FILENAME)))
    result[LABEL] = np.array(result[LABEL], np.int64)  # a small writable copy
    return result


def decode_crop_batch(batch: Batch, crop: np.ndarray, dct: str = "fast",
                      out: Optional[np.ndarray] = None, threads: int = 1
                      ) -> Dict[str, np.ndarray]:
    """An encoded batch with its ``crop`` boxes → ``image`` ``uint8[N, S, S, 3]`` (the fused
    region decode, one call), ``label`` (and ``filename``)."""
    from ray_ingest.read.cropdecode import CropDecodeError, decode_crops

    n = len(crop)
    size = int(crop[0, 5]) if n else 0
    if out is None:
        out = np.empty((n, size, size, 3), np.uint8)
    if isinstance(batch, dict):
        values = batch[ENCODED]
        sizes = np.fromiter((len(v) for v in values), np.int64, n)
        ends = np.cumsum(sizes)
        data, starts = b"".join(bytes(v) for v in values), ends - sizes
    else:
        data, offsets = binary_buffer(batch.column(ENCODED))
        base = int(offsets[0]) if n else 0
        data, starts, ends = data[base:], offsets[:-1] - base, offsets[1:] - base
    try:
        decode_crops(data, starts, ends, crop[:, :4], crop[:, 4], out, threads=threads,
                     fast=dct == "fast")
    except CropDecodeError as e:
        i, message = e.args
        raise undecodable(*_Encoded(batch).where(i), message) from None
    result = {IMAGE: out}
    result.update(_columns(batch, (LABEL, FILENAME)))
    result[LABEL] = np.array(result[LABEL], np.int64)
    return result


def as_numpy(batch: Batch) -> Dict[str, np.ndarray]:
    """A batch of pixels (any format Ray Data yields) as numpy columns, zero-copy."""
    if isinstance(batch, dict):
        return batch
    from ray.data.block import BlockAccessor

    return BlockAccessor.for_block(batch).to_batch_format("numpy")


def check_dct(dct: str) -> None:
    if dct not in JPEG_DCT:
        raise ConfigError(f"jpeg_dct must be one of {JPEG_DCT}, got {dct!r}")


def decode_ahead(batches: Iterable[Batch], *, threads: Optional[int] = None,
                 dct: str = "fast") -> Iterator[Dict[str, np.ndarray]]:
    """Decodes encoded batches in ``threads`` threads (libjpeg-turbo releases the GIL; default:
    this machine's cores, at most 8), several batches ahead of the consumer and in order;
    batches that already hold pixels pass through."""
    check_dct(dct)
    threads = threads if threads is not None else min(8, os.cpu_count() or 1)
    if threads < 1:
        raise ConfigError(f"decode_threads must be >= 1, got {threads}")
    return _decode_in_threads(batches, threads, dct)


def _decode_in_threads(batches, threads: int, dct: str) -> Iterator[Dict[str, np.ndarray]]:
    def decode(batch):
        return decode_batch(batch, dct) if is_encoded(batch) else as_numpy(batch)

    tune_malloc()
    pending: "collections.deque" = collections.deque()
    pool = ThreadPoolExecutor(threads, thread_name_prefix="ray-ingest-decode")
    it = iter(batches)
    try:
        for batch in it:
            pending.append(pool.submit(decode, batch))
            if len(pending) > threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        close = getattr(it, "close", None)
        if close is not None:
            close()  # stops the streaming execution behind an abandoned iteration
