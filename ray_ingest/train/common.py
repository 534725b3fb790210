"""What both training loops share: step timing, epoch lines, checkpoints, attempts, TensorBoard."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from ray_ingest import fs

ATTEMPTS_DIR = "_attempts"
CHECKPOINT_ARRAYS = "state.npz"
CHECKPOINT_META = "meta.json"


@dataclass
class EpochMeter:
    """Per-worker timing of one epoch: how long each step waited for its batch."""

    images: int = 0
    steps: int = 0
    wait_s: float = 0.0
    step_s: float = 0.0
    first_wait_s: float = 0.0  # the first batch of the epoch (the stream starting up)
    loss_sum: float = 0.0
    correct: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def add(self, n: int, wait: float, total: float, loss: float, correct: float) -> None:
        if self.steps == 0:
            self.first_wait_s = wait
        self.images += n
        self.steps += 1
        self.wait_s += wait
        self.step_s += total
        self.loss_sum += loss * n
        self.correct += correct

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    @property
    def data_wait_share(self) -> float:
        return self.wait_s / self.step_s if self.step_s > 0 else 0.0


def local_sums(meter: EpochMeter, val: Tuple[float, float, float], restarts: int) -> List[float]:
    """This worker's sums, in the order :func:`epoch_metrics` expects them all-reduced
    (``restarts``: rank 0's count, 0 elsewhere)."""
    return [*val, meter.loss_sum, meter.correct, float(meter.images), meter.wait_s, meter.step_s,
            float(meter.steps), float(restarts), meter.first_wait_s]


def epoch_metrics(epoch: int, sums, seconds: float) -> Dict[str, Any]:
    """The metrics of one epoch from :func:`local_sums` summed over all workers: the same on
    every worker, covering every worker's images and all of the validation split."""
    (val_loss_sum, val_correct, val_count, loss_sum, correct, images, wait_s, step_s,
     steps, restarts, first_wait_s) = (float(v) for v in sums)
    return {
        "epoch": epoch + 1,
        "loss": loss_sum / max(1.0, images),
        "accuracy": correct / max(1.0, images),
        "val_loss": val_loss_sum / max(1.0, val_count),
        "val_accuracy": val_correct / max(1.0, val_count),
        "val_images": int(val_count),
        "images": int(images),
        "images_per_second": images / seconds if seconds > 0 else 0.0,
        "data_wait_share": wait_s / step_s if step_s > 0 else 0.0,
        # Without each epoch's first batch, which waits for the stream to start.
        "steady_data_wait_share": ((wait_s - first_wait_s) / (step_s - first_wait_s)
                                   if step_s > first_wait_s else 0.0),
        "epoch_seconds": seconds,
        "steps": int(steps),
        "restarts": int(restarts),
    }


def epoch_line(m: Dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {m['epoch']}/{epochs}: loss {m['loss']:.4f} acc {m['accuracy']:.3f} | "
        f"val_loss {m['val_loss']:.4f} val_acc {m['val_accuracy']:.3f} ({m['val_images']} images) | "
        f"{m['images_per_second']:.0f} images/s | data wait {m['data_wait_share']:.1%} "
        f"(after the first batch {m['steady_data_wait_share']:.1%}) | "
        f"{m['epoch_seconds']:.1f} s"
    )


# ---- attempts: how many times the worker group started in this fit ---------------------------


def run_dir(storage_path: str, name: str) -> str:
    return fs.join(storage_path, name)


def mark_attempt(storage_path: str, name: str, attempt_id: str) -> None:
    """Rank 0 of every (re)started worker group leaves one marker."""
    d = fs.join(run_dir(storage_path, name), ATTEMPTS_DIR)
    fs.makedirs(d)
    fs.write_bytes(fs.join(d, f"{attempt_id}-{uuid.uuid4().hex[:8]}"), b"")


def count_attempts(storage_path: str, name: str, attempt_id: str) -> int:
    d = fs.join(run_dir(storage_path, name), ATTEMPTS_DIR)
    return sum(1 for n in fs.list_dir(d) if n.startswith(attempt_id + "-"))


def start_worker(config: Dict[str, Any]):
    """The first lines of every framework's loop: ``(cfg, rank, world, restarts, watchdog)``,
    where rank 0 marks this (re)start of the worker group and counts the earlier ones, and the
    watchdog (started) ends the worker if its progress stops for ``cfg.stall_timeout``."""
    import ray.train

    from ray_ingest.train.config import TrainConfig

    cfg = TrainConfig(**config)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    restarts = 0
    if rank == 0:
        mark_attempt(cfg.storage_path, cfg.name, cfg.attempt_id)
        restarts = count_attempts(cfg.storage_path, cfg.name, cfg.attempt_id) - 1
    from ray_ingest.train.watchdog import StallWatchdog

    watchdog = StallWatchdog(run_dir(cfg.storage_path, cfg.name), cfg.attempt_id, rank,
                             cfg.stall_timeout).start()
    return cfg, rank, world, restarts, watchdog


def next_training_batch(batches: Iterator, rank: int, step: int, steps: int, epoch: int):
    """The step's batch. Every worker must take the same number of steps (each one all-reduces
    its gradients): a stream that ends early is an error, not a shorter epoch, since stopping
    alone would leave the other workers waiting forever."""
    try:
        return next(batches)
    except StopIteration:
        raise RuntimeError(f"worker {rank}: the training stream ended after {step} of "
                           f"{steps} steps in epoch {epoch + 1}") from None


# ---- checkpoints: plain numpy arrays + JSON, framework-neutral on disk -------------------------


def report_epoch(metrics: Dict[str, Any], arrays: Optional[Dict[str, np.ndarray]] = None,
                 meta: Optional[Dict[str, Any]] = None) -> None:
    """``ray.train.report`` the epoch's metrics, with a checkpoint when ``arrays`` is given
    (rank 0). The checkpoint is staged in a local temporary folder that Ray Train copies to
    storage before ``report`` returns; the folder is removed afterwards."""
    import ray.train
    from ray.train import Checkpoint

    if arrays is None:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="ray-ingest-ckpt-", ignore_cleanup_errors=True) as d:
        np.savez(os.path.join(d, CHECKPOINT_ARRAYS), **arrays)
        with open(os.path.join(d, CHECKPOINT_META), "w") as f:
            json.dump(meta or {}, f)
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))


