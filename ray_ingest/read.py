"""``read_records``: a streaming Ray Data reader of our TFRecord shards.

:class:`TFRecordShardDatasource` cuts the split — its shards in order (shuffled per pass with
``shuffle_files``), repeated ``repeat`` times — into read tasks of a whole number of output
blocks; a task reads its pieces of one or more shards (byte ranges cut at record boundaries
taken from the ``.idx`` files) in one request each, checks the CRCs, locates each record's
pixels without copying them, checks the record against the manifest, and fills blocks:
raw records straight into ``uint8[N, H, W, C]`` (one copy out of the file buffer), JPEG records
as their encoded bytes, which ``map_batches`` decodes on the same CPU worker (Ray Data fuses
the two) with libjpeg-turbo into one preallocated ``uint8[N, H, W, 3]``. Full blocks of
``block_rows`` rows let a consumer batching by the same size take batches without copies.
"""

from __future__ import annotations

import logging
import math
import os
import random
from dataclasses import dataclass, replace
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from ray_ingest import fs, keys
from ray_ingest.codec.example import ExampleDecodeError, parse_example, split_encoded
from ray_ingest.codec.framing import RecordCorruptError, read_index, scan_records
from ray_ingest.manifest import Manifest, ManifestError, read_manifest

logger = logging.getLogger("ray_ingest")

ENCODED_COLUMN = "encoded"
IMAGE = keys.IMAGE_COLUMN
LABEL = keys.LABEL_COLUMN
FILENAME = "filename"
MIN_TASK_BYTES = 8 << 20
MAX_TASK_BYTES = 128 << 20
#: Rows per output block: batch-sized, so that iter_batches(batch_size=256) slices blocks
#: without copying them (images over ~512 KB get fewer rows a block).
DEFAULT_BLOCK_ROWS = 256
MAX_BLOCK_BYTES = 128 << 20


class RecordMismatchError(ManifestError):
    """A record disagrees with the manifest (shape, encoding, class id)."""


