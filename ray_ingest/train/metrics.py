"""The figures of an epoch: each worker's step timing and sums, all-reduced into one set of
metrics (written to the run's history and TensorBoard), and the row the driver prints for it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple


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
    (``val``: loss sum, correct, count; ``restarts``: rank 0's count, 0 elsewhere)."""
    return [*val, meter.loss_sum, meter.correct, float(meter.images), meter.wait_s, meter.step_s,
            float(meter.steps), float(restarts), meter.first_wait_s]


def epoch_metrics(epoch: int, sums, seconds: float) -> Dict[str, Any]:
    """The metrics of one epoch from :func:`local_sums` summed over all workers: the same on
    every worker, covering every worker's images and all of the validation split. Without a
    validation split (a conversion with ``--val-fraction 0``) ``val_loss`` and
    ``val_accuracy`` are None, not a figure."""
    (val_loss_sum, val_correct, val_count, loss_sum, correct, images, wait_s, step_s,
     steps, restarts, first_wait_s) = (float(v) for v in sums)
    validated = val_count > 0
    return {
        "epoch": epoch + 1,
        "loss": loss_sum / max(1.0, images),
        "accuracy": correct / max(1.0, images),
        "val_loss": val_loss_sum / val_count if validated else None,
        "val_accuracy": val_correct / val_count if validated else None,
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


#: What the table shows for a figure that does not exist (no validation split).
MISSING = "\u2014"


def figure(value, spec: str) -> str:
    """``value`` formatted with ``spec``, or :data:`MISSING` for None."""
    return MISSING if value is None else format(value, spec)


#: The epoch table's columns: (title, width, format of one epoch's metrics).
_COLUMNS = (
    ("epoch", 7, lambda m, n: f"{m['epoch']}/{n}"),
    ("loss", 9, lambda m, n: f"{m['loss']:.4f}"),
    ("acc", 7, lambda m, n: f"{m['accuracy']:.3f}"),
    ("val loss", 10, lambda m, n: figure(m.get("val_loss"), ".4f")),
    ("val acc", 9, lambda m, n: figure(m.get("val_accuracy"), ".3f")),
    ("images/s", 10, lambda m, n: f"{m['images_per_second']:.0f}"),
    ("data wait", 11, lambda m, n: f"{m['data_wait_share']:.1%}"),
    ("time", 9, lambda m, n: f"{m['epoch_seconds']:.1f} s"),
)


def table_header() -> str:
    return "".join(title.rjust(width) for title, width, _ in _COLUMNS)


def table_row(m: Dict[str, Any], epochs: int) -> str:
    """One epoch's row under :func:`table_header` (``m``: :func:`epoch_metrics`)."""
    return "".join(fmt(m, epochs).rjust(width) for _, width, fmt in _COLUMNS)
