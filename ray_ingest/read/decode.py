"""JPEG decoding of records into preallocated batch arrays (libjpeg-turbo), in a read task or
in the consuming process's threads, with errors that name the shard file and the record."""

from __future__ import annotations

import collections
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterable, Iterator, Optional

import numpy as np

from ray_ingest.errors import ConfigError, ExampleDecodeError
from ray_ingest.format import keys
from ray_ingest.read.options import JPEG_DCT
from ray_ingest.runtime import tune_malloc

IMAGE = keys.IMAGE_COLUMN
LABEL = keys.LABEL_COLUMN
ENCODED = keys.ENCODED_COLUMN
FILENAME = keys.FILENAME_COLUMN
#: Where each encoded record came from (consumer decode): shard path and record number.
SHARD = "shard"
RECORD = "record"


def undecodable(path: str, record: int, error: Exception) -> ExampleDecodeError:
    return ExampleDecodeError(f"{path}: record {record}: undecodable JPEG: {error}")


def decode_jpeg_into(data, out: np.ndarray, fast: bool) -> None:
    """Decodes one JPEG into ``out`` (``uint8[H, W, 3]``); raises ``ValueError`` if it cannot."""
    import simplejpeg

    simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out, fastdct=fast)


def decode_jpeg_batch(batch: Dict[str, np.ndarray], dct: str = "fast") -> Dict[str, np.ndarray]:
    """An encoded batch (``encoded``, ``label``, ``shard``, ``record``) → ``image`` and
    ``label`` (and ``filename`` when present), decoded into one ``uint8[N, H, W, 3]``.

    The size comes from the first record's header; every record of a dataset has the size its
    manifest gives, which the read task checked."""
    import simplejpeg

    tune_malloc()
    encoded = batch[ENCODED]
    shards, records = batch.get(SHARD), batch.get(RECORD)

    def where(i):
        if shards is None:
            return "a batch", i
        return str(shards[i]), int(records[i])

    if len(encoded) == 0:
        out = np.empty((0, 0, 0, 3), np.uint8)
    else:
        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(encoded[0])
        except ValueError as e:
            raise undecodable(*where(0), e) from None
        out = np.empty((len(encoded), height, width, 3), dtype=np.uint8)
    fast = dct == "fast"
    for i, data in enumerate(encoded):
        try:
            decode_jpeg_into(data, out[i], fast)
        except ValueError as e:
            raise undecodable(*where(i), e) from None
    result = {IMAGE: out, LABEL: batch[LABEL]}
    if FILENAME in batch:
        result[FILENAME] = batch[FILENAME]
    return result


def decode_ahead(batches: Iterable[Dict[str, np.ndarray]], *, threads: Optional[int] = None,
                 dct: str = "fast") -> Iterator[Dict[str, np.ndarray]]:
    """Decodes encoded batches in ``threads`` threads (libjpeg-turbo releases the GIL; default:
    this machine's cores, at most 8), several batches ahead of the consumer and in order;
    batches that already hold pixels pass through."""
    if dct not in JPEG_DCT:
        raise ConfigError(f"jpeg_dct must be one of {JPEG_DCT}, got {dct!r}")
    threads = threads if threads is not None else min(8, os.cpu_count() or 1)
    if threads < 1:
        raise ConfigError(f"decode_threads must be >= 1, got {threads}")
    return _decode_in_threads(batches, threads, dct)


def _decode_in_threads(batches, threads: int, dct: str) -> Iterator[Dict[str, np.ndarray]]:
    def decode(batch):
        return decode_jpeg_batch(batch, dct) if ENCODED in batch else batch

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
