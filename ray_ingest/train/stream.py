"""The batch streams of a training worker: an epoch's stream started ahead (while the previous
epoch validates), ended cleanly, and validation's part of the split; the epoch's step count
and block size."""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator, Optional

from ray_ingest.format import keys


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


def val_dataset(cfg, rank: int, world: int):
    """This worker's disjoint part of the validation split (all parts together: all of it)."""
    from ray_ingest.read.api import read_records

    return read_records(cfg.data, keys.SPLITS[1], shard=(rank, world),
                        block_rows=block_rows(cfg))


class EpochStream:
    """Starts an epoch's batch stream in a background thread and takes its first batch.

    Started while the previous epoch validates, so that the new stream's start-up (planning,
    launching read tasks, the first blocks) overlaps work instead of stalling the first step.
    ``next()`` then returns that first batch and continues with the stream."""

    def __init__(self, make_iter: Callable[[], Iterator]):
        self._it: Optional[Iterator] = None
        self._first: Any = None
        self._error: Optional[BaseException] = None
        self._done = False
        self._thread = threading.Thread(target=self._start, args=(make_iter,), daemon=True,
                                        name="ray-ingest-epoch-stream")
        self._thread.start()

    def _start(self, make_iter) -> None:
        try:
            self._it = iter(make_iter())
            self._first = next(self._it)
        except StopIteration:
            self._done = True
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            self._error = e

    def __iter__(self):
        return self

    def __next__(self):
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            if self._error is not None:
                raise self._error
            if self._done:
                raise StopIteration
            first, self._first = self._first, None
            return first
        if self._done or self._it is None:
            raise StopIteration
        return next(self._it)

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        close = getattr(self._it, "close", None)
        if close:
            close()


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


def block_rows(cfg) -> int:
    """Rows per block of the training stream: a whole number of per-worker batches (so that
    batches are slices of blocks, not copies) and at least 256 rows (small blocks cost more
    in per-block scheduling than they carry)."""
    b = cfg.per_worker_batch
    return b * max(1, -(-256 // b))


def steps_per_epoch(cfg, train_records: int) -> int:
    """Steps every worker takes per epoch: the training split divided equally among the
    workers, in whole per-worker batches (``--steps-per-epoch`` caps it)."""
    per_worker_rows = train_records // cfg.num_workers
    steps = max(1, per_worker_rows // cfg.per_worker_batch)
    return min(steps, cfg.steps_per_epoch) if cfg.steps_per_epoch else steps
