"""The figures of an epoch: each worker's step timing and sums, all-reduced into one set of
metrics, printed as one line and written to TensorBoard."""

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
