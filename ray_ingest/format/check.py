"""What a record and a shard must be, and the checks of both: used by the reader (every record
it yields), by ``inspect --verify`` (:mod:`ray_ingest.format.verify`) and by adopting foreign
shards (:mod:`ray_ingest.format.adopt`).

:class:`RecordSpec` is what every record of a dataset must be, derived from its manifest in one
place (:meth:`RecordSpec.of`). :func:`check_record` parses one record and checks it against a
spec; a record that breaks a rule raises :class:`~ray_ingest.errors.RecordMismatchError` (one
that is no image record at all :class:`~ray_ingest.errors.ExampleDecodeError`) naming the file,
the record number, its byte offset when known, and the rule. The reader checks the rules that
cost a few comparisons; ``thorough`` adds the class texts, the channels and the JPEG headers.

A shard is checked by its CRC scan and extent (:func:`scan_shard`, :func:`check_extent`), its
``.idx`` (:func:`check_index`) and its SHA-256 (:func:`check_digest`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import List, NamedTuple, Optional, Sequence, Tuple

from ray_ingest import fs
from ray_ingest.errors import (
    ExampleDecodeError,
    ManifestError,
    RecordCorruptError,
    RecordMismatchError,
)
from ray_ingest.format import keys
from ray_ingest.format.example import parse_example, split_encoded
from ray_ingest.format.framing import OVERHEAD, read_index, scan_records
from ray_ingest.format.manifest import Manifest, ShardInfo


@dataclass(frozen=True)
class RecordSpec:
    """What every record of the dataset must be, from the manifest (:meth:`of`)."""

    encoding: str
    #: Every record's size; None for whole-image shards (each record has its own).
    height: Optional[int]
    width: Optional[int]
    channels: int
    num_classes: int
    #: Mean stored bytes of a record over the dataset (0: unknown).
    record_bytes: int = 0
    #: The side of the images a read yields when it crops at decode time (None: no crop).
    crop_size: Optional[int] = None
    #: Whole-image shards: the limit on each record's longer side (0: none); also the largest
    #: stored side, for memory estimates.
    max_side: int = 0
    #: Whole-image shards: the limit on each record's shorter side (0: none).
    short_side: int = 0
    #: The class names (empty: not checked), ``image/class/text`` of each class id.
    class_names: Tuple[str, ...] = ()
    #: ``encoding`` as a record's ``image/format`` holds it, and the raw bytes of one
    #: fixed-size raw record (0: not raw, or whole images): set once, read per record.
    format_bytes: bytes = field(init=False, repr=False, compare=False)
    raw_record_bytes: int = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "format_bytes", self.encoding.encode())
        fixed_raw = self.raw and not self.variable
        object.__setattr__(self, "raw_record_bytes",
                           self.height * self.width * self.channels if fixed_raw else 0)

    @classmethod
    def of(cls, m: Manifest, crop=None) -> "RecordSpec":
        """The spec of a dataset's records; ``crop`` (a crop at decode time, or None) sets the
        size of the images a read yields."""
        shards = [s for split in m.splits for s in m.shards(split)]
        records = sum(s.num_records for s in shards)
        mean = sum(s.num_bytes for s in shards) // records if records else 0
        return cls(m.encoding, m.height, m.width, m.channels, len(m.class_names), mean,
                   None if crop is None else crop.size, int(m.max_side or 0),
                   int(m.short_side or 0), tuple(m.class_names))

    @property
    def raw(self) -> bool:
        return self.encoding == keys.FORMAT_RAW

    @property
    def variable(self) -> bool:
        return self.height is None or self.width is None

    @property
    def out_shape(self) -> Tuple[int, int, int]:
        """The shape of one image a read yields: the crop's, else the stored one (whole-image
        shards without a crop: the largest stored side, squared, as an estimate)."""
        if self.crop_size is not None:
            return self.crop_size, self.crop_size, 3
        if self.variable:
            side = self.max_side or 512
            return side, side, self.channels
        return self.height, self.width, self.channels

    @property
    def stored_pixel_bytes(self) -> int:
        """Raw bytes of one stored fixed-size record."""
        return self.height * self.width * self.channels

    @property
    def pixel_bytes(self) -> int:
        h, w, c = self.out_shape
        return h * w * c

    @property
    def row_bytes(self) -> int:
        """In-memory bytes of one decoded row (image + label)."""
        return self.pixel_bytes + 8


class CheckedRecord(NamedTuple):
    """What :func:`check_record` found: the image bytes (a view into the record), the class
    id, the stored size, and the record's other features (``image/filename``, ...)."""

    payload: memoryview
    label: int
    height: int
    width: int
    features: object


def where(path: str, rec_no: int, offset: Optional[int] = None) -> str:
    """``<file>: record <n>[ at byte offset <o>]``, how every record error begins."""
    at = "" if offset is None else f" at byte offset {offset}"
    return f"{path}: record {rec_no}{at}"


