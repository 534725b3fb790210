"""Where a training run decodes its JPEG records (``--decode``).

* ``workers``: in the read tasks, on the CPUs of any node; training workers receive pixels.
  What scales with CPU-only nodes, at the cost of moving ~10x more bytes to the trainers.
* ``consumer``: records travel encoded; each training worker decodes them in threads, batches
  ahead of its step (its node's spare cores do the work).
* ``gpu``: records travel encoded to the training worker's GPU and are decoded there.
* ``auto``: ``gpu`` when the workers have GPUs and a GPU decoder is importable there;
  ``consumer`` when the training workers' node(s) have at least ~2 idle CPU cores per worker
  (or everything runs on one node, where the decode uses the same cores either way and
  consumer decode saves the pixel transfer); ``workers`` otherwise. The reason is logged.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

from ray_ingest.errors import ConfigError
from ray_ingest.format import keys

IDLE_CORES_PER_WORKER = 2.0


def _probe_gpu_decoder(framework: str) -> Tuple[bool, str]:
    """Runs :func:`ray_ingest.read.gpu.probe` on a GPU node."""
    import ray

    from ray_ingest.read.gpu import probe

    return ray.get(ray.remote(num_gpus=1, num_cpus=0)(probe).remote(framework), timeout=120)


def _nodes() -> List[Dict]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]


def idle_cores_per_worker(num_workers: int, cpus_per_worker: float, use_gpu: bool) -> float:
    """Idle CPU cores per training worker on the nodes that host them: on GPU runs the GPU
    nodes (workers spread one per GPU), on CPU runs the whole cluster."""
    nodes = _nodes()
    if use_gpu:
        nodes = [n for n in nodes if n["Resources"].get("GPU", 0) > 0]
        if not nodes:
            return 0.0
        per_node = []
        for n in nodes:
            workers = min(num_workers, int(n["Resources"]["GPU"]))
            if workers:
                per_node.append((n["Resources"]["CPU"] - workers * cpus_per_worker) / workers)
        return min(per_node) if per_node else 0.0
    cpus = sum(n["Resources"]["CPU"] for n in nodes)
    return (cpus - num_workers * cpus_per_worker) / max(1, num_workers)


def resolve_decode(cfg, encoding: str, use_gpu: bool, cpus_per_worker: float
                   ) -> Tuple[str, str]:
    """``(mode, reason)`` for this run."""
    if encoding == keys.FORMAT_RAW:
        return "workers", "raw records: nothing to decode"
    if cfg.decode == "gpu" and not use_gpu:
        raise ConfigError("--decode gpu needs GPU training workers (--use-gpu, or a cluster "
                          f"with {cfg.num_workers} GPUs)")
    if cfg.decode != "auto":
        return cfg.decode, f"--decode {cfg.decode}"
    if use_gpu:
        ok, why = _probe_gpu_decoder(cfg.framework)
        if ok:
            return "gpu", "GPU workers with a GPU JPEG decoder"
        gpu_note = f"no GPU decode ({why}); "
    else:
        gpu_note = ""
    if len(_nodes()) <= 1:
        return "consumer", (gpu_note + "one node: decoding in the training workers uses the same "
                            "cores as the read tasks would, without moving pixels")
    idle = idle_cores_per_worker(cfg.num_workers, cpus_per_worker, use_gpu)
    if idle >= IDLE_CORES_PER_WORKER:
        return "consumer", gpu_note + f"{idle:.1f} idle CPU cores per training worker"
    return "workers", (gpu_note + f"{idle:.1f} idle CPU cores per training worker (< "
                       f"{IDLE_CORES_PER_WORKER:g}): decode in the read tasks on other nodes")
