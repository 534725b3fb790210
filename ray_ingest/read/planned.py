"""A planned read: one rank's share of each global batch of an epoch, in the epoch's order.

``read_planned(path, epoch=e, batch_size=B, rank=r, world=W)`` is a Ray Data dataset of the
records rank ``r`` of ``W`` trains in epoch ``e`` (:class:`~ray_ingest.read.order.EpochOrder`:
a pure function of the split's shards, the seed and the epoch), step after step, from
``start_step`` on: one block a step, ``B / W`` rows, in the order of the plan. The reads are Ray
Data read tasks, on any node's CPUs, of ``steps_per_task`` steps each: a task finds its records
in their shards by the ``.idx`` files, reads the runs of consecutive records it needs (one
ranged read each, each shard file opened once), checks and decodes them as any read does
(:func:`~ray_ingest.read.task.read_task`: ``decode``, ``crop``, CRCs) and yields them in the
plan's order. Ray Data keeps the tasks' order (``preserve_order``), so
``iter_batches(batch_size=B // W)`` gives the rank's share of one global batch at a time, and
the same global batches come out for any ``W`` that divides ``B``.

:class:`PlannedPosition` is where a run is in its epochs: two integers, saved with a checkpoint
(``state_dict``) and handed back to resume at the next global batch (``load_state_dict``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ray_ingest.errors import ConfigError
from ray_ingest.format.check import RecordSpec
from ray_ingest.format.manifest import Manifest, read_manifest
from ray_ingest.read.options import ReadOptions
from ray_ingest.read.order import (PIECE_RECORDS, WINDOW_PIECES, EpochOrder, rank_slice,
                                   steps_per_epoch)
from ray_ingest.read.plan import ShardRange

#: Global batches a read task covers, by default.
STEPS_PER_TASK = 4


@dataclass(frozen=True)
class PlannedPosition:
    """The next global batch a run trains: ``(epoch, step)``, from 0."""

    epoch: int = 0
    step: int = 0

    def state_dict(self) -> Dict[str, int]:
        return {"epoch": self.epoch, "step": self.step}

    @classmethod
    def load_state_dict(cls, state: Dict[str, int]) -> "PlannedPosition":
        try:
            epoch, step = int(state["epoch"]), int(state["step"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"a position is {{'epoch': e, 'step': k}}, got {state!r}") from None
        if epoch < 0 or step < 0:
            raise ConfigError(f"a position's epoch and step are >= 0, got {state!r}")
        return cls(epoch, step)

    def advanced(self, steps_per_epoch: int) -> "PlannedPosition":
        """The position after one more global batch."""
        if self.step + 1 >= steps_per_epoch:
            return PlannedPosition(self.epoch + 1, 0)
        return PlannedPosition(self.epoch, self.step + 1)


def task_pieces(order: EpochOrder, manifest: Manifest, split: str,
                ids: np.ndarray) -> Tuple[List[ShardRange], np.ndarray]:
    """The shard pieces that hold the records ``ids`` (runs of consecutive records, sorted by
    shard and record) and ``pick``: the place of each id's record among the pieces' records,
    in the order of ``ids``."""
    shards = manifest.shards(split)
    shard, record = order.locate(ids)
    key = shard.astype(np.int64) * (1 << 32) + record
    sorted_keys, first = np.unique(key, return_inverse=True)
    s_shard = (sorted_keys >> 32).astype(np.int64)
    s_rec = (sorted_keys & 0xFFFFFFFF).astype(np.int64)
    # A new run where the shard changes or the record is not the next one.
    breaks = np.flatnonzero((np.diff(s_shard) != 0) | (np.diff(s_rec) != 1)) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(sorted_keys)]])
    pieces = []
    for a, b in zip(starts.tolist(), stops.tolist()):
        info = shards[int(s_shard[a])]
        pieces.append(ShardRange(info.file, info.index, int(s_rec[a]), int(s_rec[b - 1]) + 1,
                                 info.num_records, info.num_bytes, info.sha256))
    # Records are numbered among the pieces in sorted order, which is that of sorted_keys.
    return pieces, first.astype(np.int64)


def read_planned(path: str, *, epoch: int, batch_size: int, rank: int = 0, world: int = 1,
                 start_step: int = 0, split: str = "train", seed: int = 0,
                 piece_records: int = PIECE_RECORDS, window_pieces: int = WINDOW_PIECES,
                 steps_per_task: int = STEPS_PER_TASK, **read_options):
    """The dataset of rank ``rank``'s share of the global batches ``start_step..`` of epoch
    ``epoch`` (see the module). ``read_options`` are those of
    :func:`~ray_ingest.read.read_records` that apply to a planned read: ``decode``, ``crop``,
    ``verify_crc``, ``verify_checksums``, ``with_filename``, ``jpeg_dct``, ``concurrency``.
    The crop boxes are drawn from ``(seed, epoch, shard, record)``: a sample is cropped the
    same way whatever rank or world size reads it."""
    import ray

    from ray_ingest import fs
    from ray_ingest.read.api import check_crop_fits
    from ray_ingest.read.datasource import PlannedDatasource
    from ray_ingest.runtime import PIPELINE_CONTEXT, data_context, ensure_ray

    refused = sorted(set(read_options) & {"shuffle_files", "shuffle_records", "skip_corrupt",
                                          "repeat", "limit", "block_rows", "seed"})
    if refused:
        raise ConfigError(f"{', '.join(refused)}: not options of a planned read (its order is "
                          "the plan's; every record it lists is trained)")
    if not isinstance(steps_per_task, int) or steps_per_task < 1:
        raise ConfigError(f"steps_per_task must be a positive integer, got {steps_per_task!r}")
    manifest = read_manifest(path)
    if split not in manifest.splits:
        raise ConfigError(f"{manifest.path}: no split {split!r} (it has "
                          f"{', '.join(manifest.splits)})")
    order = EpochOrder.of(manifest, split, seed, epoch, piece_records=piece_records,
                          window_pieces=window_pieces)
    ids = order.order()
    steps = steps_per_epoch(len(ids), batch_size)
    rank_slice(ids, 0, batch_size, rank, world)  # checks rank, world and the batch size
    if not isinstance(start_step, int) or not 0 <= start_step <= steps:
        raise ConfigError(f"start_step must be in 0..{steps}, got {start_step!r}")
    share = batch_size // world
    # The epoch enters the crop seed: another box for the same sample each epoch.
    opts = ReadOptions(block_rows=share, seed=_epoch_seed(seed, epoch), **read_options)
    check_crop_fits(manifest, opts)
    ensure_ray()
    spec = RecordSpec.of(manifest, opts.crop)
    tasks = []
    for first in range(start_step, steps, steps_per_task):
        last = min(first + steps_per_task, steps)
        mine = np.concatenate([rank_slice(ids, k, batch_size, rank, world)
                               for k in range(first, last)])
        tasks.append(task_pieces(order, manifest, split, mine))
    source = PlannedDatasource(manifest, split, opts, spec, tasks, share)
    # Blocks in the tasks' order, one rank batch each (a target under a block's size would
    # cut it).
    in_order = copy.copy(ray.data.DataContext.get_current().execution_options)
    in_order.preserve_order = True
    with data_context(**PIPELINE_CONTEXT, execution_options=in_order,
                      target_max_block_size=max(1 << 20, 2 * share * spec.row_bytes)):
        return ray.data.read_datasource(source, concurrency=opts.concurrency,
                                        override_num_blocks=max(1, len(tasks)),
                                        runtime_env=fs.task_runtime_env())


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint32)[0])

