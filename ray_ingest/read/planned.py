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
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

import numpy as np

from ray_ingest.errors import ConfigError
from ray_ingest.format.check import RecordSpec
from ray_ingest.format.manifest import Manifest, manifest_of
from ray_ingest.read.options import ReadOptions
from ray_ingest.read.order import (PIECE_RECORDS, WINDOW_PIECES, EpochOrder, rank_slice,
                                   steps_per_epoch)
from ray_ingest.read.plan import ShardRange

#: Global batches a read task covers, by default.
STEPS_PER_TASK = 4
#: The read options that apply to a planned read (the others would reorder, drop or skip
#: records, or check whole shards, which a planned read does not read).
PLANNED_OPTIONS = frozenset({"decode", "crop", "verify_crc", "with_filename", "jpeg_dct",
                             "concurrency"})
#: Bytes of blocks one window of a :class:`PlannedFeed` holds at most: the feed reads its
#: steps as Ray Data executions of a window each, the next one started as the current one
#: begins, so a rank's read runs at most two windows ahead of its training.
WINDOW_BYTES = 1 << 30


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

    def started(self, steps_per_epoch: int) -> "PlannedPosition":
        """The position itself, or at an epoch's end the next epoch's start."""
        return PlannedPosition(self.epoch + 1, 0) if self.step >= steps_per_epoch else self

    def advanced(self, steps_per_epoch: int) -> "PlannedPosition":
        """The position after one more global batch."""
        if self.step + 1 >= steps_per_epoch:
            return PlannedPosition(self.epoch + 1, 0)
        return PlannedPosition(self.epoch, self.step + 1)


@dataclass(frozen=True)
class TaskPieces:
    """The shard pieces of one planned read task, compactly: piece ``i`` is records
    ``[starts[i], stops[i])`` of shard ``shards[i]`` (its place in the split's shard list);
    ``pick`` is the place of each of the task's records among the pieces' records, in the
    plan's order; ``crop_seed`` the seed of its crop boxes."""

    shards: np.ndarray
    starts: np.ndarray
    stops: np.ndarray
    pick: np.ndarray
    crop_seed: int

    def ranges(self, manifest: Manifest, split: str) -> List[ShardRange]:
        infos = manifest.shards(split)
        out = []
        for i, start, stop in zip(self.shards.tolist(), self.starts.tolist(),
                                  self.stops.tolist()):
            info = infos[i]
            out.append(ShardRange(info.file, info.index, start, stop, info.num_records,
                                  info.num_bytes, info.sha256))
        return out


def task_pieces(order: EpochOrder, ids: np.ndarray, crop_seed: int = 0) -> TaskPieces:
    """The pieces that hold the records ``ids`` (runs of consecutive records, sorted by shard
    and record) and where each id's record is among them."""
    shard, record = order.locate(ids)
    key = shard.astype(np.int64) * (1 << 32) + record
    sorted_keys, first = np.unique(key, return_inverse=True)
    s_shard = sorted_keys >> 32
    s_rec = sorted_keys & 0xFFFFFFFF
    # A new run where the shard changes or the record is not the next one.
    breaks = np.flatnonzero((np.diff(s_shard) != 0) | (np.diff(s_rec) != 1)) + 1
    starts = np.concatenate([[0], breaks]).astype(np.int64)
    stops = np.concatenate([breaks, [len(sorted_keys)]]).astype(np.int64)
    # Records are numbered among the pieces in sorted order, which is that of sorted_keys.
    return TaskPieces(s_shard[starts].astype(np.int32), s_rec[starts],
                      s_rec[stops - 1] + 1, first.astype(np.int64), crop_seed)


