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
    otherwise starts an embedded local instance, the default for the CLI and the demo. Unless
    :mod:`ray_ingest.quiet` was set verbose, the job is quiet: this process and, through the
    job's runtime environment, every worker (see that module).
    """
    import ray

    from ray_ingest import quiet

    if ray.is_initialized():
        return
    if not quiet.is_verbose():
        quiet.quiet_this_process()
    address = address or os.environ.get("RAY_ADDRESS")
    env = quiet.runtime_env()
    kwargs = {"log_to_driver": True, "logging_level": quiet.ray_log_level()}
    if not address:
        cpus = num_cpus or os.cpu_count() or 1
        # "local": a new instance even where a `ray start` cluster runs on this machine
        # (which ray.init() would join). The dashboard serves the State API, which Ray Train
        # asks about its controller; it listens on loopback only.
        kwargs.update(address="local", include_dashboard=True, dashboard_host="127.0.0.1",
                      num_cpus=num_cpus,
                      _system_config={"num_workers_soft_limit": worker_soft_limit(cpus)})
    else:
        kwargs["address"] = address
    try:
        ray.init(runtime_env=env or None, **kwargs)
    except ValueError:
        if not address or "worker_process_setup_hook" not in env:
            raise
        # Inside a job submission whose runtime environment has its own worker setup hook:
        # Ray refuses to merge two, before it connects, and the submission's wins (its
        # workers print Ray Data's and Ray Train's INFO lines). Any other error is raised
        # again by the call without our hook.
        logger.debug("ray.init refused the quiet worker setup hook; joining without it")
        env.pop("worker_process_setup_hook")
        ray.init(runtime_env=env or None, **kwargs)
    _quiet_data_context(verbose=quiet.is_verbose())


def worker_soft_limit(cpus: int) -> int:
    """Idle Ray worker processes kept alive, for the embedded instance.

    Ray's default is the CPU count, counting busy actors too: with training workers, Ray Train
    and Ray Data actors alive, every idle task worker is killed after a second, and each epoch's
    read tasks wait for new processes to start and import, so the first batch of an epoch
    comes late (figures in benchmarks/RESULTS.md). On a cluster of ``ray start`` nodes pass the
    same with ``--system-config='{"num_workers_soft_limit": 16}'``.
    """
    return max(16, 2 * cpus)


def _quiet_data_context(verbose: bool) -> None:
    import ray
    import ray.data

    from ray_ingest import quiet

    ctx = ray.data.DataContext.get_current()
    if not verbose:
        # Our own display (ray_ingest.progress) shows each long stage once.
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        quiet.quiet_ray_data_console()


@contextlib.contextmanager
def data_context(**overrides):
    """Sets Ray Data context options for the datasets created inside the block.

    A Dataset captures the current DataContext when it is created, so the overrides apply to
    the datasets built in the block and are restored afterwards.
    """
    import ray

    ctx = ray.data.DataContext.get_current()
    # A tuning knob of ours that a Ray release no longer has is left out, not added.
    overrides = {k: v for k, v in overrides.items() if hasattr(ctx, k)}
    saved = {k: getattr(ctx, k) for k in overrides}
    for k, v in overrides.items():
        setattr(ctx, k, v)
    try:
        yield ctx
    finally:
        for k, v in saved.items():
            setattr(ctx, k, v)


#: Ray Data settings of our pipelines (measured: benchmarks/RESULTS.md):
#: * per-operator CPU reservation would keep one of a small machine's cores for the shard
#:   writer, idle until a shard's worth of rows exists; off, the decoders use every core;
#: * a streaming task may run 8 blocks ahead of the consumer instead of 2: the executor polls
#:   its tasks together (waiting up to 100 ms for all of them), so with a buffer of 2 a task
#:   that is done sits idle while another finishes. Memory stays bounded by Ray Data's
#:   object-store budget.
PIPELINE_CONTEXT = {
    "op_resource_reservation_enabled": False,
    "_max_num_blocks_in_streaming_gen_buffer": 8,
}


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask; the machine's count elsewhere)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


_MALLOC_TUNED = False


def tune_malloc() -> None:
    """Keeps freed block buffers in this process's heap instead of returning them to the OS.

    Blocks are fresh arrays of tens of MB; glibc serves those with ``mmap`` and unmaps them
    on free, so each block paid a page fault per 4 KB page. With high mmap and trim
    thresholds the memory is reused. glibc only; elsewhere a no-op. Once per process.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 512 << 20)
        libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        pass
