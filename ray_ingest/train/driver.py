"""``ray-ingest train``: datasets from the reader, a Ray Train trainer, the run, the report."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import threading
import time
import uuid
from dataclasses import replace
from typing import Any, Callable, Dict, Tuple

from ray_ingest import fs
from ray_ingest.errors import (CheckpointError, ConfigError, RunExistsError,
                               TrainingStalledError, find_error)
from ray_ingest.format import keys
from ray_ingest.format.manifest import read_manifest
from ray_ingest.progress import plural
import ray_ingest.train.checkpoint as checkpoint
import ray_ingest.train.console as console
import ray_ingest.train.memory as memory
import ray_ingest.train.resume as resume
import ray_ingest.train.rundir as rundir
import ray_ingest.train.stream as stream
from ray_ingest.train.config import TrainConfig
from ray_ingest.train.decode_choice import resolve_decode
from ray_ingest.train.plan import RunPlan

logger = logging.getLogger("ray_ingest")


def resolve_resources(cfg: TrainConfig) -> Tuple[bool, float]:
    """``(use_gpu, CPUs per training worker)`` for this cluster.

    GPUs are used when the cluster has one per worker (unless told otherwise). On CPU-only
    machines the training workers share all but one CPU, which Ray Data keeps for reading and
    decoding (a worker that reserved a whole core each would leave none on a small machine).
    A run that may restart (``max_failures``) counts only the CPUs left after losing the
    largest other node than this one: the restarted group must fit on the nodes left with a
    CPU to spare, or its reader never runs.
    """
    import ray

    res = ray.cluster_resources()
    gpus, cpus = res.get("GPU", 0.0), res.get("CPU", 1.0)
    if cfg.max_failures != 0:
        cpus -= _largest_other_node_cpus()
    use_gpu = cfg.use_gpu if cfg.use_gpu is not None else gpus >= cfg.num_workers
    if use_gpu and gpus < cfg.num_workers:
        raise ConfigError(f"--use-gpu with {cfg.num_workers} workers needs {cfg.num_workers} "
                         f"GPUs; the cluster has {gpus:g}")
    if cfg.cpus_per_worker is not None:
        return use_gpu, cfg.cpus_per_worker
    if use_gpu:
        return True, 1.0
    share = (cpus - 1.0) / cfg.num_workers if cpus > 1 else cpus / (2 * cfg.num_workers)
    return False, max(0.1, min(1.0, math.floor(share * 20) / 20))


def check_memory(cfg: TrainConfig, manifest) -> None:
    """Refuses or warns before the start when the workers' estimated memory does not fit the
    node's (:mod:`ray_ingest.train.memory`); the workers are spread evenly over the nodes."""
    import psutil
    import ray

    nodes = max(1, sum(1 for n in ray.nodes() if n.get("Alive")))
    here = -(-cfg.num_workers // nodes)
    threads = stream.decode_threads(cfg, here) if cfg.decode == "consumer" else 0
    vm = psutil.virtual_memory()
    # Whole-image shards reach the batch cropped to the training size.
    side = cfg.train_size(manifest)
    height, width = (side, side) if manifest.variable_size else (manifest.height,
                                                                 manifest.width)
    memory.check(memory.estimate(cfg, height, width, threads, here), vm.total, vm.available)


def _largest_other_node_cpus() -> float:
    """CPUs of the largest alive node other than this process's (0 on one node)."""
    import ray

    here = ray.get_runtime_context().get_node_id()
    return max((n["Resources"].get("CPU", 0.0) for n in ray.nodes()
                if n.get("Alive") and n["NodeID"] != here), default=0.0)


def check_metrics_out(path) -> None:
    """Refuses, before any work, a ``metrics_out`` that could not be written at the end."""
    if path:
        fs.check_report_file("--metrics-out", path)


@contextlib.contextmanager
def _own_sigint():
    """Gives this process's SIGINT handler back after the block: Ray Train installs its own in
    ``fit()`` (abort the run, then ``sys.exit``) and leaves it there."""
    main = threading.current_thread() is threading.main_thread()
    saved = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    finally:
        if main and saved is not None:
            signal.signal(signal.SIGINT, saved)


def _trainer_class(framework: str):
    """Ray Train's trainer for the framework: it sets up the workers' collectives (TF_CONFIG
    for ``MultiWorkerMirroredStrategy``, the torch process group); both run our one loop."""
    if framework == "tf":
        from ray.train.tensorflow import TensorflowTrainer

        return TensorflowTrainer
    from ray.train.torch import TorchTrainer

    return TorchTrainer


def train(cfg: TrainConfig, progress: Callable[[str], None] = print) -> Dict[str, Any]:
    """Runs a training job; returns the final metrics (also written to ``cfg.metrics_out``),
    with the best and latest checkpoints, the history file and the command that resumes the
    run. ``progress`` gets the lines to show: a table row per epoch and a summary."""
    from ray.train import (CheckpointConfig, DataConfig, FailureConfig, LoggingConfig,
                           RunConfig, ScalingConfig)

    from ray_ingest import quiet
    from ray_ingest.read.skips import skip_report
    from ray_ingest.runtime import ensure_ray
    from ray_ingest.train.loop import train_loop_per_worker
    from ray_ingest.train.watchdog import stall_summary

    cfg = cfg.absolute()
    check_metrics_out(cfg.metrics_out)
    manifest = read_manifest(cfg.data)
    train_split = keys.SPLITS[0]
    validated = manifest.num_records(keys.SPLITS[1]) > 0
    if manifest.num_records(train_split) < cfg.batch_size:
        raise ConfigError(f"{cfg.data}: the train split holds "
                          f"{manifest.num_records(train_split)} records, fewer than one global "
                          f"batch of {cfg.batch_size}")
    run = rundir.run_dir(cfg.storage_path, cfg.name)
    if fs.exists(run) and not cfg.resume:
        raise RunExistsError(f"{run} already holds a run; pass --resume to continue it, or "
                             "choose another --name")
    if cfg.resume and not fs.exists(run):
        raise RunExistsError(f"--resume: there is no run at {run}")
    resume_command = replace(cfg, resume=True).command_line()
    latest = checkpoint.find_checkpoints(run)["latest"] if cfg.resume else None
    if latest is not None and latest["model_path"] is None:
        raise CheckpointError(f"{latest['checkpoint']}: a checkpoint of an older layout (no "
                              "portable model); it cannot be resumed: start a new run (--name)")
    if latest is not None:
        resume.check(latest, cfg, manifest, run)
    if latest is not None and checkpoint.position_of(latest)[0] >= cfg.epochs:
        raise RunExistsError(f"{run}: nothing to train, the run already finished "
                             f"{latest['epoch']} epochs; pass a larger --epochs to continue it")
    # Anything a worker prints reaches the driver once; Ray Train's print patch would log it again.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    ensure_ray()
    use_gpu, cpus = resolve_resources(cfg)
    decode, decode_reason = resolve_decode(cfg, manifest.encoding, use_gpu, cpus)
    cfg = replace(cfg, use_gpu=use_gpu, cpus_per_worker=cpus, decode=decode,
                  attempt_id=uuid.uuid4().hex[:12])
    check_memory(cfg, manifest)
    trainer_cls = _trainer_class(cfg.framework)
    progress(f"train: {cfg.framework} {cfg.model} on {cfg.data} | {plural(cfg.num_workers, 'worker')} x "
             f"{'1 GPU' if use_gpu else f'{cpus:g} CPU'} | global batch {cfg.batch_size} | "
             f"{plural(cfg.epochs, 'epoch')} | decode: {decode} ({decode_reason}) | run {run}")
    if latest is not None:
        # Where it goes on: the run's latest complete checkpoint, which the workers load and
        # name (checkpoint.newest: also one written just before a crash, not yet registered).
        progress(f"resuming {run} from its last checkpoint")
    plan = RunPlan.of(cfg, manifest)
    datasets = {}
    if not cfg.synthetic_data and cfg.order == "stream":
        datasets[train_split] = plan.stream_dataset(cfg.skip_corrupt)
    # Ray Train's controller and workers get the storage filesystem resolved here (with its
    # endpoint settings), and the workers our storage settings for their own files.
    storage_fs, storage_root = fs.filesystem_to_hand_over(cfg.storage_path)
    score = checkpoint.score_order(validated)
    trainer = trainer_cls(
        train_loop_per_worker,
        train_loop_config={"cfg": cfg.to_dict(), "plan": plan},
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cpus}),
        run_config=RunConfig(
            name=cfg.name,
            storage_path=storage_root,
            storage_filesystem=storage_fs,
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            # The best checkpoint by validation accuracy (without a validation split: by
            # training loss); Ray Train keeps the latest as well.
            checkpoint_config=CheckpointConfig(num_to_keep=1,
                                               checkpoint_score_attribute=score[0],
                                               checkpoint_score_order=score[1]),
            logging_config=LoggingConfig(log_level=quiet.train_log_level()),
            worker_runtime_env=fs.task_runtime_env(),
        ),
        datasets=datasets,
        # The stream order's read is split among the workers; a planned order's worker reads
        # its own share of each global batch.
        dataset_config=DataConfig(datasets_to_split=list(datasets)),
    )
    started = time.time()
    interrupted = False
    with console.EpochTable(rundir.history_path(cfg.storage_path, cfg.name), cfg.epochs,
                            progress), _own_sigint():
        try:
            result = trainer.fit()
            error = result.error
        except (KeyboardInterrupt, SystemExit) as e:
            # Ctrl-C: Ray Train's SIGINT handler aborts the run and raises SystemExit (a
            # KeyboardInterrupt before it is installed).
            result, error, interrupted = None, e, True
        except Exception as e:  # noqa: BLE001 - replaced below when a watchdog stopped the run
            result, error = None, e
    if result is not None and result.checkpoint is not None:
        checkpoint.remove_unretained(run, [result.checkpoint.path] + [
            c.path for c, _ in (result.best_checkpoints or [])])
    found = checkpoint.find_checkpoints(run)
    checkpoint.write_pointers(run, found)
    if interrupted:
        if found["latest"] is not None:
            progress(f"resume: {resume_command}")
        raise KeyboardInterrupt(
            f"--resume goes on at {console.position_words(found['latest'])}"
            if found["latest"] else "before the first checkpoint") from None
    stalled = stall_summary(run, cfg.attempt_id, cfg.stall_timeout)
    if error is not None:
        if found["latest"] is not None:
            progress(f"resume: {resume_command}")
        if stalled:
            raise TrainingStalledError(stalled) from error
        ours = find_error(error)  # a worker's error of ours, inside Ray Train's wrapper
        if ours is not None and ours is not error:
            raise ours from error
        raise error
    if stalled:  # a stalled worker group that Ray Train restarted (--max-failures)
        logger.warning("%s", stalled)
    restarts = rundir.count_attempts(cfg.storage_path, cfg.name, cfg.attempt_id) - 1
    metrics = dict(result.metrics or {})
    if not metrics:
        raise RunExistsError(f"{run}: nothing to train, the run already finished {cfg.epochs} "
                             "epochs")
    final = {
        "val_accuracy": metrics.get("val_accuracy"),  # None: no validation split
        "val_loss": metrics.get("val_loss"),
        "images_per_second": metrics["images_per_second"],
        "data_wait_share": metrics["data_wait_share"],
        "steady_data_wait_share": metrics["steady_data_wait_share"],
        "epochs": metrics["epoch"],
        "restarts": max(0, restarts),
        "accuracy": metrics["accuracy"],
        "loss": metrics["loss"],
        "val_images": metrics["val_images"],
        "framework": cfg.framework,
        "model": cfg.model,
        "num_workers": cfg.num_workers,
        "use_gpu": use_gpu,
        "global_batch_size": cfg.batch_size,
        "synthetic_data": cfg.synthetic_data,
        "decode": decode,
        "decode_reason": decode_reason,
        "wall_seconds": time.time() - started,
        "checkpoint": found["latest"]["checkpoint"] if found["latest"] else None,
        "best": console.model_entry(found["best"]),
        "latest": console.model_entry(found["latest"]),
        "run_dir": run,
        "data": cfg.data,
        "history": rundir.history_path(cfg.storage_path, cfg.name),
        "tensorboard": rundir.tensorboard_dir(cfg.storage_path, cfg.name),
        "resume_command": resume_command,
    }
    skipped = skip_report(datasets[train_split]) if cfg.skip_corrupt and datasets else None
    if skipped is not None:
        final["skipped_records"] = skipped.to_dict()
    if cfg.metrics_out:
        with open(cfg.metrics_out, "w") as f:
            json.dump(final, f, indent=2)
    for line in console.summary(final):
        progress(line)
    if skipped is not None:
        progress(f"train: {skipped.summary()}")
    return final