def load_checkpoint(checkpoint) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    with checkpoint.as_directory() as d:
        with np.load(os.path.join(d, CHECKPOINT_ARRAYS)) as z:
            arrays = {k: z[k] for k in z.files}
        with open(os.path.join(d, CHECKPOINT_META)) as f:
            meta = json.load(f)
    return arrays, meta


class TensorBoard:
    """Scalars per epoch under ``<run dir>/tensorboard`` (local storage; elsewhere a local
    folder named in the log), written by rank 0 only."""

    def __init__(self, storage_path: str, name: str, enabled: bool):
        self.writer = None
        if not enabled:
            return
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            return
        root = run_dir(storage_path, name)
        logdir = (fs.join(root, "tensorboard") if not fs.is_uri(root)
                  else os.path.join(tempfile.gettempdir(), "ray-ingest-tb", name))
        self.writer = SummaryWriter(logdir)
        self.logdir = logdir

    def write(self, metrics: Dict[str, Any]) -> None:
        if self.writer is None:
            return
        step = int(metrics["epoch"])
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and k != "epoch":
                self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def val_dataset(cfg, rank: int, world: int):
    """This worker's disjoint part of the validation split (all parts together: all of it)."""
    from ray_ingest.read import read_records

    return read_records(cfg.data, "val", shard=(rank, world), block_rows=block_rows(cfg))


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
