"""The throughput study's Ray Train row: our reader through a Ray Train worker's
``get_dataset_shard``, timed inside the worker (one worker, CPU) by the same
:func:`~ray_ingest.bench.measure.time_stream` as every other row."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict
from typing import Any, Callable, Dict

from ray_ingest.bench.measure import Timing, time_stream
from ray_ingest.format import keys


def _feed_loop(config: Dict[str, Any]) -> None:
    import ray.train

    shard = ray.train.get_dataset_shard(keys.SPLITS[0])
    counts = (len(b[keys.LABEL_COLUMN]) for b in shard.iter_batches(
        batch_size=config["batch_size"], prefetch_batches=4, batch_format="numpy"))
    timing = time_stream(counts, config["warmup"], config["images"])
    # Train V2 hands the driver only metrics that come with a checkpoint: attach an empty one.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as d:
        ray.train.report(asdict(timing), checkpoint=ray.train.Checkpoint.from_directory(d))


def train_feed_run(make_dataset: Callable[[], Any], batch_size: int
                   ) -> Callable[[int, int], Timing]:
    """A row's run: a short Ray Train fit whose one worker streams ``make_dataset()`` and times
    it. The worker's CPU figure covers what it saw: itself, its children, every ray:: process."""

    def run(warmup: int, images: int) -> Timing:
        from ray.train import DataConfig, RunConfig, ScalingConfig
        from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

        os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
        storage = tempfile.mkdtemp(prefix="ray-ingest-feed-")
        trainer = DataParallelTrainer(
            _feed_loop,
            train_loop_config={"batch_size": batch_size, "warmup": warmup, "images": images},
            scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.01}),
            run_config=RunConfig(storage_path=storage, name=f"feed-{time.time_ns()}"),
            datasets={keys.SPLITS[0]: make_dataset()},
            dataset_config=DataConfig(datasets_to_split=[keys.SPLITS[0]]),
        )
        try:
            result = trainer.fit()
        finally:
            shutil.rmtree(storage, ignore_errors=True)
        if result.error is not None:
            raise result.error
        if not result.metrics:
            raise RuntimeError("the Ray Train feed worker reported no timings")
        return Timing(**{k: result.metrics[k] for k in ("images", "seconds", "cpu_seconds")})

    return run
