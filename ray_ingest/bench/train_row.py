"""The throughput study's Ray Train rows: our reader through a Ray Train worker's
``get_dataset_shard``, for each decode placement (``--decode workers|consumer|gpu``), timed
inside the worker (one worker) by the same :func:`~ray_ingest.bench.measure.time_stream` as
every other row, through the very batch stream training uses (``train.stream.batches``), with
the worker process's own CPU per thread group beside the node's."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict
from typing import Any, Callable, Dict

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
    shard = ray.train.get_dataset_shard(keys.SPLITS[0])
    batches = stream.batches(shard, cfg, threads=stream.decode_threads(cfg, 1), drop_last=True)
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


def train_feed_run(make_dataset: Callable[[], Any], data: str, batch_size: int, decode: str
                   ) -> Callable[[int, int], Timing]:
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
                               "warmup": warmup, "images": images},
            scaling_config=ScalingConfig(num_workers=1, use_gpu=gpu,
                                         resources_per_worker={"CPU": 0.01,
                                                               **({"GPU": 1} if gpu else {})}),
            run_config=RunConfig(storage_path=storage, name=f"feed-{time.time_ns()}",
                                 logging_config=LoggingConfig(log_level=quiet.train_log_level())),
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
        return Timing(**{k: result.metrics[k] for k in ("images", "seconds", "cpu_seconds",
                                                        "process_cpu_seconds", "threads")})

    return run
