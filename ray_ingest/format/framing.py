"""TFRecord framing, as TensorFlow defines it, and the DALI-style ``.idx`` index.

A TFRecord file is a sequence of records::

    uint64 length          (little endian)
    uint32 masked_crc32c(length bytes)
    byte   data[length]
    uint32 masked_crc32c(data)

with ``masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8`` (mod 2**32).

The index beside each shard has one line per record, ``byte_offset record_length``, where
``record_length`` covers the whole framed record (header, data and footer), exactly as
NVIDIA DALI's ``tfrecord2idx`` writes it.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass
from typing import BinaryIO, List, Optional, Sequence, Tuple

import crc32c as _crc32c

from ray_ingest.errors import ManifestError, RecordCorruptError

_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF
_HEADER = struct.Struct("<QI")  # length, masked crc of the length
_FOOTER = struct.Struct("<I")
_LEN = struct.Struct("<Q")
HEADER_SIZE = _HEADER.size  # 12
FOOTER_SIZE = _FOOTER.size  # 4
OVERHEAD = HEADER_SIZE + FOOTER_SIZE


def masked_crc32c(data) -> int:
    crc = _crc32c.crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & _U32) + _MASK_DELTA) & _U32


def frame_record(data) -> bytes:
    """One framed record (header + data + footer) as bytes."""
    length = _LEN.pack(len(data))
    return b"".join(
        (length, _FOOTER.pack(masked_crc32c(length)), data, _FOOTER.pack(masked_crc32c(data)))
    )


class TFRecordWriter:
    """Writes framed records to a binary stream and remembers each record's offset and size.

    ``stream`` is any object with ``write`` (a local file, a pyarrow output stream, ...).
    The caller owns opening and closing it.
    """

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self.offsets: List[Tuple[int, int]] = []
        self.bytes_written = 0

    def write(self, data) -> None:
        length = _LEN.pack(len(data))
        self._stream.write(length + _FOOTER.pack(masked_crc32c(length)))
        self._stream.write(data)
        self._stream.write(_FOOTER.pack(masked_crc32c(data)))
        size = len(data) + OVERHEAD
        self.offsets.append((self.bytes_written, size))
        self.bytes_written += size

    @property
    def num_records(self) -> int:
        return len(self.offsets)

    def index_text(self) -> str:
        return index_lines(self.offsets)


def index_lines(entries: Sequence[Tuple[int, int]]) -> str:
    return "".join(f"{offset} {size}\n" for offset, size in entries)


def read_index(text: str, path: str = "<index>") -> List[Tuple[int, int]]:
    """Parses ``.idx`` text into ``[(byte_offset, record_length), ...]``."""
    entries = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            entries.append((int(parts[0]), int(parts[1])))
        except ValueError:
            raise ManifestError(
                f"{path}:{lineno}: index line must be 'byte_offset record_length', got {line!r}"
            ) from None
    return entries


def scan_records(
    buf,
    *,
    path: str = "<buffer>",
    base_offset: int = 0,
    verify: bool = True,
    skip_corrupt: bool = False,
) -> Tuple[List[memoryview], Optional[RecordCorruptError]]:
    """Splits a buffer holding whole framed records into zero-copy views of their data.

    ``base_offset`` is the buffer's position in the file (for error messages). With
    ``verify`` the masked CRCs of length and data are checked. A truncated or corrupt record
    raises :class:`RecordCorruptError`; with ``skip_corrupt`` the records before it are
    returned together with the error instead (the rest of the buffer is skipped).
    """
    mv = memoryview(buf)
    if mv.ndim != 1 or mv.itemsize != 1:
        mv = mv.cast("B")
    end = len(mv)
    pos = 0
    out: List[memoryview] = []
    unpack_header = _HEADER.unpack_from
    unpack_footer = _FOOTER.unpack_from
    crc = masked_crc32c
    error: Optional[RecordCorruptError] = None
    while pos < end:
        if end - pos < HEADER_SIZE:
            error = RecordCorruptError(
                path, base_offset + pos, f"truncated header ({end - pos} of {HEADER_SIZE} bytes)"
            )
            break
        length, length_crc = unpack_header(mv, pos)
        if verify and crc(mv[pos : pos + 8]) != length_crc:
            error = RecordCorruptError(path, base_offset + pos, "length CRC mismatch")
            break
        data_start = pos + HEADER_SIZE
        data_end = data_start + length
        if data_end + FOOTER_SIZE > end:
            error = RecordCorruptError(
                path,
                base_offset + pos,
                f"truncated record (needs {length + OVERHEAD} bytes, {end - pos} left)",
            )
            break
        data = mv[data_start:data_end]
        if verify and crc(data) != unpack_footer(mv, data_end)[0]:
            error = RecordCorruptError(path, base_offset + pos, "data CRC mismatch")
            break
        out.append(data)
        pos = data_end + FOOTER_SIZE
    if error is not None and not skip_corrupt:
        raise error
    return out, error


@dataclass(frozen=True)
class SkippedRecords:
    """Records ``first..last`` (record numbers in the file) of ``path`` that a scan skipped:
    bytes ``offset`` to ``end`` of the file, and why."""

    path: str
    first: int
    last: int
    offset: int
    end: int
    reason: str

    @property
    def count(self) -> int:
        return self.last - self.first + 1


def scan_resync(
    buf,
    entries: Sequence[Tuple[int, int]],
    first: int,
    *,
    path: str = "<buffer>",
    base_offset: int = 0,
    verify: bool = True,
) -> Tuple[List[Tuple[int, List[memoryview]]], List[SkippedRecords]]:
    """Scans a buffer of framed records past damage, using the index to find where each
    record starts.

    ``entries`` are the ``.idx`` entries ``(byte_offset, record_length)`` of the records the
    buffer should hold, records ``first``, ``first + 1``, ...; ``base_offset`` is the file
    offset of the buffer's first byte. A damaged record (a CRC mismatch, a bad header) is
    skipped and the scan goes on at the next record the index lists; a buffer that ends early
    (a truncated file) loses only the records it does not hold whole. Returns the good records
    as runs ``(record number of the run's first, [views])`` and what was skipped.
    """
    mv = memoryview(buf)
    if mv.ndim != 1 or mv.itemsize != 1:
        mv = mv.cast("B")
    n = len(entries)
    if n == 0:
        return [], []
    starts = [offset for offset, _ in entries]
    stop = entries[-1][0] + entries[-1][1] - base_offset  # bytes after the last are no records'
    have = min(len(mv), stop)
    runs: List[Tuple[int, List[memoryview]]] = []
    skipped: List[SkippedRecords] = []

    def lose(k: int, j: int, reason: str) -> None:
        skipped.append(SkippedRecords(path, first + k, first + j, entries[k][0],
                                      entries[j][0] + entries[j][1], reason))

    k = 0
    while k < n:
        start = entries[k][0] - base_offset
        if entries[k][0] + entries[k][1] - base_offset > have:  # the buffer ends in record k
            lose(k, n - 1, f"truncated: the file ends at byte {base_offset + have}")
            break
        views, error = scan_records(mv[start:have], path=path, base_offset=base_offset + start,
                                    verify=verify, skip_corrupt=True)
        if views:
            runs.append((first + k, views))
        k += len(views)
        if error is None:
            continue  # a run to the end, or a buffer cut at a record boundary (seen next)
        # Skip the record the damage is in (the scan stopped at its start) and go on at the
        # next one; a header that lied about its length may have misled the scan further.
        j = min(n - 1, max(k, bisect.bisect_right(starts, error.offset) - 1))
        if entries[j][0] + entries[j][1] - base_offset > have:
            lose(k, n - 1, f"truncated: the file ends at byte {base_offset + have}")
            break
        lose(k, j, error.reason)
        k = j + 1
    return runs, skipped