def read_planned(path: Union[str, Manifest], *, epoch: int, batch_size: int, rank: int = 0,
                 world: int = 1, start_step: int = 0, stop_step: Optional[int] = None,
                 epochs: int = 1, end_step: Optional[int] = None, split: str = "train",
                 seed: int = 0,
                 piece_records: int = PIECE_RECORDS, window_pieces: int = WINDOW_PIECES,
                 steps_per_task: int = STEPS_PER_TASK, **read_options):
    """The dataset of rank ``rank``'s share of the global batches of ``epochs`` epochs from
    ``epoch`` on, starting at global batch ``start_step`` of the first (see the module): one
    Ray Data execution for all of them; ``stop_step`` ends each epoch before that global batch
    (a cap on its steps), ``end_step`` the last one. ``path`` is the output's folder or URI, or its
    :class:`~ray_ingest.format.manifest.Manifest` already read. ``read_options`` are those of
    :func:`~ray_ingest.read.read_records` that apply to a planned read
    (:data:`PLANNED_OPTIONS`): ``decode``, ``crop``, ``verify_crc``, ``with_filename``,
    ``jpeg_dct``, ``concurrency``.
    The crop boxes are drawn from ``(seed, epoch, shard, record)``: a sample is cropped the
    same way whatever rank or world size reads it."""
    import ray

    from ray_ingest import fs
    from ray_ingest.read.api import check_crop_fits, target_block_bytes
    from ray_ingest.read.datasource import PlannedDatasource
    from ray_ingest.runtime import PIPELINE_CONTEXT, data_context, ensure_ray

    refused = sorted(set(read_options) - PLANNED_OPTIONS)
    if refused:
        raise ConfigError(f"{', '.join(refused)}: not options of a planned read (its order is "
                          "the plan's, every record it lists is trained, and it reads parts "
                          "of shards); it takes " + ", ".join(sorted(PLANNED_OPTIONS)))
    for name, value, low in (("steps_per_task", steps_per_task, 1), ("epochs", epochs, 1),
                             ("epoch", epoch, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    manifest = manifest_of(path)
    _check_split(manifest, split)
    share = batch_size // world if isinstance(world, int) and world > 0 else 0
    opts = ReadOptions(block_rows=max(1, share), **read_options)
    spec = RecordSpec.of(manifest, opts.crop)
    check_crop_fits(manifest, opts)
    tasks = []
    for e in range(epoch, epoch + epochs):
        order = EpochOrder.of(manifest, split, seed, e, piece_records=piece_records,
                              window_pieces=window_pieces)
        ids = order.order()
        steps = steps_per_epoch(len(ids), batch_size)
        if steps == 0:
            raise ConfigError(f"{manifest.path}: split {split!r} has {len(ids)} records, fewer "
                              f"than one global batch of {batch_size}")
        rank_slice(ids, 0, batch_size, rank, world)  # checks rank, world and the batch size
        if stop_step is not None:
            if not isinstance(stop_step, int) or stop_step < 1:
                raise ConfigError(f"stop_step must be an integer >= 1, got {stop_step!r}")
            steps = min(steps, stop_step)
        if e == epoch + epochs - 1 and end_step is not None:
            if not isinstance(end_step, int) or isinstance(end_step, bool) or end_step < 1:
                raise ConfigError(f"end_step must be an integer >= 1, got {end_step!r}")
            steps = min(steps, end_step)
        first_step = start_step if e == epoch else 0
        if not isinstance(first_step, int) or not 0 <= first_step <= steps:
            raise ConfigError(f"start_step must be in 0..{steps}, got {first_step!r}")
        # The epoch enters the crop seed: another box for the same sample each epoch.
        crop_seed = _epoch_seed(seed, e)
        for first in range(first_step, steps, steps_per_task):
            last = min(first + steps_per_task, steps)
            mine = np.concatenate([rank_slice(ids, k, batch_size, rank, world)
                                   for k in range(first, last)])
            tasks.append(task_pieces(order, mine, crop_seed))
    ensure_ray()
    source = PlannedDatasource(manifest, split, opts, spec, tasks)
    # Blocks in the tasks' order, one rank batch each, each out as soon as it is made.
    in_order = copy.copy(ray.data.DataContext.get_current().execution_options)
    in_order.preserve_order = True
    with data_context(**PIPELINE_CONTEXT, execution_options=in_order,
                      target_max_block_size=target_block_bytes(spec, opts)):
        return ray.data.read_datasource(source, concurrency=opts.concurrency,
                                        override_num_blocks=max(1, len(tasks)),
                                        runtime_env=fs.task_runtime_env())


def _check_split(manifest: Manifest, split: str) -> None:
    if split not in manifest.splits:
        raise ConfigError(f"{manifest.path}: no split {split!r} (it has "
                          f"{', '.join(manifest.splits)})")


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint32)[0])



