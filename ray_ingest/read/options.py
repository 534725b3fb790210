"""What a read may be asked for (:class:`ReadOptions`, checked once, here) and the size of its
blocks for what every record is (:class:`~ray_ingest.format.check.RecordSpec`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

from ray_ingest.errors import ConfigError
from ray_ingest.format.check import RecordSpec
from ray_ingest.read.crop import CenterCrop, RandomResizedCrop, check_crop

#: Rows per output block of decoded images: batch-sized, so that iter_batches(batch_size=256)
#: slices blocks without copying them (images over ~512 KB get fewer rows a block).
DEFAULT_BLOCK_ROWS = 256
#: Blocks of encoded records (``decode="consumer"``) are sized by their bytes instead: a block
#: costs Ray Data a fixed amount of scheduling, object and iterator work whatever it holds,
#: and 256 JPEGs of 224x224 are only ~3 MB.
ENCODED_BLOCK_BYTES = 24 << 20
MAX_BLOCK_BYTES = 128 << 20
#: libjpeg-turbo's IDCTs: "fast" is ``tf.io.decode_jpeg``'s default (pixels identical to
#: TensorFlow's), "accurate" matches ``dct_method="INTEGER_ACCURATE"``.
JPEG_DCT = ("fast", "accurate")
#: Where JPEG records are decoded: in the read tasks, or by the consuming process.
DECODE_WHERE = ("workers", "consumer")


@dataclass(frozen=True)
class ReadOptions:
    """Options of :func:`ray_ingest.read_records` (see its docstring)."""

    verify_crc: bool = True
    #: Check each shard's SHA-256 against the manifest (a conversion with checksums): read
    #: tasks then read whole shards, never parts, and hash every byte.
    verify_checksums: bool = False
    skip_corrupt: bool = False
    shuffle_files: bool = False
    #: Shuffle the records inside each read task.
    shuffle_records: bool = False
    #: Seeds both shuffles (None: a new order each time the read is planned).
    seed: Optional[int] = None
    limit: Optional[int] = None
    #: Read the split this many times in one stream (each pass reshuffled when shuffling).
    repeat: int = 1
    #: Records per read task (None: from the data size and the requested parallelism).
    records_per_task: Optional[int] = None
    #: Rows per block (None: DEFAULT_BLOCK_ROWS decoded rows, or ~ENCODED_BLOCK_BYTES of
    #: encoded records when the consumer decodes, at most MAX_BLOCK_BYTES). A value given is
    #: kept as it is: a caller that sizes blocks in whole batches gets exactly those.
    block_rows: Optional[int] = None
    jpeg_dct: str = "fast"
    #: (i, n): keep only tasks i, i + n, i + 2n, ... of the plan (a disjoint 1/n of the data).
    shard: Optional[Tuple[int, int]] = None
    #: Add each record's ``image/filename`` as a ``filename`` column (for audits).
    with_filename: bool = False
    decode: str = "workers"
    #: Crop at decode time (:class:`~ray_ingest.read.crop.RandomResizedCrop` or
    #: :class:`~ray_ingest.read.crop.CenterCrop`): images come out ``size x size``, decoded
    #: only where the box is. Boxes are drawn per record from ``seed`` (a new draw each epoch).
    crop: Optional[Union[RandomResizedCrop, CenterCrop]] = None
    concurrency: Optional[int] = None
    override_num_blocks: Optional[int] = None

    def __post_init__(self):
        if self.limit is not None and self.limit < 0:
            raise ConfigError(f"limit must be >= 0, got {self.limit}")
        if self.repeat < 1:
            raise ConfigError(f"repeat must be >= 1, got {self.repeat}")
        if self.block_rows is not None and self.block_rows < 1:
            raise ConfigError(f"block_rows must be >= 1, got {self.block_rows}")
        if self.records_per_task is not None and self.records_per_task < 1:
            raise ConfigError(f"records_per_task must be >= 1, got {self.records_per_task}")
        if self.shard is not None:
            shard = tuple(self.shard)
            if not (len(shard) == 2 and 0 <= shard[0] < shard[1]):
                raise ConfigError(f"shard must be (i, n) with 0 <= i < n, got {self.shard!r}")
            object.__setattr__(self, "shard", shard)
        if self.jpeg_dct not in JPEG_DCT:
            raise ConfigError(f"jpeg_dct must be one of {JPEG_DCT}, got {self.jpeg_dct!r}")
        if self.decode not in DECODE_WHERE:
            raise ConfigError(f"decode must be one of {DECODE_WHERE}, got {self.decode!r}")
        check_crop(self.crop)
        for name in ("concurrency", "override_num_blocks"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")


def block_bytes_per_row(spec: RecordSpec, decode: str) -> int:
    """Bytes one row of a block holds: an encoded record when the consumer decodes JPEG
    records, else the decoded image."""
    if decode == "consumer" and not spec.raw and spec.record_bytes > 0:
        return spec.record_bytes
    return spec.row_bytes


def block_rows_for(spec: RecordSpec, block_rows: Optional[int], decode: str = "workers") -> int:
    """Rows per block: ``block_rows`` as given, or (None) the default for what the block
    holds, at most MAX_BLOCK_BYTES of it."""
    if block_rows is not None:
        return block_rows
    row = block_bytes_per_row(spec, decode)
    block_rows = DEFAULT_BLOCK_ROWS
    if row != spec.row_bytes:  # encoded: whole default blocks up to ~ENCODED_BLOCK_BYTES
        block_rows *= max(1, ENCODED_BLOCK_BYTES // (row * DEFAULT_BLOCK_ROWS))
    return max(1, min(block_rows, MAX_BLOCK_BYTES // row))


def block_rows_in_batches(spec: Optional[RecordSpec], decode: str, batch_size: int) -> int:
    """The default block for what the blocks hold (``spec``: the dataset's; None: decoded
    images) in whole batches of ``batch_size``: rounded up to a whole batch, then down to
    whole batches that fit MAX_BLOCK_BYTES, and never under one batch. Batches are then
    slices of blocks, not copies, whatever the batch size."""
    rows = block_rows_for(spec, None, decode) if spec else DEFAULT_BLOCK_ROWS
    row = block_bytes_per_row(spec, decode) if spec else 0
    batches = -(-rows // batch_size)
    if row:
        batches = min(batches, MAX_BLOCK_BYTES // (row * batch_size))
    return batch_size * max(1, batches)
