"""The batch streams of a training worker: its batches in each decode placement, an epoch's
stream ended cleanly, the epoch's step count and block size (a stream is started ahead by
:class:`~ray_ingest.read.ahead.StartedStream`)."""

from __future__ import annotations

from typing import Iterator, Optional


def next_training_batch(batches: Iterator, rank: int, step: int, steps: int, epoch: int,
                        may_end: bool = False):
    """The step's batch. Every worker must take the same number of steps (each one all-reduces
    its gradients): a stream that ends early is an error, not a shorter epoch, since stopping
    alone would leave the other workers waiting forever. With ``may_end`` (a read that skips
    corrupt records, so holds fewer than the manifest says) it returns None instead: the
    workers' parts are equal splits, so every worker's stream ends at the same step."""
    try:
        return next(batches)
    except StopIteration:
        if may_end:
            return None
        raise RuntimeError(f"worker {rank}: the training stream ended after {step} of "
                           f"{steps} steps in epoch {epoch + 1}") from None


def read_decode(cfg) -> str:
    """The reader's ``decode`` for the run's decode placement: pixels from the read tasks, or
    encoded records for the training worker (its threads or its GPU) to decode."""
    return "workers" if cfg.decode == "workers" else "consumer"


def decode_threads(cfg, local_world_size: int) -> int:
    """Consumer decode threads of one training worker: ``cfg.decode_threads``, else its share of
    the node's cores."""
    if cfg.decode_threads:
        return cfg.decode_threads
    from ray_ingest.runtime import usable_cores

    return max(1, usable_cores() // max(1, local_world_size))


def batches(source, cfg, *, threads: int, drop_last: bool, shuffle_seed: Optional[int] = None):
    """A training worker's batches of ``source`` (a Dataset or DataIterator) for the run's
    decode placement: decoded numpy batches (``workers``, ``consumer``: decoded here by
    ``threads`` threads), or encoded Arrow batches for the backend to decode on the GPU."""
    kw = dict(batch_size=cfg.per_worker_batch, prefetch_batches=cfg.prefetch_batches,
              drop_last=drop_last, local_shuffle_buffer_size=cfg.shuffle_buffer or None,
              local_shuffle_seed=shuffle_seed if cfg.shuffle_buffer else None)
    if cfg.decode == "consumer":
        from ray_ingest.read.api import iter_images

        return iter_images(source, decode_threads=threads, **kw)
    return source.iter_batches(batch_format="pyarrow" if cfg.decode == "gpu" else "numpy", **kw)


def finish_stream(batches, drain: bool) -> None:
    """Ends an epoch's stream. With ``drain``, reads it to its end first (with equal splits and
    ``drop_last`` nothing is left but the end itself): a stream that ends tells Ray Data the
    epoch is over, so the next epoch's execution can start at once instead of after a
    time-out."""
    if drain:
        for _ in batches:
            pass
    close = getattr(batches, "close", None)
    if close:
        close()


def block_rows(cfg, spec=None) -> int:
    """Rows per block of a training stream: a whole number of per-worker batches (so that
    batches are slices of blocks, not copies) and at least the reader's default block for
    what the blocks hold (``spec``: the dataset's :class:`~ray_ingest.format.check.RecordSpec`;
    small blocks cost more in per-block scheduling than they carry). Without ``spec``, the
    default block of decoded images (a validation part: it is cut into per-worker shards by
    whole blocks, and large blocks would leave some workers none)."""
    from ray_ingest.read.options import block_rows_in_batches

    return block_rows_in_batches(spec, read_decode(cfg), cfg.per_worker_batch)


def steps_per_epoch(cfg, train_records: int) -> int:
    """Steps every worker takes per epoch: the training split divided equally among the
    workers, in whole per-worker batches (``--steps-per-epoch`` caps it)."""
    per_worker_rows = train_records // cfg.num_workers
    steps = max(1, per_worker_rows // cfg.per_worker_batch)
    return min(steps, cfg.steps_per_epoch) if cfg.steps_per_epoch else steps
