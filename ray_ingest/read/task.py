"""One read task: its shard pieces read in one request each, CRC-checked (whole shards also
against their manifest entry), each record checked against the manifest
(:func:`~ray_ingest.format.check.check_record`), and blocks of ``block_rows`` rows filled.

Raw records go straight into ``uint8[N, H, W, C]`` (one copy out of the file buffer). JPEG
records are decoded here, from a view into the file buffer into the block's preallocated
``uint8[N, H, W, 3]`` (``decode="workers"``), or passed on encoded as an Arrow table (the
JPEG bytes copied once into one buffer) with where each came from (``decode="consumer"``).
Pure functions of their arguments: testable without Ray.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from ray_ingest import fs
from ray_ingest.errors import ManifestError, RecordCorruptError
from ray_ingest.format import keys
from ray_ingest.format.check import (
    RecordSpec,
    check_digest,
    check_extent,
    check_record,
    index_entries,
    read_listed,
)
from ray_ingest.format.framing import SkippedRecords, scan_records, scan_resync
import ray_ingest.read.decode as dec
from ray_ingest.read.crop import record_keys, shard_key
from ray_ingest.read.cropdecode import CropDecodeError, decode_crops
from ray_ingest.read.options import ReadOptions, block_rows_for
from ray_ingest.read.plan import ShardRange

logger = logging.getLogger("ray_ingest")

#: Index lines this process keeps parsed, at most (16 bytes each): the read tasks a Ray
#: worker process runs one after another read the same shards' ``.idx`` files again and
#: again (a planned task reads parts of many shards).
INDEX_CACHE_LINES = 4_000_000
_index_cache: "OrderedDict[tuple, np.ndarray]" = OrderedDict()
_index_lock = threading.Lock()


def read_pieces(root: str, pieces: List[ShardRange], skip_corrupt: bool
                ) -> List[Tuple[bytes, int, str]]:
    """``(bytes, byte offset of the first record, shard path)`` of each piece, in order (each
    shard's path joined once): a whole shard is read whole, without its index; the other
    pieces are cut by their shard's ``.idx`` (read once) and read with one open of each shard
    file.

    A file that ends inside a piece raises :class:`RecordCorruptError`, unless
    ``skip_corrupt`` (then the record scan reports where it ends)."""
    out: List[Optional[Tuple[bytes, int, str]]] = [None] * len(pieces)
    ranges: Dict[str, List[Tuple[int, int, int]]] = {}  # shard path -> (piece, begin, end)
    indexes: Dict[str, np.ndarray] = {}
    paths: Dict[str, str] = {}
    for k, r in enumerate(pieces):
        path = paths.get(r.file)
        if path is None:
            path = paths[r.file] = fs.join(root, r.file)
        if r.whole:
            out[k] = read_listed(path), 0, path
            continue
        entries = indexes.get(r.index)
        if entries is None:
            entries = indexes[r.index] = cached_shard_index(root, r)
        begin = int(entries[r.start, 0])
        end = int(entries[r.stop - 1, 0] + entries[r.stop - 1, 1])
        ranges.setdefault(path, []).append((k, begin, end))
    for path, wanted in ranges.items():
        got = fs.read_ranges(path, [(begin, end - begin) for _, begin, end in wanted])
        for (k, begin, end), data in zip(wanted, got):
            r = pieces[k]
            if len(data) != end - begin and not skip_corrupt:
                raise RecordCorruptError(path, begin + len(data),
                                         f"file ends inside records {r.start}..{r.stop - 1}")
            out[k] = data, begin, path
    return out


def read_shard_index(root: str, r: ShardRange) -> List[Tuple[int, int]]:
    """The ``.idx`` entries of the piece's shard, checked against the manifest's count."""
    return index_entries(fs.join(root, r.index), r.shard_records)


def cached_shard_index(root: str, r: ShardRange) -> np.ndarray:
    """:func:`read_shard_index` as ``int64[N, 2]`` (byte offset, framed length), parsed once
    per process for a shard as the manifest lists it (its index path, record count, size and
    digest): a rewritten shard is another entry."""
    key = (fs.join(root, r.index), r.shard_records, r.shard_bytes, r.sha256)
    with _index_lock:
        hit = _index_cache.get(key)
        if hit is not None:
            _index_cache.move_to_end(key)
            return hit
    entries = np.asarray(read_shard_index(root, r), dtype=np.int64).reshape(-1, 2)
    with _index_lock:
        _index_cache[key] = entries
        held = sum(len(v) for v in _index_cache.values())
        while held > INDEX_CACHE_LINES and len(_index_cache) > 1:
            held -= len(_index_cache.popitem(last=False)[1])
    return entries


def skip_damage(root: str, r: ShardRange, data, base: int, verify: bool,
                on_skip: Optional[Callable[[List[SkippedRecords]], None]]
                ) -> List[Tuple[int, List[memoryview]]]:
    """The good records of a damaged piece, as runs ``(first record number, views)``: each
    damaged record is skipped and the scan resumes where the shard's index says the next one
    starts. What was skipped goes to the worker log and to ``on_skip``."""
    path = fs.join(root, r.file)
    entries = read_shard_index(root, r)[r.start : r.stop]
    runs, skipped = scan_resync(data, entries, r.start, path=path, base_offset=base,
                                verify=verify)
    for s in skipped:
        logger.warning("skipping records %d..%d (bytes %d..%d) of %s: %s", s.first, s.last,
                       s.offset, s.end, s.path, s.reason)
    if skipped and on_skip is not None:
        on_skip(skipped)
    return runs


def _filename(features) -> str:
    values = features[keys.FILENAME].bytes_list.value if keys.FILENAME in features else ()
    return values[0].decode("utf-8", "replace") if values else ""


def crop_columns(crop, seed: int, shards: List[str], records: np.ndarray,
                 sizes: np.ndarray) -> np.ndarray:
    """The ``crop`` column of a block: int32[N, 6] ``(y, x, h, w, flip, size)`` per record,
    drawn from ``(seed, shard file, record number)``."""
    names, inverse = np.unique(np.asarray(shards, dtype=object), return_inverse=True)
    shard_keys = np.array([shard_key(str(name)) for name in names], np.uint64)[inverse]
    boxes, flips = crop.boxes(sizes[:, 0], sizes[:, 1], record_keys(seed, shard_keys, records))
    out = np.empty((len(records), 6), np.int32)
    out[:, :4] = boxes
    out[:, 4] = flips
    out[:, 5] = crop.size
    return out


def decode_crop_block(payloads: List[memoryview], boxes: np.ndarray, images: np.ndarray,
                      shards: List[str], records: np.ndarray, fast: bool) -> None:
    """Decodes the crops of one block in this task (one buffer, one call)."""
    sizes = np.fromiter((len(p) for p in payloads), np.int64, len(payloads))
    ends = np.cumsum(sizes)
    try:
        decode_crops(b"".join(payloads), ends - sizes, ends, boxes[:, :4], boxes[:, 4], images,
                     fast=fast)
    except CropDecodeError as e:
        i, message = e.args
        raise dec.undecodable(shards[i], int(records[i]), message) from None


def read_task(root: str, pieces: List[ShardRange], spec: RecordSpec, opts: ReadOptions,
              seed: Optional[int],
              on_skip: Optional[Callable[[List[SkippedRecords]], None]] = None,
              pick: Optional[np.ndarray] = None) -> Iterator[Dict[str, np.ndarray]]:
    """Reads one task's pieces and yields blocks of ``block_rows`` rows (the last may be short).

    The rows are the pieces' records in order (shuffled with ``opts.shuffle_records``), or,
    with ``pick``, the records at those places of the pieces' records, in that order (a
    planned read: :mod:`~ray_ingest.read.planned`).

    A whole shard is checked against its manifest entry: its size and record count, and with
    ``opts.verify_checksums`` its SHA-256 (a mismatch that no record's CRC shows is never
    skipped). With ``opts.skip_corrupt``, damaged records are skipped (:func:`skip_damage`)
    and reported to ``on_skip`` before the first block is yielded."""
    views: List[memoryview] = []
    # Per run of consecutive records: (path, record number of its first view, index of that
    # view).
    where: List[Tuple[str, int, int]] = []
    owners: List[int] = []
    for r, (data, base, path) in zip(pieces, read_pieces(root, pieces, opts.skip_corrupt)):
        got, error = scan_records(data, path=path, base_offset=base, verify=opts.verify_crc,
                                  skip_corrupt=opts.skip_corrupt)
        runs = [(r.start, got)]
        if opts.skip_corrupt and (error is not None or len(got) != r.num_records):
            runs = skip_damage(root, r, data, base, opts.verify_crc, on_skip)
        elif r.whole:
            if not opts.skip_corrupt:  # skipping: every record the manifest lists is whole
                check_extent(path, len(data), len(got), r.info)
            if opts.verify_checksums:
                check_digest(path, data, r.sha256)
        elif len(got) != r.num_records:
            raise ManifestError(f"{path}: records {r.start}..{r.stop - 1} hold {len(got)} "
                                f"records, expected {r.num_records}")
        for start, run in runs:  # one run per stretch of consecutive records
            owners.extend([len(where)] * len(run))
            where.append((path, start, len(views)))
            views.extend(run)
    order = np.arange(len(views)) if pick is None else np.asarray(pick, np.int64)
    if pick is None and opts.shuffle_records:
        np.random.default_rng(seed).shuffle(order)
    consumer = not spec.raw and opts.decode == "consumer"
    crop = opts.crop
    crop_seed = opts.seed if opts.seed is not None else 0
    fast = opts.jpeg_dct == "fast"
    rows = block_rows_for(spec, opts.block_rows, opts.decode)
    for lo in range(0, len(order), rows):
        chunk = order[lo : lo + rows]
        n = len(chunk)
        labels = np.empty(n, dtype=np.int64)
        names = np.empty(n, dtype=object) if opts.with_filename else None
        if consumer or crop is not None:
            payloads: List[memoryview] = []
            shards: List[str] = []
            records = np.empty(n, dtype=np.int64)
            sizes = np.empty((n, 2), dtype=np.int64)
        if not consumer:
            images = np.empty((n, *spec.out_shape), np.uint8)
            flat = images.reshape(n, spec.pixel_bytes) if spec.raw else None
        for j, i in enumerate(chunk):
            path, start, first = where[owners[i]]
            rec_no = start + int(i) - first
            rec = check_record(views[i], spec, path, rec_no)
            labels[j] = rec.label
            if names is not None:
                names[j] = _filename(rec.features)
            if consumer or crop is not None:
                payloads.append(rec.payload)
                shards.append(path)
                records[j] = rec_no
                sizes[j] = rec.height, rec.width
            elif spec.raw:
                flat[j] = np.frombuffer(rec.payload, dtype=np.uint8)
            else:
                try:
                    dec.decode_jpeg_into(rec.payload, images[j], fast)
                except ValueError as e:
                    raise dec.undecodable(path, rec_no, e) from None
        boxes = None
        if crop is not None:
            boxes = crop_columns(crop, crop_seed, shards, records, sizes)
        if consumer:
            yield dec.encoded_table(payloads, labels, shards, records,
                                    None if names is None else list(names), boxes)
            continue
        if crop is not None:
            decode_crop_block(payloads, boxes, images, shards, records, fast)
        block = {dec.IMAGE: images, dec.LABEL: labels}
        if names is not None:
            block[dec.FILENAME] = names
        yield block
