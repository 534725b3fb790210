"""The throughput job's Ray Train row: our reader through a Ray Train worker's
``get_dataset_shard``, timed inside the worker (one worker, CPU)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any, Dict


def _feed_loop(config: Dict[str, Any]) -> None:
    import ray.train

    from ray_ingest.bench import cpu_delta, cpu_snapshot

    shard = ray.train.get_dataset_shard("train")
    it = iter(shard.iter_batches(batch_size=config["batch_size"], prefetch_batches=4,
                                 batch_format="numpy"))
    seen = 0
    while seen < config["warmup"]:
        seen += len(next(it)["label"])
    cpu0, t0 = cpu_snapshot(), time.perf_counter()
    n = 0
    while n < config["images"]:
        n += len(next(it)["label"])
    seconds = time.perf_counter() - t0
    metrics = {"images": n, "seconds": seconds,
               "worker_cpu_seconds": cpu_delta(cpu0, cpu_snapshot())}
    # Train V2 hands the driver only metrics that come with a checkpoint: attach an empty one.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as d:
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))


def train_feed_variant(m, cfg, passes: int):
    """A bench ``Variant`` whose runs are short Ray Train fits of :func:`_feed_loop`."""
    from ray.train import DataConfig, RunConfig, ScalingConfig
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    from ray_ingest.bench import OURS_TRAIN, Variant
    from ray_ingest.read import read_records

    class TrainFeed(Variant):
        def run_once(self, images: int) -> float:
            os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
            storage = tempfile.mkdtemp(prefix="ray-ingest-feed-")
            ds = read_records(m.root, cfg.split, repeat=passes, block_rows=cfg.batch_size)
            trainer = DataParallelTrainer(
                _feed_loop,
                train_loop_config={"batch_size": cfg.batch_size, "warmup": self.warmup,
                                   "images": images},
                scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.01}),
                run_config=RunConfig(storage_path=storage,
                                     name=f"feed-{time.time_ns()}"),
                datasets={"train": ds},
                dataset_config=DataConfig(datasets_to_split=["train"]),
            )
            try:
                result = trainer.fit()
            finally:
                shutil.rmtree(storage, ignore_errors=True)
            if result.error is not None:
                raise result.error
            r = result.metrics
            if not r:
                raise RuntimeError("the Ray Train feed worker reported no timings")
            self.runs.append(r["seconds"] * images / r["images"])
            # The worker's own process CPU is not in its snapshot: it is one process of many;
            # what it saw (itself, its children, every ray:: process) is the row's CPU.
            self.cpus.append(r["worker_cpu_seconds"] * images / r["images"])
            from ray_ingest.bench import wait_idle

            wait_idle()
            return images / self.runs[-1]

    return TrainFeed(OURS_TRAIN, "ray", make=None, warmup=cfg.warmup,
                     note="timed inside a Ray Train worker")
