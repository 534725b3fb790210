"""The machine's decode limit: every core decoding in-memory JPEG records with libjpeg-turbo
(the settings of ``tf.io.decode_jpeg``'s default: fast integer IDCT, RGB), each process into one
preallocated buffer, no pipeline at all. No feed can deliver decoded images faster than this;
the study reports every row as a fraction of it.

The worker processes start (and import) before the timing and are reused across runs.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import time
from typing import List, Optional

import numpy as np

from ray_ingest.bench.measure import Timing, cpu_delta, cpu_snapshot
from ray_ingest.runtime import usable_cores

_ENCODED: List[bytes] = []


def _load(encoded: List[bytes]) -> None:
    global _ENCODED
    _ENCODED = encoded
    import simplejpeg  # noqa: F401 - imported before any timing


def _decode(n: int, offset: int) -> int:
    import simplejpeg

    header = simplejpeg.decode_jpeg_header(_ENCODED[0])
    out = np.empty((header[0], header[1], 3), np.uint8)
    records = itertools.islice(itertools.cycle(_ENCODED), offset % len(_ENCODED), None)
    for data in itertools.islice(records, n):
        simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out, fastdct=True)
    return n


class DecodeLimit:
    """A pool of one process per core holding the same JPEG records in memory."""

    def __init__(self, encoded: List[bytes], processes: Optional[int] = None):
        if not encoded:
            raise ValueError("the decode limit needs at least one JPEG record")
        self.processes = processes or usable_cores()
        self.pool = mp.get_context("spawn").Pool(self.processes, initializer=_load,
                                                 initargs=(list(encoded),))
        self.pool.starmap(_decode, [(1, 0)] * self.processes, chunksize=1)  # all started

    def run(self, warmup: int, images: int, min_seconds: float = 1.0) -> Timing:
        """Decodes ``images`` records split evenly over the processes (after ``warmup``), and
        again until at least ``min_seconds`` have passed: with no pipeline to fill, the limit
        runs many times faster than any feed, and a window of a few tenths of a second would
        measure the pool's scheduling rather than the decode."""
        if warmup:
            self.pool.starmap(_decode, [(max(1, warmup // self.processes), 0)] * self.processes)
        share = -(-images // self.processes)
        cpu0, t0 = cpu_snapshot(), time.perf_counter()
        done, seconds = 0, 0.0
        while done == 0 or seconds < min_seconds:
            done += sum(self.pool.starmap(_decode, [(share, k * share + done)
                                                    for k in range(self.processes)],
                                          chunksize=1))
            seconds = time.perf_counter() - t0
        return Timing(done, seconds, cpu_delta(cpu0, cpu_snapshot()))

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()