def _channels(f, spec: RecordSpec) -> int:
    values = f[keys.CHANNELS].int64_list.value if keys.CHANNELS in f else ()
    return values[0] if values else spec.channels


def _shape_error(f, spec: RecordSpec, at: str, h: int, w: int) -> RecordMismatchError:
    got = (h, w, _channels(f, spec))
    if spec.variable:
        return RecordMismatchError(f"{at}: height x width x channels is {got}; whole images "
                                   "need positive sizes and 1 or 3 channels")
    return RecordMismatchError(f"{at}: height x width x channels is {got}, the manifest says "
                               f"{(spec.height, spec.width, spec.channels)}")


def _check_whole_size(f, spec: RecordSpec, at: str, h: int, w: int) -> None:
    if h < 1 or w < 1:
        raise _shape_error(f, spec, at, h, w)
    long, short = (h, w) if h >= w else (w, h)
    if spec.max_side and long > spec.max_side:
        raise RecordMismatchError(f"{at}: {h}x{w} exceeds the manifest's max_side "
                                  f"{spec.max_side}")
    if spec.short_side and short > spec.short_side:
        raise RecordMismatchError(f"{at}: {h}x{w} exceeds the manifest's short_side "
                                  f"{spec.short_side}")


def check_record(view, spec: RecordSpec, path: str, rec_no: int, offset: Optional[int] = None,
                 *, thorough: bool = False) -> CheckedRecord:
    """Parses one serialized record and checks it against ``spec``.

    Every read checks: the record is one of our image records (``image/encoded``, ``format``,
    ``height``, ``width``, ``class/label``), its ``image/format`` is the manifest's encoding,
    its size the manifest's (whole images: positive, within ``max_side`` / ``short_side``),
    its class id below the number of classes, and raw pixels fill height x width x channels
    bytes. ``thorough`` also checks the channels, ``image/class/text`` against the class name,
    and that the JPEG header reads and agrees with the record's size (and, for whole images,
    channels). ``path``, ``rec_no`` and ``offset`` (the record's byte offset, when known) name
    the record in the error. The payload stays a view into ``view``.
    """
    split = split_encoded(view)
    try:
        if split is not None:
            f = split[0].feature
            payload = split[1]
        else:  # not the plain shape: parse it whole (copies the value)
            f = parse_example(view).features.feature
            payload = memoryview(f[keys.ENCODED].bytes_list.value[0])
        fmt = f[keys.FORMAT].bytes_list.value[0]
        label = f[keys.LABEL].int64_list.value[0]
        h = f[keys.HEIGHT].int64_list.value[0]
        w = f[keys.WIDTH].int64_list.value[0]
    except (ExampleDecodeError, IndexError) as e:
        raise ExampleDecodeError(f"{where(path, rec_no, offset)}: not one of our image records "
                                 f"({e or 'a feature is missing'})") from None
    if fmt != spec.format_bytes:
        raise RecordMismatchError(f"{where(path, rec_no, offset)}: {keys.FORMAT} is "
                                  f"{fmt.decode(errors='replace')!r}, the manifest says "
                                  f"{spec.encoding!r}")
    if spec.height is None:
        _check_whole_size(f, spec, where(path, rec_no, offset), h, w)
    elif h != spec.height or w != spec.width:
        raise _shape_error(f, spec, where(path, rec_no, offset), h, w)
    if not 0 <= label < spec.num_classes:
        raise RecordMismatchError(f"{where(path, rec_no, offset)}: {keys.LABEL} is {label}, "
                                  f"the manifest has class ids 0..{spec.num_classes - 1}")
    want = spec.raw_record_bytes
    if not want and spec.height is None and spec.raw:
        want = h * w * _channels(f, spec)
    if want and len(payload) != want:
        raise RecordMismatchError(f"{where(path, rec_no, offset)}: {len(payload)} raw pixel "
                                  f"bytes, height x width x channels needs {want}")
    if thorough:
        _check_thoroughly(f, payload, spec, where(path, rec_no, offset), label, h, w)
    return CheckedRecord(payload, label, h, w, f)


def _check_thoroughly(f, payload, spec: RecordSpec, at: str, label: int, h: int,
                      w: int) -> None:
    """The checks that only a verify makes: channels, class text, JPEG header."""
    channels = _channels(f, spec)
    if (channels not in (1, 3)) if spec.variable else (channels != spec.channels):
        raise _shape_error(f, spec, at, h, w)
    texts = f[keys.CLASS_TEXT].bytes_list.value if keys.CLASS_TEXT in f else ()
    if texts and label < len(spec.class_names):
        text = texts[0].decode("utf-8", "replace")
        if text != spec.class_names[label]:
            raise RecordMismatchError(f"{at}: {keys.CLASS_TEXT} of class {label} is {text!r}, "
                                      f"the manifest says {spec.class_names[label]!r}")
    if spec.raw:
        return
    import simplejpeg

    try:
        jh, jw, colorspace, _ = simplejpeg.decode_jpeg_header(payload)
    except ValueError as e:
        raise ExampleDecodeError(f"{at}: unreadable JPEG header: {e}") from None
    if (jh, jw) != (h, w):
        raise RecordMismatchError(f"{at}: the JPEG is {jh}x{jw}, the record says {h}x{w}")
    if spec.variable and (1 if colorspace == "Gray" else 3) != channels:
        raise RecordMismatchError(f"{at}: {keys.CHANNELS} is {channels}, its JPEG is "
                                  f"{colorspace}")


