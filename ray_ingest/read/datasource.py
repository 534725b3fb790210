"""The Ray Data ``Datasource`` of one split of a conversion output.

It cuts the split — its shards in order (shuffled per plan with ``shuffle_files``), repeated
``repeat`` times — into read tasks of a whole number of output blocks (:mod:`plan`); each task
runs :func:`~ray_ingest.read.task.read_task`. Importable and subclassable like Ray's own.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import List, Optional

import pyarrow as pa
from ray.data import Datasource
from ray.data.block import BlockAccessor, BlockMetadata
from ray.data.datasource import ReadTask

from ray_ingest import fs, quiet
from ray_ingest.format.check import RecordSpec
from ray_ingest.format.manifest import Manifest
from ray_ingest.read.options import ReadOptions
from ray_ingest.read.plan import plan_tasks
from ray_ingest.read.skips import reporter
from ray_ingest.read.task import read_task
from ray_ingest.runtime import tune_malloc


class TFRecordShardDatasource(Datasource):
    """Reads one split of a ray-ingest conversion output."""

    def __init__(self, manifest: Manifest, split: str, options: ReadOptions, skip_log=None):
        super().__init__()
        self.manifest = manifest
        self.split = split
        self.options = options
        #: With ``skip_corrupt``: the :class:`~ray_ingest.read.skips.SkipLog` actor the read
        #: tasks report skipped records to.
        self.skip_log = skip_log
        self.spec = RecordSpec.of(manifest, options.crop)
        self._plans = 0  # a seeded shuffle differs per execution (epoch), reproducibly

    def get_name(self) -> str:
        return "TFRecordShards"

    def estimate_inmemory_data_size(self) -> Optional[int]:
        n = self.manifest.num_records(self.split)
        return n * self.spec.row_bytes * self.options.repeat

    def plan_options(self) -> ReadOptions:
        """The options of the next plan: a seeded shuffle gets a new seed per plan (epoch),
        reproducibly; an unseeded one a fresh random seed, fixed in the tasks, so that a
        retried task (its worker died) yields the same records in the same order again."""
        opts = self.options
        if opts.seed is not None:
            opts = replace(opts, seed=opts.seed + 7919 * self._plans)
        elif opts.shuffle_files or opts.shuffle_records or opts.crop is not None:
            opts = replace(opts, seed=random.SystemRandom().randrange(2**31))
        self._plans += 1
        return opts

    def get_read_tasks(self, parallelism: int, per_task_row_limit: Optional[int] = None,
                       data_context=None) -> List[ReadTask]:
        opts = self.plan_options()
        plan = plan_tasks(self.manifest, self.split, max(1, parallelism // opts.repeat), opts)
        root, spec = self.manifest.root, self.spec
        on_skip = reporter(self.skip_log) if self.skip_log is not None else None
        tasks = []
        for k, pieces in enumerate(plan):
            seed = None if opts.seed is None else opts.seed * 1_000_003 + k

            def read_fn(pieces=pieces, seed=seed):
                tune_malloc()
                quiet.quiet_ray_data_task()
                for batch in read_task(root, pieces, spec, opts, seed, on_skip):
                    yield batch if isinstance(batch, pa.Table) else \
                        BlockAccessor.batch_to_block(batch)

            n = sum(p.num_records for p in pieces)
            meta = BlockMetadata(
                num_rows=n,
                size_bytes=n * spec.row_bytes,
                input_files=sorted({fs.join(root, p.file) for p in pieces}),
                exec_stats=None,
            )
            tasks.append(ReadTask(read_fn, meta, per_task_row_limit=per_task_row_limit))
        return tasks


class PlannedDatasource(Datasource):
    """The read tasks of a planned read (:func:`~ray_ingest.read.planned.read_planned`), in
    step order: each reads its shard pieces and yields the records at its ``pick`` places,
    one rank batch (``options.block_rows`` rows) a block."""

    def __init__(self, manifest: Manifest, split: str, options: ReadOptions, spec: RecordSpec,
                 tasks):
        super().__init__()
        self.manifest, self.split, self.options, self.spec = manifest, split, options, spec
        self.tasks = tasks

    def get_name(self) -> str:
        return "PlannedTFRecordShards"

    def estimate_inmemory_data_size(self) -> Optional[int]:
        return sum(len(t.pick) for t in self.tasks) * self.spec.row_bytes

    def get_read_tasks(self, parallelism: int, per_task_row_limit: Optional[int] = None,
                       data_context=None) -> List[ReadTask]:
        root, spec, opts = self.manifest.root, self.spec, self.options
        manifest, split = self.manifest, self.split
        files = manifest.shards(split)
        out = []
        for task in self.tasks:
            def read_fn(task=task, task_opts=replace(opts, seed=task.crop_seed)):
                tune_malloc()
                quiet.quiet_ray_data_task()
                pieces = task.ranges(manifest, split)
                for batch in read_task(root, pieces, spec, task_opts, None, pick=task.pick):
                    yield batch if isinstance(batch, pa.Table) else \
                        BlockAccessor.batch_to_block(batch)

            meta = BlockMetadata(num_rows=len(task.pick),
                                 size_bytes=len(task.pick) * spec.row_bytes,
                                 input_files=sorted({fs.join(root, files[i].file)
                                                     for i in set(task.shards.tolist())}),
                                 exec_stats=None)
            out.append(ReadTask(read_fn, meta, per_task_row_limit=per_task_row_limit))
        return out
