"""A training run's plan: made once on the driver from the manifest and the configuration, and
handed to every training worker frozen.

:class:`RunPlan` holds what every worker must agree on, as explicit fields: the manifest (read
once per run: the workers and their validation reads use this copy), the order (``planned`` or
``stream``), the global and per-worker batch, the steps of an epoch, where JPEG records are
decoded (``decode``: workers, consumer or gpu; ``read_decode``: what the read tasks hand on),
the block rows, the crops taken while decoding and the seed. From it a worker builds its
datasets: in the planned order, rank ``r`` of ``W`` reads its share of each global batch
(:class:`~ray_ingest.read.planned.PlannedFeed`: epoch ``e``'s order is a pure function of the
manifest, the seed and ``e``, the same for any ``W`` that divides the global batch); its
validation part is a disjoint ``1/W`` of the validation split.

:func:`step_uniforms` draws a step's augmentation from ``(seed, epoch, each sample's place in
the epoch)``: the same for a sample whichever rank or world size trains it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ray_ingest.format import keys
from ray_ingest.format.check import RecordSpec
from ray_ingest.format.manifest import Manifest


@dataclass(frozen=True)
class RunPlan:
    manifest: Manifest
    order: str
    batch_size: int
    per_worker_batch: int
    steps_per_epoch: int
    decode: str
    read_decode: str
    train_block_rows: int
    val_block_rows: int
    train_crop: Any
    val_crop: Any
    seed: int
    validated: bool
    with_filename: bool

    @classmethod
    def of(cls, cfg, manifest: Manifest) -> "RunPlan":
        """The plan of ``cfg`` (its ``decode`` resolved) on ``manifest``'s data."""
        import ray_ingest.train.stream as stream

        train_crop, val_crop = cfg.decode_crops(manifest)
        return cls(
            manifest=manifest, order=cfg.order, batch_size=cfg.batch_size,
            per_worker_batch=cfg.per_worker_batch,
            steps_per_epoch=stream.steps_per_epoch(cfg, manifest.num_records(keys.SPLITS[0])),
            decode=cfg.decode, read_decode=stream.read_decode(cfg),
            train_block_rows=stream.block_rows(cfg, RecordSpec.of(manifest)),
            val_block_rows=stream.block_rows(cfg), train_crop=train_crop, val_crop=val_crop,
            seed=cfg.seed, validated=manifest.num_records(keys.SPLITS[1]) > 0,
            with_filename=bool(cfg.sample_log))

    def planned_feed(self, rank: int, world: int, epoch: int, step: int, epochs: int,
                     batches):
        """Rank ``rank`` of ``world``'s share of the global batches from ``(epoch, step)`` to
        the end of epoch ``epochs - 1`` (the planned order): one stream across epochs, each
        of :attr:`steps_per_epoch` steps; ``batches(dataset, rows)`` makes the worker's
        batches of a Ray Data execution."""
        from ray_ingest.read.planned import PlannedFeed

        return PlannedFeed(self.manifest, batch_size=self.batch_size, epochs=epochs,
                           rank=rank, world=world, seed=self.seed,
                           position={"epoch": epoch, "step": step},
                           steps_per_epoch=self.steps_per_epoch, batches=batches,
                           decode=self.read_decode, crop=self.train_crop,
                           with_filename=self.with_filename)

    def stream_dataset(self, skip_corrupt: bool):
        """The shuffled read of the train split that ``streaming_split`` hands out (the
        stream order; made on the driver)."""
        from ray_ingest.read.api import read_records

        return read_records(self.manifest, keys.SPLITS[0], shuffle_files=True,
                            shuffle_records=True, seed=self.seed,
                            block_rows=self.train_block_rows, decode=self.read_decode,
                            crop=self.train_crop, skip_corrupt=skip_corrupt,
                            with_filename=self.with_filename)

    def val_dataset(self, rank: int, world: int):
        """This worker's disjoint part of the validation split (all parts together: all of
        it); whole-image shards centre-cropped while decoding."""
        from ray_ingest.read.api import read_records

        return read_records(self.manifest, keys.SPLITS[1], shard=(rank, world),
                            block_rows=self.val_block_rows, decode=self.read_decode,
                            crop=self.val_crop)


def step_uniforms(cfg, rank: int, epoch: int, step: int, n: int,
                  batch_size: Optional[int] = None) -> np.ndarray:
    """The augmentation uniforms ``float32[n, 8]`` of rank ``rank``'s ``n`` samples at global
    step ``step``: sample ``i`` of the rank's share is at place ``step * B + rank * n + i`` of
    the epoch's order, whatever the world size."""
    from ray_ingest.augment import sample_uniforms

    b = batch_size or cfg.batch_size
    return sample_uniforms(cfg.seed, epoch, step * b + rank * n + np.arange(n))
