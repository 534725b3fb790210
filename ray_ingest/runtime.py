"""Connecting to Ray: an embedded local instance by default, or the cluster the job runs on."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Optional

logger = logging.getLogger("ray_ingest")


def ensure_ray(address: Optional[str] = None, *, num_cpus: Optional[int] = None) -> None:
    """Connects to Ray once per process.

    Inside ``ray job submit`` (``RAY_ADDRESS`` set) or with ``address``, joins that cluster;
    otherwise starts an embedded local instance, the default for the CLI and the demo.
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs = {"log_to_driver": True, "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **kwargs)
    else:
        cpus = num_cpus or os.cpu_count() or 1
        ray.init(include_dashboard=False, num_cpus=num_cpus,
                 _system_config={"num_workers_soft_limit": worker_soft_limit(cpus)}, **kwargs)
    _quiet_data_context()


def worker_soft_limit(cpus: int) -> int:
    """Idle Ray worker processes kept alive, for the embedded instance.

    Ray's default is the CPU count, counting busy actors too: with training workers, Ray Train
    and Ray Data actors alive, every idle task worker is killed after a second, and each epoch's
    read tasks wait for new processes to start and import (measured on 2 cores: the first
    batch of an epoch came 1.1-2.5 s after the stream started, against 0.4-0.7 s with this
    limit, and half the epochs of a training run stalled for 1.5-2 s). On a cluster of
    ``ray start`` nodes pass the same with ``--system-config='{"num_workers_soft_limit": 16}'``.
    """
    return max(16, 2 * cpus)


def _quiet_data_context() -> None:
    import ray

    ctx = ray.data.DataContext.get_current()
    # Errors in our map functions carry the file name; Ray's long internal traces add noise.
    ctx.log_internal_stack_trace_to_stdout = False


@contextlib.contextmanager
def data_context(**overrides):
    """Sets Ray Data context options for the datasets created inside the block.

    A Dataset captures the current DataContext when it is created, so the overrides apply to
    the datasets built in the block and are restored afterwards.
    """
    import ray

    ctx = ray.data.DataContext.get_current()
    saved = {k: getattr(ctx, k) for k in overrides}
    for k, v in overrides.items():
        setattr(ctx, k, v)
    try:
        yield ctx
    finally:
        for k, v in saved.items():
            setattr(ctx, k, v)


#: Ray Data settings of our pipelines (measured on the 2-core machine, see benchmarks/RESULTS.md):
#: * per-operator CPU reservation would keep one of a small machine's cores for the shard
#:   writer, idle until a shard's worth of rows exists; off, the decoders use every core;
#: * a streaming task may run 8 blocks ahead of the consumer instead of 2: the executor polls
#:   its tasks together (waiting up to 100 ms for all of them), so with a buffer of 2 a task
#:   that is done sits idle while another finishes; this alone took a 150 KB/row stream
#:   from ~6,800 to ~11,500 rows/s. Memory stays bounded by Ray Data's object-store budget.
PIPELINE_CONTEXT = {
    "op_resource_reservation_enabled": False,
    "_max_num_blocks_in_streaming_gen_buffer": 8,
}