class PlannedFeed:
    """One rank's batches, epoch after epoch, from a position: the planned read for a
    training loop of one's own (plain Ray Data or a Ray Train worker, TensorFlow or torch).

    ``for batch in feed`` yields ``{"image": uint8[B/W, H, W, C], "label": int64[B/W], ...}``
    numpy batches, rank ``rank``'s share of each global batch (JPEG records decoded in the
    read tasks, or here with ``decode="consumer"``), from :attr:`position` up to the end of
    epoch ``epochs - 1``. :meth:`state_dict` is the position of the next global batch (two
    integers, whatever the data's size): saved with a checkpoint after a step and handed to
    :meth:`load_state_dict` (or ``position=``) of a new feed, of the same or another
    ``world`` size, it continues with the next global batch, so the run's sequence of global
    batches is the uninterrupted run's.

    The feed reads in windows of consecutive global batches, each one Ray Data execution of
    at most :data:`WINDOW_BYTES` of blocks (whole epochs when they fit), the next started as
    soon as the current one begins: an epoch's end is no pause in the stream, and the read
    runs at most two windows ahead. The window bounds the read, in place of Ray Data's
    downstream-capacity backpressure, which is off for these executions: once it holds a
    read back, the executor polls the finished tasks it may not read in a busy loop, which in
    a training worker's process took half a core and the GIL from the decode threads (and
    the planned feed to 0.57x of ``streaming_split``'s). ``steps_per_epoch`` caps an epoch's
    global batches; ``batches(dataset, rows)`` turns an execution into batches of ``rows``
    when ``iter_images`` is not the way (a training worker's own batch stream)."""

    def __init__(self, path: Union[str, Manifest], *, batch_size: int, epochs: int,
                 rank: int = 0, world: int = 1, seed: int = 0,
                 position: Optional[Dict[str, int]] = None, prefetch_batches: int = 4,
                 steps_per_epoch: Optional[int] = None,
                 batches: Optional[Callable[[Any, int], Iterator]] = None, **read_options):
        if not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"epochs must be a positive integer, got {epochs!r}")
        self.manifest = manifest_of(path)  # read once: each execution's plan uses it
        self.path, self.batch_size, self.epochs = path, batch_size, epochs
        self.rank, self.world, self.seed = rank, world, seed
        self.prefetch_batches = prefetch_batches
        self.stop_step = steps_per_epoch
        self.batches = batches
        self.read_options = read_options
        self.position = (PlannedPosition() if position is None
                         else PlannedPosition.load_state_dict(position))

    def state_dict(self) -> Dict[str, int]:
        return self.position.state_dict()

    def load_state_dict(self, state: Dict[str, int]) -> None:
        self.position = PlannedPosition.load_state_dict(state)

    @property
    def share(self) -> int:
        """Rows of this rank's part of a global batch."""
        return self.batch_size // self.world if self.world else 0

    def dataset(self, epochs: Optional[int] = None, end_step: Optional[int] = None):
        """The planned read of this rank's share from :attr:`position` on, ``epochs`` epochs
        of it (default: to the last epoch), the last one ending before global batch
        ``end_step`` (default: at its end)."""
        pos = self.position
        return self._read(pos.epoch, pos.step, epochs or self.epochs - pos.epoch, end_step)

    def _read(self, epoch: int, step: int, epochs: int, end_step: Optional[int]):
        return read_planned(self.manifest, epoch=epoch, batch_size=self.batch_size,
                            rank=self.rank, world=self.world, start_step=step,
                            stop_step=self.stop_step, epochs=epochs, end_step=end_step,
                            seed=self.seed, **self.read_options)

    def window_steps(self) -> int:
        """Global batches one window covers: :data:`WINDOW_BYTES` of this rank's blocks, at
        least one read task's worth."""
        from ray_ingest.read.options import block_bytes_per_row

        share = self.share
        opts = ReadOptions(block_rows=max(1, share), **{
            k: v for k, v in self.read_options.items() if k in PLANNED_OPTIONS})
        row = block_bytes_per_row(RecordSpec.of(self.manifest, opts.crop), opts.decode)
        return max(self.read_options.get("steps_per_task", STEPS_PER_TASK),
                   WINDOW_BYTES // max(1, share * row))

    def windows(self, steps: int):
        """The feed's windows from :attr:`position` on, ``(epoch, start_step, epochs,
        end_step)``: whole epochs where a window holds one or more, else parts of one."""
        per_window = self.window_steps()
        start = self.position.started(steps)
        epoch, step = start.epoch, start.step
        while epoch < self.epochs:
            if step == 0 and per_window >= steps:
                n = min(per_window // steps, self.epochs - epoch)
                yield epoch, 0, n, None
                epoch += n
            else:
                end = min(steps, step + per_window)
                yield epoch, step, 1, end
                epoch, step = (epoch + 1, 0) if end >= steps else (epoch, end)

    def _window(self, window):
        """One window's batches: its planned read."""
        from ray_ingest.runtime import data_context

        with data_context(downstream_capacity_backpressure_ratio=None):  # taken by the dataset
            ds = self._read(*window)
        if self.batches:
            return iter(self.batches(ds, self.share))
        from ray_ingest.read.api import iter_images

        return iter(iter_images(ds, batch_size=self.share, drop_last=True,
                                prefetch_batches=self.prefetch_batches))

    def __iter__(self):
        from ray_ingest.read.ahead import StartedStream

        m = self.manifest
        split = self.read_options.get("split", "train")
        _check_split(m, split)
        steps = steps_per_epoch(m.num_records(split), self.batch_size)
        if self.stop_step:
            steps = min(steps, self.stop_step)
        self.position = self.position.started(steps)
        windows = self.windows(steps)

        def start(window):
            return None if window is None else StartedStream(lambda: self._window(window))

        current, upcoming = None, start(next(windows, None))
        try:
            while upcoming is not None:
                current, upcoming = upcoming, None
                following = next(windows, None)
                for batch in current:
                    if upcoming is None:
                        upcoming = start(following)  # the current window has begun
                    # Handed over: a checkpoint saved after this step resumes at the next one.
                    self.position = self.position.advanced(steps)
                    yield batch
                current.close()
                current = None
                if upcoming is None:
                    upcoming = start(following)
        finally:
            for stream in (current, upcoming):
                if stream is not None:
                    stream.close()
