"""Will the run fit in memory? An estimate of a training worker's peak memory, made before the
run starts, against the memory of the node it runs on.

A worker's memory is its framework and model (:data:`BASE_BYTES`), the batches its feed holds
and the step's working set. With ``B`` images per worker batch, stored images of ``H`` x ``W``
and a training size ``S``:

    feed = B * H * W * 3 * (prefetch_batches + decode_threads + 2) + shuffle_buffer * H * W * 3
           (Ray Data's prefetched batches, one decoded batch per decode thread in flight, the
           batch in the step and the next epoch's first batch, started during validation;
           uint8 pixels)
    step = B * S * S * STEP_BYTES_PER_PIXEL[model]
           (the augmentation's float copies, the activations kept for the backward pass and
           their gradients, and what the worker's heap keeps of them: measured, see
           STEP_BYTES_PER_PIXEL)
    worker = BASE_BYTES + feed + step

The step dominates: a batch of 1024 images of 224 px holds 154 MB of pixels, but small_cnn's
step on it needs about 60 GB. Measured figures and the check of the estimate against a real
run's peak: benchmarks/RESULTS.md ("Training memory").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ray_ingest.errors import ConfigError

logger = logging.getLogger("ray_ingest")

#: Peak bytes of a training worker's step per image and per training pixel (S * S), by model.
#: small_cnn: the slope of a Ray Train worker's peak RSS over the batch size (torch, fp32, CPU,
#: 224 px: 2.13 GB at 32 images per worker, 4.29 GB at 64). The other models: their slope in
#: a bare step at 224 px (benchmarks/train_memory.py) times small_cnn's ratio of the worker's
#: slope to its bare step's (2.2: the worker's decode threads, Ray's buffers and the heap it
#: keeps). The Keras models are taken to need the same.
STEP_BYTES_PER_PIXEL = {
    "small_cnn": 1200.0,
    "resnet18": 1490.0,
    "resnet50": 4650.0,
    "mobilenet_v2": 3900.0,
}
#: A training worker before any batch: the framework, Ray's worker, the model and optimizer.
BASE_BYTES = 0.5e9
#: Refused above this share of the node's memory (Ray's OOM killer acts at 95% in use).
REFUSE_SHARE = 0.9
#: Warned above this share of the memory the node has free now.
WARN_SHARE = 0.5


@dataclass(frozen=True)
class MemoryEstimate:
    per_worker: float  # bytes
    workers_on_node: int
    feed: float
    step: float

    @property
    def total(self) -> float:
        return self.per_worker * self.workers_on_node


def estimate(cfg, height: int, width: int, decode_threads: int,
             workers_on_node: int) -> MemoryEstimate:
    """The peak memory of ``cfg``'s workers on one node (the formula of the module's doc)."""
    row = height * width * 3
    size = cfg.image_size or height  # the decoded batch's side when not resized
    feed = (cfg.per_worker_batch * row * (cfg.prefetch_batches + decode_threads + 2)
            + cfg.shuffle_buffer * row)
    step = 0.0 if cfg.synthetic_data else (
        cfg.per_worker_batch * size * size * STEP_BYTES_PER_PIXEL.get(cfg.model, 4650.0))
    return MemoryEstimate(per_worker=BASE_BYTES + feed + step,
                          workers_on_node=workers_on_node, feed=feed, step=step)


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def check(est: MemoryEstimate, node_total: float, node_available: float) -> None:
    """Refuses (:class:`ConfigError`) a run whose estimate exceeds :data:`REFUSE_SHARE` of the
    node's memory; warns (one line) above :data:`WARN_SHARE` of what is free now."""
    what = (f"{est.workers_on_node} worker{'s' * (est.workers_on_node > 1)} x "
            f"{_gb(est.per_worker)} (step {_gb(est.step)}, feed {_gb(est.feed)})")
    if est.total > REFUSE_SHARE * node_total:
        raise ConfigError(
            f"the run needs about {_gb(est.total)} of memory on one node ({what}), the node "
            f"has {_gb(node_total)}: lower --batch-size or --image-size, or add workers on "
            "other nodes")
    if est.total > WARN_SHARE * node_available:
        logger.warning("train: the run needs about %s of memory on one node (%s); the node "
                       "has %s free of %s", _gb(est.total), what, _gb(node_available),
                       _gb(node_total))
