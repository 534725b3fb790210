"""Planning a read: the split's record stream cut into read tasks of shard pieces."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import List, Optional

from ray_ingest import fs
from ray_ingest.errors import ManifestError
from ray_ingest.format.manifest import Manifest, ShardInfo
from ray_ingest.format.check import RecordSpec
from ray_ingest.read.options import ReadOptions, block_rows_for

MIN_TASK_BYTES = 8 << 20
MAX_TASK_BYTES = 128 << 20


@dataclass(frozen=True)
class ShardRange:
    """Records ``[start, stop)`` of one shard."""

    file: str
    index: str
    start: int
    stop: int
    shard_records: int
    shard_bytes: int
    sha256: Optional[str] = None

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.stop == self.shard_records

    @property
    def num_records(self) -> int:
        return self.stop - self.start

    @property
    def info(self) -> ShardInfo:
        """The manifest's entry of the shard."""
        return ShardInfo(self.file, self.index, self.shard_records, self.shard_bytes,
                         self.sha256)


def plan_tasks(manifest: Manifest, split: str, parallelism: int,
               options: ReadOptions) -> List[List[ShardRange]]:
    """Cuts the split's record stream into read tasks, each a list of shard pieces.

    The stream is the shards in manifest order (shuffled per pass with ``shuffle_files``),
    ``repeat`` times over. A task takes a whole number of blocks: about ``parallelism``
    tasks a pass, but at least ~8 MB (and one block) and at most ~128 MB of shard bytes.
    With ``verify_checksums`` every piece is a whole shard (a task may then hold more).
    """
    shards = [s for s in manifest.shards(split) if s.num_records > 0]
    total = sum(s.num_records for s in shards)
    if total == 0:
        return []
    rows = block_rows_for(RecordSpec.of(manifest, options.crop), options.block_rows,
                          options.decode)
    per_task = options.records_per_task
    if per_task is None:
        record_bytes = max(1, sum(s.num_bytes for s in shards) // total)
        floor = max(rows, math.ceil(MIN_TASK_BYTES / record_bytes))
        ceiling = max(floor, MAX_TASK_BYTES // record_bytes)
        per_task = min(ceiling, max(floor, math.ceil(total / max(1, parallelism))))
        if options.shard is not None:  # enough tasks for every shard to get a part
            per_task = min(per_task, math.ceil(total / options.shard[1]))
        per_task = max(rows, per_task // rows * rows)  # whole blocks
    rng = random.Random(options.seed)  # no seed: a new order each time it is planned
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
                take = s.num_records if options.verify_checksums else min(
                    room, s.num_records - start)
                current.append(ShardRange(s.file, s.index, start, start + take, s.num_records,
                                          s.num_bytes, s.sha256))
                start += take
                room -= take
                if room <= 0:
                    tasks.append(current)
                    current, room = [], per_task
    if current:
        tasks.append(current)
    if options.shard is not None:
        i, n = options.shard
        tasks = tasks[i::n]
    return tasks


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
