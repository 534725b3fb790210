"""The per-worker training loop, one for both frameworks (Ray Train's ``TensorflowTrainer`` and
``TorchTrainer`` run the same function); the framework specifics sit behind a backend
(:mod:`backend_tf`, :mod:`backend_torch`): ``to_batch``, ``train_step``, ``eval_step``,
``all_reduce``, ``save_state`` / ``load_state``.

Each epoch: the worker's equal part of the training split streams as numpy batches (the next
epoch's stream starts while this one validates), each step's wait for its batch is timed; then
each worker validates a disjoint part of the validation split (parts may differ in size: no
collective runs per batch), the sums are all-reduced once, and rank 0 writes the epoch to the
run's history (the driver prints it from there) and TensorBoard, and checkpoints. A watchdog
ends the worker if its progress stops.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Iterator, Tuple

import numpy as np

from ray_ingest import quiet
from ray_ingest.format import keys
from ray_ingest.read.ahead import StartedStream
import ray_ingest.train.checkpoint as checkpoint
import ray_ingest.train.metrics as metrics
import ray_ingest.train.rundir as rundir
import ray_ingest.train.stream as stream
from ray_ingest.train.config import TrainConfig
from ray_ingest.train.plan import RunPlan
from ray_ingest.train.watchdog import StallWatchdog


def make_backend(cfg: TrainConfig, rank: int, world: int, manifest, steps_per_epoch: int):
    if cfg.framework == "tf":
        from ray_ingest.train.backend_tf import TFBackend

        return TFBackend(cfg, rank, world, manifest, steps_per_epoch)
    from ray_ingest.train.backend_torch import TorchBackend

    return TorchBackend(cfg, rank, world, manifest, steps_per_epoch)


def start_worker(config: Dict[str, Any]) -> Tuple[TrainConfig, int, int, int, StallWatchdog]:
    """``(cfg, rank, world, restarts, watchdog)``: rank 0 marks this (re)start of the worker
    group and counts the earlier ones; the watchdog (started) ends the worker if its progress
    stops for ``cfg.stall_timeout``."""
    import ray.train

    quiet.quiet_train_worker()
    cfg = TrainConfig(**config)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    restarts = 0
    if rank == 0:
        rundir.mark_attempt(cfg.storage_path, cfg.name, cfg.attempt_id)
        restarts = rundir.count_attempts(cfg.storage_path, cfg.name, cfg.attempt_id) - 1
    watchdog = StallWatchdog(rundir.run_dir(cfg.storage_path, cfg.name), cfg.attempt_id, rank,
                             cfg.stall_timeout).start()
    return cfg, rank, world, restarts, watchdog


def start_line(restarts: int, max_failures: int, start_epoch: int, start_step: int,
               resumed: bool) -> str:
    """What rank 0 says when a run does not start afresh: a restart of the worker group (Ray
    Train logs its restart decisions at INFO, which quiet output leaves out) or a resume."""
    at = f"epoch {start_epoch + 1}" + (f", step {start_step + 1}" if start_step else "")
    if restarts:
        allowed = "unlimited" if max_failures < 0 else str(max_failures)
        return (f"restart {restarts} (--max-failures {allowed}): the worker group failed and "
                f"was started again; training goes on at {at}")
    return f"resumed from a checkpoint; training goes on at {at}" if resumed else ""


def synthetic_batches(cfg: TrainConfig, rank: int, manifest, backend) -> Iterator:
    """One random batch, moved to the device once and yielded forever (the step's bound)."""
    rng = np.random.default_rng(cfg.seed + rank)
    n = cfg.per_worker_batch
    # Whole-image shards reach the device cropped to the training size.
    side = cfg.train_size(manifest) if manifest.variable_size else None
    batch = backend.to_batch({
        keys.IMAGE_COLUMN: rng.integers(0, 256, (n, side or manifest.height,
                                                 side or manifest.width, 3), np.uint8),
        keys.LABEL_COLUMN: rng.integers(0, len(manifest.class_names), n)})
    while True:
        yield batch


def train_loop_per_worker(config: Dict[str, Any]) -> None:
    """One training worker's run of ``config``: ``{"cfg": TrainConfig fields, "plan":
    RunPlan}``."""
    import ray.train

    cfg, rank, world, restarts, watchdog = start_worker(config["cfg"])
    plan: RunPlan = config["plan"]
    threads = stream.decode_threads(cfg, ray.train.get_context().get_local_world_size())
    m = plan.manifest
    steps = plan.steps_per_epoch
    backend = make_backend(cfg, rank, world, m, steps)
    start_epoch, start_step = 0, 0
    given = ray.train.get_checkpoint()  # the same on every worker
    ckpt, later = checkpoint.newest(given, rundir.run_dir(cfg.storage_path, cfg.name))
    if not checkpoint.agreed(later, world, backend.all_reduce):
        ckpt = given  # the workers saw the run folder differently: the registered one
    if ckpt is not None:
        start_epoch, start_step = checkpoint.restore(ckpt, backend.load_state)
    line = start_line(restarts, cfg.max_failures, start_epoch, start_step, ckpt is not None)
    # Said here: only the workers know the checkpoint Ray Train handed them.
    if rank == 0 and line:
        print(line, flush=True)
    tb = rundir.TensorBoard(cfg.storage_path, cfg.name, enabled=rank == 0)
    history = rundir.History(cfg.storage_path, cfg.name) if rank == 0 else None
    if cfg.sample_log:
        # Rank 0 counted the worker group's starts: every rank's lines name the restart.
        restart = int(round(backend.all_reduce([float(restarts)])[0])) if world > 1 else restarts
        samples = rundir.SampleLog(cfg.sample_log, rank, world, cfg.attempt_id, restart)
    else:
        samples = None
    schedule = checkpoint.Schedule(cfg.checkpoint_every_steps, cfg.checkpoint_every_minutes,
                                   rank, backend.all_reduce)
    batch_size = cfg.per_worker_batch
    if cfg.synthetic_data:
        synthetic = synthetic_batches(cfg, rank, m, backend)
        to_batch = lambda b: b  # noqa: E731 - already on the device
    else:
        shard = ray.train.get_dataset_shard(keys.SPLITS[0]) if plan.order == "stream" else None
        to_batch = backend.to_batch

    def open_stream(epoch: int, first_step: int):
        if cfg.synthetic_data:
            return synthetic
        if plan.order == "planned":  # one stream for all the epochs left
            return StartedStream(lambda: iter(plan.planned_feed(
                rank, world, epoch, first_step, cfg.epochs,
                lambda ds, _: stream.batches(ds, cfg, threads=threads, drop_last=True))))
        return StartedStream(lambda: stream.batches(
            shard, cfg, threads=threads, drop_last=True, shuffle_seed=cfg.seed + epoch))

    # Rank 0's checkpoints inside the epoch: how many, their seconds, and those of the model
    # save within them (what a checkpoint costs beyond the save: the report to Ray Train).
    step_saves = {"checkpoints": 0, "checkpoint_seconds": 0.0, "model_save_seconds": 0.0}

    def save_step(epoch: int, step: int) -> None:
        """A checkpoint inside epoch ``epoch``, after its step ``step``: every worker reports;
        rank 0 saves the model, the optimizer and the schedule, and the position."""
        position = {"epoch": epoch, "step": step + 1}
        save = meta = None
        started = time.perf_counter()
        if rank == 0:
            def save(folder):
                t = time.perf_counter()
                backend.save_state(folder)
                step_saves["model_save_seconds"] += time.perf_counter() - t
            meta = checkpoint.checkpoint_meta(cfg, m, {}, position)
        checkpoint.report_epoch(checkpoint.step_metrics(epoch, step + 1, plan.validated),
                                save, meta)
        step_saves["checkpoints"] += 1
        step_saves["checkpoint_seconds"] += time.perf_counter() - started
        schedule.reset()
        watchdog.tick("checkpoint")

    next_stream = open_stream(start_epoch, start_step) if start_epoch < cfg.epochs else None
    for epoch in range(start_epoch, cfg.epochs):
        backend.begin_epoch(epoch)
        meter = metrics.EpochMeter()
        batches, next_stream = next_stream, None
        for step in range(start_step if epoch == start_epoch else 0, steps):
            t0 = time.perf_counter()
            batch = stream.next_training_batch(batches, rank, step, steps, epoch,
                                               may_end=cfg.skip_corrupt)
            if batch is None:  # skipped records made the epoch shorter, on every worker
                break
            images, labels = to_batch(batch)
            t1 = time.perf_counter()
            loss, correct = backend.train_step(images, labels, epoch, step)
            if samples is not None:
                samples.write(epoch, step, batch, loss)
            meter.add(batch_size, t1 - t0, time.perf_counter() - t0, loss, correct)
            watchdog.tick("training step")
            if schedule.due(epoch, step, steps):
                save_step(epoch, step)
        train_seconds = meter.seconds
        if plan.order == "planned":
            next_stream = batches  # it goes on with the next epoch's first batch
        else:
            stream.finish_stream(batches, drain=not cfg.steps_per_epoch and not cfg.synthetic_data)
            if epoch + 1 < cfg.epochs:
                next_stream = open_stream(epoch + 1, 0)  # starts while this epoch validates

        backend.begin_eval()
        val_loss = val_correct = val_count = 0.0
        for b in stream.batches(plan.val_dataset(rank, world), cfg, threads=threads,
                                drop_last=False):
            images, labels = backend.to_batch(b)
            lsum, csum = backend.eval_step(images, labels)
            val_loss += lsum
            val_correct += csum
            val_count += int(labels.shape[0])
            watchdog.tick("validation batch")
        sums = backend.all_reduce(
            metrics.local_sums(meter, (val_loss, val_correct, val_count), restarts))
        epoch_metrics = {**metrics.epoch_metrics(epoch, sums, train_seconds), **step_saves}
        step_saves.update(checkpoints=0, checkpoint_seconds=0.0, model_save_seconds=0.0)
        save = meta = None
        if rank == 0:
            history.append(epoch_metrics)
            tb.write(epoch_metrics)
            save, meta = backend.save_state, checkpoint.checkpoint_meta(cfg, m, epoch_metrics)
        checkpoint.report_epoch(epoch_metrics, save, meta)
        schedule.reset()
        watchdog.tick("epoch report")
    if plan.order == "planned" and next_stream is not None:
        stream.finish_stream(next_stream, drain=False)
    if samples is not None:
        samples.close()
    tb.close()
    watchdog.stop()