@dataclass(frozen=True)
class ShardRange:
    """Records ``[start, stop)`` of one shard."""

    file: str
    index: str
    start: int
    stop: int
    shard_records: int
    shard_bytes: int

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.stop == self.shard_records

    @property
    def num_records(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class ReadOptions:
    verify_crc: bool = True
    skip_corrupt: bool = False
    shuffle_files: bool = False
    shuffle_seed: Optional[int] = None
    #: Shuffle the records inside each read task.
    shuffle_records: bool = False
    #: Records per read task (None: from the data size and the requested parallelism).
    records_per_task: Optional[int] = None
    #: Read the split this many times in one stream (each pass reshuffled when shuffling).
    repeat: int = 1
    block_rows: int = DEFAULT_BLOCK_ROWS
    #: (i, n): keep only tasks i, i + n, i + 2n, ... of the plan (a disjoint 1/n of the data).
    shard: Optional[Tuple[int, int]] = None
    #: Add each record's ``image/filename`` as a ``filename`` column (for audits).
    with_filename: bool = False


@dataclass(frozen=True)
class RecordSpec:
    """What every record of the dataset must be, from the manifest."""

    encoding: str
    height: int
    width: int
    channels: int
    num_classes: int

    @classmethod
    def of(cls, m: Manifest) -> "RecordSpec":
        return cls(m.encoding, m.height, m.width, m.channels, len(m.class_names))

    @property
    def pixel_bytes(self) -> int:
        return self.height * self.width * self.channels

    @property
    def row_bytes(self) -> int:
        """In-memory bytes of one decoded row (image + label)."""
        return self.pixel_bytes + 8


def block_rows_for(spec: RecordSpec, block_rows: int) -> int:
    return max(1, min(block_rows, MAX_BLOCK_BYTES // spec.row_bytes))


def plan_tasks(manifest: Manifest, split: str, parallelism: int,
               options: ReadOptions) -> List[List[ShardRange]]:
    """Cuts the split's record stream into read tasks, each a list of shard pieces.

    The stream is the shards in manifest order (shuffled per pass with ``shuffle_files``),
    ``repeat`` times over. A task takes a whole number of blocks: about ``parallelism``
    tasks a pass, but at least ~8 MB (and one block) and at most ~128 MB of shard bytes.
    """
    shards = [s for s in manifest.shards(split) if s.num_records > 0]
    total = sum(s.num_records for s in shards)
    if total == 0:
        return []
    rows = block_rows_for(RecordSpec.of(manifest), options.block_rows)
    per_task = options.records_per_task
    if per_task is None:
        record_bytes = max(1, sum(s.num_bytes for s in shards) // total)
        floor = max(rows, math.ceil(MIN_TASK_BYTES / record_bytes))
        ceiling = max(floor, MAX_TASK_BYTES // record_bytes)
        per_task = min(ceiling, max(floor, math.ceil(total / max(1, parallelism))))
        if options.shard is not None:  # enough tasks for every shard to get a part
            per_task = min(per_task, math.ceil(total / options.shard[1]))
        per_task = max(rows, per_task // rows * rows)  # whole blocks
    rng = random.Random(options.shuffle_seed)  # no seed: a new order each time it is planned
    tasks: List[List[ShardRange]] = []
    current: List[ShardRange] = []
    room = per_task
    for _ in range(options.repeat):
        order = list(shards)
        if options.shuffle_files:
            rng.shuffle(order)
        for s in order:
            start = 0
            while start < s.num_records:
                take = min(room, s.num_records - start)
                current.append(ShardRange(s.file, s.index, start, start + take, s.num_records,
                                          s.num_bytes))
                start += take
                room -= take
                if room == 0:
                    tasks.append(current)
                    current, room = [], per_task
    if current:
        tasks.append(current)
    if options.shard is not None:
        i, n = options.shard
        tasks = tasks[i::n]
    return tasks


def _read_range_bytes(root: str, r: ShardRange, skip_corrupt: bool) -> Tuple[bytes, int]:
    """``(bytes, byte offset of the first record)`` of a range, using the index to cut it.

    A short file raises :class:`RecordCorruptError`, unless ``skip_corrupt`` (then the
    record scan reports where it ends)."""
    path = fs.join(root, r.file)
    try:
        if r.whole:
            data = fs.read_bytes(path)
            if len(data) != r.shard_bytes and not skip_corrupt:
                raise RecordCorruptError(
                    path, min(len(data), r.shard_bytes),
                    f"file has {len(data)} bytes, the manifest says {r.shard_bytes} "
                    "(truncated or replaced shard)")
            return data, 0
        idx_path = fs.join(root, r.index)
        entries = read_index(fs.read_bytes(idx_path).decode("ascii"), idx_path)
    except FileNotFoundError as e:
        raise ManifestError(f"{e.filename or path}: listed in the manifest but missing") from None
    if len(entries) != r.shard_records:
        raise ManifestError(
            f"{idx_path}: {len(entries)} index entries, the manifest says {r.shard_records} records"
        )
    begin = entries[r.start][0]
    end = entries[r.stop - 1][0] + entries[r.stop - 1][1]
    data = fs.read_range(path, begin, end - begin)
    if len(data) != end - begin and not skip_corrupt:
        raise RecordCorruptError(path, begin + len(data),
                                 f"file ends inside records {r.start}..{r.stop - 1}")
    return data, begin


def _mismatch(path: str, rec_no: int, what: str, got, want):
    return RecordMismatchError(
        f"{path}: record {rec_no}: {what} is {got!r}, the manifest says {want!r}"
    )


class _Record:
    """Fields of one record that the reader needs; the payload is a view into the file."""

    __slots__ = ("payload", "label", "filename")

    def __init__(self, view, spec: RecordSpec, want_format: bytes, path: str, rec_no: int):
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
            raise ExampleDecodeError(
                f"{path}: record {rec_no}: not one of our image records ({e})") from None
        if fmt != want_format:
            raise _mismatch(path, rec_no, keys.FORMAT, fmt.decode(errors="replace"), spec.encoding)
        if h != spec.height or w != spec.width:
            raise _mismatch(path, rec_no, "height x width", (h, w), (spec.height, spec.width))
        if not 0 <= label < spec.num_classes:
            raise _mismatch(path, rec_no, keys.LABEL, label, f"0..{spec.num_classes - 1}")
        if spec.encoding == keys.FORMAT_RAW and len(payload) != spec.pixel_bytes:
            raise _mismatch(path, rec_no, "raw pixel bytes", len(payload), spec.pixel_bytes)
        self.payload = payload
        self.label = label
        self.filename = f[keys.FILENAME].bytes_list.value[0] if keys.FILENAME in f else b""


def read_task(root: str, pieces: List[ShardRange], spec: RecordSpec, opts: ReadOptions,
              seed: Optional[int]) -> Iterator[Dict[str, np.ndarray]]:
    """Reads one task's pieces and yields blocks of ``block_rows`` rows (the last may be short)."""
    views: List[memoryview] = []
    # Per piece: (path, record number of its first view, index of its first view).
    where: List[Tuple[str, int, int]] = []
    owners: List[int] = []
    for r in pieces:
        path = fs.join(root, r.file)
        data, base = _read_range_bytes(root, r, opts.skip_corrupt)
        got, error = scan_records(data, path=path, base_offset=base, verify=opts.verify_crc,
                                  skip_corrupt=opts.skip_corrupt)
        if error is not None:
            logger.warning("skipping the rest of records %d..%d of %s: %s", r.start + len(got),
                           r.stop - 1, path, error)
        elif len(got) != r.num_records:
            raise ManifestError(f"{path}: records {r.start}..{r.stop - 1} hold {len(got)} "
                                f"records, expected {r.num_records}")
        owners.extend([len(where)] * len(got))
        where.append((path, r.start, len(views)))
        views.extend(got)
    order = np.arange(len(views))
    if opts.shuffle_records:
        np.random.default_rng(seed).shuffle(order)
    raw = spec.encoding == keys.FORMAT_RAW
    want_format = spec.encoding.encode()
    rows = block_rows_for(spec, opts.block_rows)
    for lo in range(0, len(order), rows):
        chunk = order[lo : lo + rows]
        labels = np.empty(len(chunk), dtype=np.int64)
        names = np.empty(len(chunk), dtype=object) if opts.with_filename else None
        if raw:
            images = np.empty((len(chunk), spec.height, spec.width, spec.channels), np.uint8)
            flat = images.reshape(len(chunk), spec.pixel_bytes)
        else:
            encoded = np.empty(len(chunk), dtype=object)
        for j, i in enumerate(chunk):
            path, start, first = where[owners[i]]
            rec = _Record(views[i], spec, want_format, path, start + int(i) - first)
            labels[j] = rec.label
            if names is not None:
                names[j] = rec.filename.decode("utf-8", "replace")
            if raw:
                flat[j] = np.frombuffer(rec.payload, dtype=np.uint8)
            else:
                encoded[j] = bytes(rec.payload)
        block = {IMAGE: images, LABEL: labels} if raw else {ENCODED_COLUMN: encoded, LABEL: labels}
        if names is not None:
            block[FILENAME] = names
        yield block


_MALLOC_TUNED = False


def tune_malloc() -> None:
    """Keeps freed block buffers in this process's heap instead of returning them to the OS.

    Blocks are fresh arrays of tens of MB; glibc serves those with ``mmap`` and unmaps them
    on free, so each block paid a page fault per 4 KB page (~17 µs per 224x224 image per
    buffer here). With high mmap and trim thresholds the memory is reused. glibc only;
    elsewhere a no-op. Once per process.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 512 << 20)
        libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        pass


JPEG_DCT = ("fast", "accurate")
DECODE_WHERE = ("workers", "consumer")


def decode_jpeg_batch(batch: Dict[str, np.ndarray], height: int, width: int,
                      dct: str = "fast") -> Dict[str, np.ndarray]:
    """``map_batches``: JPEG bytes → one preallocated ``uint8[N, H, W, 3]`` (libjpeg-turbo).

    ``dct="fast"`` is libjpeg-turbo's fast integer IDCT, which is also what TensorFlow's
    ``tf.io.decode_jpeg`` uses by default: the pixels are identical to TensorFlow's.
    ``"accurate"`` matches ``decode_jpeg(dct_method="INTEGER_ACCURATE")``, ~6 % slower."""
    import simplejpeg

    tune_malloc()
    fast = dct == "fast"
    encoded = batch[ENCODED_COLUMN]
    out = np.empty((len(encoded), height, width, 3), dtype=np.uint8)
    for i, data in enumerate(encoded):
        try:
            simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out[i], fastdct=fast)
        except ValueError as e:
            raise ExampleDecodeError(f"record {i} of a batch: undecodable JPEG: {e}") from None
    result = {IMAGE: out, LABEL: batch[LABEL]}
    if FILENAME in batch:
        result[FILENAME] = batch[FILENAME]
    return result


def _datasource_class():
    from ray.data import Datasource
    from ray.data.block import BlockAccessor, BlockMetadata
    from ray.data.datasource import ReadTask

    class TFRecordShardDatasource(Datasource):
        """Reads one split of a ray-ingest conversion output (see the module docstring)."""

        def __init__(self, manifest: Manifest, split: str, options: ReadOptions):
            super().__init__()
            self.manifest = manifest
            self.split = split
            self.options = options
            self.spec = RecordSpec.of(manifest)
            self._plans = 0  # a seeded shuffle differs per execution (epoch), reproducibly

        def get_name(self) -> str:
            return "TFRecordShards"

        def estimate_inmemory_data_size(self) -> Optional[int]:
            n = self.manifest.num_records(self.split)
            return n * self.spec.row_bytes * self.options.repeat

        def get_read_tasks(self, parallelism: int, per_task_row_limit: Optional[int] = None,
                           data_context=None) -> List[ReadTask]:
            opts = self.options
            if opts.shuffle_seed is not None:
                opts = replace(opts, shuffle_seed=opts.shuffle_seed + 7919 * self._plans)
            elif opts.shuffle_files or opts.shuffle_records:
                # No seed: a fresh one per plan, fixed in the tasks, so that a retried task
                # (its worker died) yields the same records in the same order again.
                opts = replace(opts, shuffle_seed=random.SystemRandom().randrange(2**31))
            self._plans += 1
            plan = plan_tasks(self.manifest, self.split, max(1, parallelism // opts.repeat), opts)
            root, spec = self.manifest.root, self.spec
            tasks = []
            for k, pieces in enumerate(plan):
                seed = None if opts.shuffle_seed is None else opts.shuffle_seed * 1_000_003 + k

                def read_fn(pieces=pieces, seed=seed):
                    tune_malloc()
                    for batch in read_task(root, pieces, spec, opts, seed):
                        yield BlockAccessor.batch_to_block(batch)

                n = sum(p.num_records for p in pieces)
                meta = BlockMetadata(
                    num_rows=n,
                    size_bytes=n * spec.row_bytes,
                    input_files=sorted({fs.join(root, p.file) for p in pieces}),
                    exec_stats=None,
                )
                tasks.append(ReadTask(read_fn, meta, per_task_row_limit=per_task_row_limit))
            return tasks

    return TFRecordShardDatasource


def check_files(manifest: Manifest, split: str) -> None:
    """Every shard and index the split lists must exist (one listing of the folder)."""
    present = set(fs.list_dir(manifest.root))
    missing = [name for s in manifest.shards(split) for name in (s.file, s.index)
               if name not in present]
    if missing:
        raise ManifestError(
            f"{manifest.path}: lists {len(missing)} files that are missing from "
            f"{manifest.root}: {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "")
        )


def read_records(
    path: str,
    split: str = "train",
    *,
    verify_crc: bool = True,
    skip_corrupt: bool = False,
    shuffle_files: bool = False,
    seed: Optional[int] = None,
    shuffle_records: bool = False,
    limit: Optional[int] = None,
    repeat: int = 1,
    records_per_task: Optional[int] = None,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    jpeg_dct: str = "fast",
    shard: Optional[Tuple[int, int]] = None,
    with_filename: bool = False,
    concurrency: Optional[int] = None,
    override_num_blocks: Optional[int] = None,
    decode: str = "workers",
):
    """A ``ray.data.Dataset`` of ``{"image": uint8[N, H, W, C], "label": int64[N]}`` batches.

    ``path`` is a conversion output directory or URI (it must hold ``manifest.json``).
    ``verify_crc`` checks every record's CRC; ``skip_corrupt`` skips the rest of a corrupt
    shard piece (logged) instead of failing; ``shuffle_files`` shuffles the order of shards
    (seeded by ``seed``; a new order each plan without one); ``shuffle_records`` shuffles the
    records within each read task; ``limit`` caps the number of rows; ``repeat`` streams the
    split that many times in one execution (like ``tf.data``'s ``repeat``); ``block_rows`` is
    the rows per block (use the consumer's batch size for copy-free batches); ``jpeg_dct`` is
    ``"fast"`` (TensorFlow's default decode, pixel for pixel) or ``"accurate"``; ``shard=(i,
    n)`` keeps a disjoint 1/n of the read tasks (the n shards together cover the split once);
    ``with_filename`` adds each record's ``image/filename`` as a ``filename`` column.
    ``decode="workers"`` (default) decodes JPEG records in the read tasks, on any node's CPUs;
    ``decode="consumer"`` leaves them encoded (an ``encoded`` column, ~10x fewer bytes through
    the object store and the network) for :func:`iter_images` to decode in the consuming
    process's threads — the tf.data / DALI arrangement, best when the consumer's node has
    spare cores. Raw records are the same either way.
    For a shuffle across tasks, pass ``local_shuffle_buffer_size`` to ``iter_batches``.
    """
    import ray

    from ray_ingest.runtime import PIPELINE_CONTEXT, data_context, ensure_ray

    manifest = read_manifest(path)
    check_files(manifest, split)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    if shard is not None and not (len(shard) == 2 and 0 <= shard[0] < shard[1]):
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard!r}")
    if jpeg_dct not in JPEG_DCT:
        raise ValueError(f"jpeg_dct must be one of {JPEG_DCT}, got {jpeg_dct!r}")
    if decode not in DECODE_WHERE:
        raise ValueError(f"decode must be one of {DECODE_WHERE}, got {decode!r}")
    options = ReadOptions(verify_crc=verify_crc, skip_corrupt=skip_corrupt,
                          shuffle_files=shuffle_files, shuffle_seed=seed,
                          shuffle_records=shuffle_records, records_per_task=records_per_task,
                          repeat=repeat, block_rows=block_rows,
                          shard=tuple(shard) if shard is not None else None,
                          with_filename=with_filename)
    ensure_ray()
    source = _datasource_class()(manifest, split, options)
    if override_num_blocks is None:
        # One block stream per planned task. Left to Ray Data, a read of fewer tasks than its
        # default of 200 blocks is sliced into small blocks, which also stops it from fusing
        # the read with the JPEG decode.
        cpus = int(ray.cluster_resources().get("CPU", 1))
        override_num_blocks = len(plan_tasks(manifest, split, 2 * max(1, cpus), options))
    spec = RecordSpec.of(manifest)
    # Emit each block as the read task yields it: with the default 128 MB target, Ray Data
    # would concatenate a task's blocks into one (a copy) and a consumer would have to re-cut
    # batches across block edges (another copy).
    block_bytes = max(1 << 20, block_rows_for(spec, block_rows) * spec.row_bytes)
    with data_context(**PIPELINE_CONTEXT, target_max_block_size=block_bytes):
        ds = ray.data.read_datasource(source, concurrency=concurrency,
                                      override_num_blocks=max(1, override_num_blocks))
        if limit is not None:
            ds = ds.limit(limit)
        if manifest.encoding == keys.FORMAT_JPEG and decode == "workers":
            # batch_size=None: one call per read block, so Ray Data fuses the decode into the
            # read task (no extra trip through the object store).
            ds = ds.map_batches(
                decode_jpeg_batch,
                fn_kwargs={"height": manifest.height, "width": manifest.width,
                           "dct": jpeg_dct},
                batch_size=None,
                batch_format="numpy",
                zero_copy_batch=True,
            )
    return ds


def iter_images(source, *, batch_size: int = 256, prefetch_batches: int = 4,
                decode_threads: Optional[int] = None, jpeg_dct: str = "fast",
                drop_last: bool = False, local_shuffle_buffer_size: Optional[int] = None,
                local_shuffle_seed: Optional[int] = None) -> Iterator[Dict[str, np.ndarray]]:
    """``{"image": uint8[N, H, W, C], "label": int64[N]}`` numpy batches from ``source`` (a
    ``Dataset`` or a ``DataIterator`` such as a Ray Train worker's ``get_dataset_shard``).

    Batches of a read with ``decode="consumer"`` are decoded here by ``decode_threads``
    threads (libjpeg-turbo releases the GIL; default: this machine's cores, at most 8), several
    batches ahead of the consumer and in order; batches that already hold pixels pass through.
    """
    import collections
    from concurrent.futures import ThreadPoolExecutor

    import simplejpeg

    if jpeg_dct not in JPEG_DCT:
        raise ValueError(f"jpeg_dct must be one of {JPEG_DCT}, got {jpeg_dct!r}")
    threads = decode_threads or min(8, os.cpu_count() or 1)
    if threads < 1:
        raise ValueError(f"decode_threads must be >= 1, got {decode_threads}")
    batches = source.iter_batches(batch_size=batch_size, prefetch_batches=prefetch_batches,
                                  batch_format="numpy", drop_last=drop_last,
                                  local_shuffle_buffer_size=local_shuffle_buffer_size,
                                  local_shuffle_seed=local_shuffle_seed)

    def decode(k: int, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if ENCODED_COLUMN not in batch:
            return batch
        encoded = batch[ENCODED_COLUMN]
        if len(encoded) == 0:
            raise ExampleDecodeError(f"batch {k}: an empty batch of encoded images")
        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(encoded[0])
        except ValueError as e:
            raise ExampleDecodeError(f"batch {k}, record 0: undecodable JPEG: {e}") from None
        try:
            return decode_jpeg_batch(batch, height, width, jpeg_dct)
        except ExampleDecodeError as e:
            raise ExampleDecodeError(f"batch {k}: {e}") from None

    tune_malloc()
    pending: "collections.deque" = collections.deque()
    pool = ThreadPoolExecutor(threads, thread_name_prefix="ray-ingest-decode")
    it = iter(batches)
    try:
        for k, batch in enumerate(it):
            pending.append(pool.submit(decode, k, batch))
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
