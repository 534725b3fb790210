"""The throughput study's Ray Train rows: our reader through a Ray Train worker's
``get_dataset_shard``, for each decode placement (``--decode workers|consumer|gpu``), timed
inside the worker (one worker) by the same :func:`~ray_ingest.bench.measure.time_stream` as
every other row, through the very batch stream training uses (``train.stream.batches``), with
the worker process's own CPU per thread group beside the node's. With a training run's
:class:`~ray_ingest.train.plan.RunPlan` (:func:`plan_feed_run`), the worker reads epoch after
epoch as training does: its own planned feed, one stream across epochs (``order="planned"``),
or the plan's shuffled read through ``streaming_split``, the shard's stream again each epoch
(``order="stream"``)."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from typing import Any, Callable, Dict, Optional

from ray_ingest.bench.measure import Timing, node_processes, time_stream
from ray_ingest.format import keys


def _feed_loop(config: Dict[str, Any]) -> None:
    import ray.train

    from ray_ingest import quiet
    from ray_ingest.read.decode import labels_of

    quiet.quiet_train_worker()
    from ray_ingest.train import TrainConfig, stream

    cfg = TrainConfig(data=config["data"], decode=config["decode"],
                      batch_size=config["batch_size"], prefetch_batches=4)
    plan = config.get("plan")
    threads = stream.decode_threads(cfg, 1)
    shard = (None if plan is not None and plan.order == "planned"
             else ray.train.get_dataset_shard(keys.SPLITS[0]))
    if plan is None:
        batches = stream.batches(shard, cfg, threads=threads, drop_last=True)
    elif shard is None:  # as the training loop reads: one stream across epochs
        # The epochs a run of this row's images takes, and one more.
        epochs = 2 + (config["warmup"] + config["images"]) // (
            plan.steps_per_epoch * plan.batch_size)
        batches = iter(plan.planned_feed(0, 1, 0, 0, epochs, lambda ds, _: stream.batches(
            ds, cfg, threads=threads, drop_last=True)))
    else:
        def epochs():
            # As the training loop reads: the shard's stream again each epoch, the next
            # started as soon as this one ends.
            for e in itertools.count():
                current = iter(stream.batches(shard, cfg, threads=threads, drop_last=True,
                                              shuffle_seed=cfg.seed + e))
                for _ in range(plan.steps_per_epoch):
                    yield next(current)
                stream.finish_stream(current, drain=True)
        batches = epochs()
    if cfg.decode == "gpu":
        import torch

        from ray_ingest.read.gpu import torch_gpu_decoder

        decode = torch_gpu_decoder(torch.device("cuda", 0))

        def counts():
            for b in batches:
                images = decode(b)
                torch.cuda.synchronize()
                yield int(images.shape[0])
    else:
        def counts():
            for b in batches:
                yield len(labels_of(b))
    timing = time_stream(counts(), config["warmup"], config["images"], scope=node_processes(),
                         by_thread=True)
    # Train V2 hands the driver only metrics that come with a checkpoint: attach an empty one.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as d:
        ray.train.report(asdict(timing), checkpoint=ray.train.Checkpoint.from_directory(d))


def plan_feed_run(plan) -> Callable[[int, int], Timing]:
    """A Ray Train row of a training run's plan (one worker; ``plan.order`` and
    ``plan.decode`` as the run would read)."""
    make = None if plan.order == "planned" else lambda: plan.stream_dataset(False)
    return train_feed_run(make, plan.manifest.path, plan.batch_size, plan.decode, plan=plan)


def train_feed_run(make_dataset: Optional[Callable[[], Any]], data: str, batch_size: int,
                   decode: str, plan=None) -> Callable[[int, int], Timing]:
    """A row's run: a short Ray Train fit whose one worker streams ``make_dataset()`` with the
    given decode placement and times it. The CPU figure covers the worker's whole Ray node: its
    raylet's process tree, and the process that started Ray when that is on the node (the
    read tasks that decode for ``workers`` run there, not in the worker)."""

    def run(warmup: int, images: int) -> Timing:
        from ray.train import DataConfig, LoggingConfig, RunConfig, ScalingConfig
        from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

        from ray_ingest import quiet

        os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
        storage = tempfile.mkdtemp(prefix="ray-ingest-feed-")
        gpu = decode == "gpu"
        trainer = DataParallelTrainer(
            _feed_loop,
            train_loop_config={"data": data, "batch_size": batch_size, "decode": decode,
                               "warmup": warmup, "images": images, "plan": plan},
            scaling_config=ScalingConfig(num_workers=1, use_gpu=gpu,
                                         resources_per_worker={"CPU": 0.01,
                                                               **({"GPU": 1} if gpu else {})}),
            run_config=RunConfig(storage_path=storage, name=f"feed-{time.time_ns()}",
                                 logging_config=LoggingConfig(log_level=quiet.train_log_level())),
            datasets={keys.SPLITS[0]: make_dataset()} if make_dataset else {},
            dataset_config=DataConfig(datasets_to_split=[keys.SPLITS[0]] if make_dataset
                                      else []),
        )
        try:
            result = trainer.fit()
        finally:
            shutil.rmtree(storage, ignore_errors=True)
        if result.error is not None:
            raise result.error
        if not result.metrics:
            raise RuntimeError("the Ray Train feed worker reported no timings")
        return Timing(**{k: result.metrics[k] for k in ("images", "seconds", "cpu_seconds",
                                                        "process_cpu_seconds", "threads")})

    return run
