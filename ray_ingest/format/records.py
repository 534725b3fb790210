"""Every record of a shard or of a split, in file order, for tools, tests and benchmarks.

Reads whole files (local paths or URIs) and checks CRCs; the streaming reader for training is
:mod:`ray_ingest.read`, the checks of a shard against its manifest entry
:mod:`ray_ingest.format.check`.
"""

from __future__ import annotations

from typing import Iterator, Optional

from ray_ingest import fs
from ray_ingest.format.example import ImageRecord, decode_image_example
from ray_ingest.format.framing import scan_records
from ray_ingest.format.manifest import Manifest, read_manifest


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
