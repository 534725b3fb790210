"""Every record of a shard or of a split, in file order, for tools, tests and benchmarks, and
the check of a whole shard against its manifest entry.

Reads whole files (local paths or URIs) and checks CRCs; the streaming reader for training is
:mod:`ray_ingest.read`.
"""

from __future__ import annotations

import hashlib
from typing import Iterator, Optional

from ray_ingest import fs
from ray_ingest.errors import ManifestError, RecordCorruptError
from ray_ingest.format.example import ImageRecord, decode_image_example
from ray_ingest.format.framing import OVERHEAD, read_index, scan_records
from ray_ingest.format.manifest import Manifest, ShardInfo, read_manifest


def iter_shard(path: str, *, verify: bool = True) -> Iterator[memoryview]:
    """The serialized records of one TFRecord file (views into one buffer)."""
    views, _ = scan_records(fs.read_bytes(path), path=path, verify=verify)
    yield from views


def iter_records(root: str, split: str, *, manifest: Optional[Manifest] = None,
                 verify: bool = True) -> Iterator[ImageRecord]:
    """The decoded records of a split of a conversion output, shard by shard."""
    m = manifest or read_manifest(root)
    for s in m.shards(split):
        for view in iter_shard(fs.join(m.root, s.file), verify=verify):
            yield decode_image_example(view)


def check_shard_bytes(path: str, data, shard: ShardInfo, *, checksum: bool = True) -> None:
    """Checks a whole shard's bytes against its manifest entry: the size, and the SHA-256
    when the entry has one and ``checksum``.

    A wrong size raises :class:`RecordCorruptError`. A wrong digest is located by a CRC scan:
    a damaged record raises :class:`RecordCorruptError` at its byte offset; bytes that are
    well framed but differ from what was written (a replaced shard, a consistent edit) raise
    :class:`ManifestError`.
    """
    if len(data) != shard.num_bytes:
        raise RecordCorruptError(
            path, min(len(data), shard.num_bytes),
            f"file has {len(data)} bytes, the manifest says {shard.num_bytes} "
            "(truncated or replaced shard)")
    if not checksum or shard.sha256 is None:
        return
    digest = hashlib.sha256(data).hexdigest()
    if digest != shard.sha256:
        scan_records(data, path=path, verify=True)  # raises where a record is damaged
        raise ManifestError(
            f"{path}: SHA-256 {digest} differs from the manifest's {shard.sha256}, though "
            "every record's CRC holds (a replaced or rewritten shard)")


def check_shard(root: str, shard: ShardInfo) -> None:
    """Checks one shard of a conversion output completely: present, its size and SHA-256
    (when the manifest has one), every record's CRC, its record count, and its ``.idx``.

    Raises :class:`RecordCorruptError` (file and byte offset) or :class:`ManifestError`.
    Reads the whole shard once.
    """
    path = fs.join(root, shard.file)
    idx_path = fs.join(root, shard.index)
    try:
        data = fs.read_bytes(path)
        index_text = fs.read_bytes(idx_path).decode("ascii", "replace")
    except FileNotFoundError as e:
        raise ManifestError(f"{e.filename or path}: listed in the manifest but missing") from None
    check_shard_bytes(path, data, shard)
    views, _ = scan_records(data, path=path, verify=True)
    if len(views) != shard.num_records:
        raise ManifestError(
            f"{path}: holds {len(views)} records, the manifest says {shard.num_records}")
    expected, offset = [], 0
    for v in views:
        expected.append((offset, len(v) + OVERHEAD))
        offset += len(v) + OVERHEAD
    entries = read_index(index_text, idx_path)
    if entries != expected:
        bad = next((i for i, (a, b) in enumerate(zip(entries, expected)) if a != b),
                   min(len(entries), len(expected)))
        raise ManifestError(
            f"{idx_path}: does not match its shard ({len(entries)} entries for {len(views)} "
            f"records; first difference at entry {bad})")