# ---------------------------------------------------------------------------------------------
# One shard.


def read_listed(path: str) -> bytes:
    """The bytes of a file the manifest lists; a missing one raises :class:`ManifestError`."""
    try:
        return fs.read_bytes(path)
    except FileNotFoundError:
        raise ManifestError(f"{path}: listed in the manifest but missing") from None


def record_extents(views: Sequence[memoryview], base: int = 0) -> List[Tuple[int, int]]:
    """``(byte offset, framed length)`` of each record of a scan, the lines its ``.idx``
    must hold."""
    out, pos = [], base
    for v in views:
        size = len(v) + OVERHEAD
        out.append((pos, size))
        pos += size
    return out


def check_extent(path: str, size: int, count: int, shard: ShardInfo) -> None:
    """A shard of ``size`` bytes holding ``count`` whole records against its manifest entry:
    a file cut at a record boundary, or one that goes on past its records, raises
    :class:`RecordCorruptError` where the difference starts."""
    want_n, want_bytes = shard.num_records, shard.num_bytes
    if size <= want_bytes and count <= want_n and (size, count) != (want_bytes, want_n):
        raise RecordCorruptError(
            path, size, f"the file ends after {count} records ({size} bytes); the manifest "
                        f"says {want_n} records, {want_bytes} bytes (truncated)")
    if size >= want_bytes and count >= want_n and (size, count) != (want_bytes, want_n):
        raise RecordCorruptError(
            path, want_bytes, f"the file goes on past the manifest's {want_n} records, "
                              f"{want_bytes} bytes ({count} records, {size} bytes)")
    if (size, count) != (want_bytes, want_n):
        raise RecordCorruptError(
            path, 0, f"{count} records, {size} bytes; the manifest says {want_n} records, "
                     f"{want_bytes} bytes (a shard that differs from the one written)")


def scan_shard(path: str, data, shard: ShardInfo, *,
               verify: bool = True) -> Tuple[List[memoryview], List[Tuple[int, int]]]:
    """The records of a whole shard's bytes, framing and CRCs checked (``verify``), and
    their extents, checked against the manifest's entry: ``(views, extents)``."""
    views, _ = scan_records(data, path=path, verify=verify)
    check_extent(path, len(data), len(views), shard)
    return views, record_extents(views)


def index_entries(idx_path: str, num_records: Optional[int] = None) -> List[Tuple[int, int]]:
    """The lines of a shard's ``.idx``; with ``num_records`` (the manifest's count), checked
    to be as many."""
    entries = read_index(read_listed(idx_path).decode("ascii", "replace"), idx_path)
    if num_records is not None and len(entries) != num_records:
        raise ManifestError(f"{idx_path}: {len(entries)} index lines, the manifest says "
                            f"{num_records} records")
    return entries


def check_index(idx_path: str, path: str, expected: Sequence[Tuple[int, int]]) -> None:
    """Checks that the ``.idx`` at ``idx_path`` lists the records of ``path`` as a scan found
    them (``expected``: ``(byte offset, framed length)`` each); names the first line that
    differs, or the count of lines when one is missing or extra."""
    entries = index_entries(idx_path)
    for i, (want, got) in enumerate(zip(expected, entries)):
        if want != got:
            raise ManifestError(f"{idx_path}: line {i + 1} says record {i} is at byte offset "
                                f"{got[0]} and {got[1]} bytes long; {path} has it at "
                                f"{want[0]}, {want[1]} bytes")
    if len(entries) != len(expected):
        raise ManifestError(f"{idx_path}: {len(entries)} index lines for the "
                            f"{len(expected)} records of {path}")


def check_digest(path: str, data, want: Optional[str]) -> bool:
    """Checks a shard's bytes against the ``sha256`` of its manifest entry, when it has one
    (True if checked).

    A wrong digest is located by a CRC scan: a damaged record raises
    :class:`RecordCorruptError` at its byte offset; bytes that are well framed but differ from
    what was written (a replaced or rewritten shard) raise :class:`ManifestError`."""
    if not want:
        return False
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        scan_records(data, path=path, verify=True)  # raises where a record is damaged
        raise ManifestError(f"{path}: SHA-256 is {got}, the manifest says {want}, though every "
                            "record's CRC holds (a replaced or rewritten shard)")
    return True
