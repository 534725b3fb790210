"""Fault injection for robustness tests and soaks: find Ray worker processes by their title,
SIGKILL one, keep killing on a schedule, take down a whole process tree, or take down a whole
node of a local multi-node cluster (``ray.cluster_utils.Cluster``) while it runs a given kind of
work.

Ray names a worker process after what it runs (``ray::MapBatches``, ``ray::Write``,
``ray::ReadTFRecordShards->...``, ``ray::RayTrainWorker``), which is how a victim is chosen;
only among this process's descendants (the Ray instance it started), so that other Ray
instances on a shared machine are never hit.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple


def ray_workers(titles: Sequence[str]) -> List[Tuple[int, str]]:
    """``(pid, title)`` of every descendant of this process whose command line starts with one
    of ``titles``."""
    import psutil

    found = []
    try:
        procs = psutil.Process().children(recursive=True)
    except psutil.Error:
        return found
    for p in procs:
        try:
            cmd = " ".join(p.cmdline() or [])
        except psutil.Error:
            continue
        if cmd.startswith(tuple(titles)):
            found.append((p.pid, cmd.split(" ")[0]))
    return found


def kill(pid: int) -> bool:
    """SIGKILLs ``pid``; False if it was already gone."""
    try:
        os.kill(pid, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False


def kill_one(titles: Sequence[str], rng: random.Random) -> Optional[Dict]:
    """Kills one random process among :func:`ray_workers` of ``titles``; None if none ran."""
    victims = ray_workers(titles)
    if not victims:
        return None
    pid, title = rng.choice(victims)
    return {"pid": pid, "title": title, "t": round(time.time(), 2)} if kill(pid) else None


def wait_and_kill_one(titles: Sequence[str], rng: random.Random,
                      timeout: float = 120.0) -> Optional[Dict]:
    """Waits up to ``timeout`` s for a process of ``titles`` to run, then kills one."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        victim = kill_one(titles, rng)
        if victim:
            return victim
        time.sleep(0.02)
    return None


def kill_tree(pid: int, timeout: float = 20.0) -> None:
    """SIGKILLs ``pid`` and all its descendants, and waits for them."""
    import psutil

    try:
        parent = psutil.Process(pid)
        procs = [parent] + parent.children(recursive=True)
    except psutil.Error:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=timeout)


class Killer:
    """Every ``every`` seconds, SIGKILLs one random process of ``titles`` (in a thread);
    records each kill with the phase it was started for."""

    def __init__(self, titles: Sequence[str], every: float, seed: int = 0):
        self.titles, self.every, self.rng = tuple(titles), every, random.Random(seed)
        self.kills: List[Dict] = []
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _run(self, phase: str) -> None:
        while not self._stop.wait(self.every):
            victim = kill_one(self.titles, self.rng)
            if victim:
                self.kills.append({"phase": phase, **victim})

    def start(self, phase: str) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(phase,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def count(self, phase: str) -> int:
        return sum(1 for k in self.kills if k["phase"] == phase)


# ---- whole nodes of a local cluster (ray.cluster_utils.Cluster) ------------------------------


def raylet_pid(node) -> Optional[int]:
    """The pid of a ``ray._private.node.Node``'s raylet (None once it is gone)."""
    procs = getattr(node, "all_processes", {}).get("raylet") or []
    return procs[0].process.pid if procs else None


def node_running(nodes: Sequence, titles: Sequence[str], rng: random.Random):
    """One of ``nodes`` (random, if several) on which a process of ``titles`` runs: a Ray
    worker is a child of its node's raylet. None if no such process runs on them."""
    import psutil

    by_raylet = {raylet_pid(n): n for n in nodes}
    found = []
    for pid, _ in ray_workers(titles):
        try:
            parent = psutil.Process(pid).ppid()
        except psutil.Error:
            continue
        if parent in by_raylet and by_raylet[parent] not in found:
            found.append(by_raylet[parent])
    return rng.choice(found) if found else None


def remove_node_running(cluster, titles: Sequence[str], rng: random.Random,
                        timeout: float = 120.0) -> Optional[Dict]:
    """Waits up to ``timeout`` s for a process of ``titles`` on a worker node of ``cluster``
    (not the head: the driver is connected to it), then takes that whole node down at once
    (its raylet, object store and every worker, no graceful exit): a machine lost."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        workers = [n for n in cluster.list_all_nodes() if n is not cluster.head_node]
        node = node_running(workers, titles, rng)
        if node is not None:
            info = {"node_id": node.node_id, "titles": list(titles), "t": round(time.time(), 2)}
            cluster.remove_node(node, allow_graceful=False)
            return info
        time.sleep(0.05)
    return None
