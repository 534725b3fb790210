"""How a row is timed: CPU accounting of this process and the Ray processes it drives, the wait
for a quiet machine between runs, the one timed-stream helper, and the round-robin runs.

Every row streams batches of decoded images; :func:`time_stream` skips a warm-up and times a
fixed number of images. It runs in this process for most rows and inside a Ray Train worker for
the training-feed row, so that both are timed the same way.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional


def _processes():
    """This process and the Ray processes it drives: its descendants when it started Ray
    itself (other Ray instances on a shared machine are left out); every ``ray::`` process of
    this host when it joined a cluster started elsewhere."""
    import psutil

    procs = _tree(psutil.Process())

    def is_ray(p):
        try:
            return p.name().startswith("ray::")
        except psutil.Error:
            return False

    if not any(is_ray(p) for p in procs.values()):
        for p in psutil.process_iter(["name"]):
            if (p.info.get("name") or "").startswith("ray::"):
                procs.setdefault(p.pid, p)
    return procs


def node_processes() -> Callable[[], Dict[int, Any]]:
    """For code inside a Ray worker: the processes of its Ray node — the raylet's process tree,
    and the process that started the raylet when that is not the system's init (an embedded
    ``ray.init()``: the driver and everything it drives)."""
    import psutil

    root = psutil.Process()
    try:
        while root.parent() is not None and root.name() != "raylet":
            root = root.parent()
        parent = root.parent()
        if root.name() != "raylet":  # not in a Ray worker: this process alone
            root = psutil.Process()
        elif parent is not None and parent.pid != 1:
            root = parent
    except psutil.Error:
        root = psutil.Process()

    return lambda: _tree(root)


def _tree(root) -> Dict[int, Any]:
    """``root`` and its descendants, by pid."""
    import psutil

    procs = {root.pid: root}
    try:
        procs.update((p.pid, p) for p in root.children(recursive=True))
    except psutil.Error:
        pass
    return procs


def cpu_snapshot(skip_idle_workers: bool = False,
                 scope: Optional[Callable[[], Dict[int, Any]]] = None) -> Dict[int, float]:
    """CPU seconds so far of this process, its children and every ``ray::`` process (or of
    the processes ``scope()`` lists)."""
    import psutil

    out = {}
    for pid, p in (scope or _processes)().items():
        try:
            if skip_idle_workers and p.name() == "ray::IDLE":
                continue
            t = p.cpu_times()
            out[pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def cpu_delta(before: Dict[int, float], after: Dict[int, float]) -> float:
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


def wait_idle(timeout: float = 60.0, window: float = 0.3, threshold: float = 0.2) -> float:
    """Waits until this process and its Ray processes use under ``threshold`` of a core.

    A stream that is abandoned mid-way (as every timed run is) can leave tasks finishing in the
    background; the next row must not pay for them. Idle worker processes are left out: each
    ticks at ~1 % of a core, and a node keeps many (``runtime.worker_soft_limit``); Ray's
    daemons and idle actors tick too, hence a threshold of 0.2 core (a leftover task uses 1).
    Returns the seconds waited.
    """
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        before = cpu_snapshot(skip_idle_workers=True)
        time.sleep(window)
        if cpu_delta(before, cpu_snapshot(skip_idle_workers=True)) < threshold * window:
            break
    return time.perf_counter() - start


@dataclass
class Timing:
    """One timed run: ``images`` streamed in ``seconds`` wall, using ``cpu_seconds`` of CPU."""

    images: int
    seconds: float
    cpu_seconds: float
    #: With ``by_thread``: the CPU of the consuming process alone, and per thread group.
    process_cpu_seconds: Optional[float] = None
    threads: Dict[str, float] = field(default_factory=dict)


def time_stream(counts: Iterator[int], warmup: int, images: int,
                scope: Optional[Callable[[], Dict[int, Any]]] = None,
                by_thread: bool = False) -> Timing:
    """Skips ``warmup`` images of a stream of batch sizes, then times ``images`` more (the last
    batch may run over; :class:`Variant` scales the run to ``images``). CPU time is counted
    over :func:`cpu_snapshot`'s processes, or ``scope()``'s; with ``by_thread`` also this
    process's own, per thread group (:mod:`ray_ingest.bench.threads`)."""
    from ray_ingest.bench.threads import cpu_by_group, thread_cpu

    seen = 0
    while seen < warmup:
        seen += next(counts)
    threads0 = thread_cpu() if by_thread else None
    own0 = time.process_time()
    cpu0, t0 = cpu_snapshot(scope=scope), time.perf_counter()
    n = 0
    while n < images:
        n += next(counts)
    seconds = time.perf_counter() - t0
    t = Timing(n, seconds, cpu_delta(cpu0, cpu_snapshot(scope=scope)))
    if by_thread:
        t.process_cpu_seconds = time.process_time() - own0
        t.threads = cpu_by_group(threads0, thread_cpu())
    return t


def timed_stream(make: Callable[[], Iterator[int]]) -> Callable[[int, int], Timing]:
    """A row's run for a stream that this process consumes: a fresh stream per run, timed by
    :func:`time_stream`, closed afterwards (abandoned streams stop their execution)."""

    def run(warmup: int, images: int) -> Timing:
        it = make()
        try:
            return time_stream(it, warmup, images)
        finally:
            close = getattr(it, "close", None)
            if close:
                close()

    return run


class Variant:
    """One row of the study: ``run(warmup, images)`` times one run and returns a Timing."""

    def __init__(self, name: str, group: str, run: Callable[[int, int], Timing], warmup: int,
                 note: str = "", close: Optional[Callable[[], None]] = None):
        self.name, self.group, self.run, self.warmup, self.note = name, group, run, warmup, note
        self.close = close or (lambda: None)
        self.runs: List[float] = []
        self.windows: List[float] = []
        self.cpus: List[float] = []
        #: CPU seconds of the consuming process alone, and per thread group (rows timed
        #: ``by_thread``), scaled to ``images`` like ``cpus``.
        self.process_cpus: List[float] = []
        self.threads: List[Dict[str, float]] = []

    def run_once(self, images: int) -> float:
        """Times one run of ``images`` images after the warm-up; returns images/s."""
        t = self.run(self.warmup, images)
        scale = images / t.images  # normalise a last partial batch away
        self.runs.append(t.seconds * scale)
        self.windows.append(t.seconds)
        self.cpus.append(t.cpu_seconds * scale)
        if t.process_cpu_seconds is not None:
            self.process_cpus.append(t.process_cpu_seconds * scale)
            self.threads.append({k: v * scale for k, v in t.threads.items()})
        gc.collect()
        wait_idle()
        return images / self.runs[-1]

    @property
    def cpu_seconds(self) -> float:
        return statistics.median(self.cpus)

    @property
    def process_cpu_seconds(self) -> Optional[float]:
        return statistics.median(self.process_cpus) if self.process_cpus else None

    @property
    def thread_cpu_seconds(self) -> Dict[str, float]:
        """Per thread group: the median over runs."""
        groups = {g for d in self.threads for g in d}
        return dict(sorted(((g, statistics.median([d.get(g, 0.0) for d in self.threads]))
                            for g in groups), key=lambda kv: -kv[1]))


def measure_round_robin(variants: List[Variant], images: int, repeats: int,
                        show_progress: bool = True) -> None:
    """Runs every variant once per round, ``repeats`` rounds: slow drifts of a shared machine
    then fall on every row alike instead of on whichever ran last. An untimed round first
    starts every row's worker processes and imports (a fresh Ray instance pays seconds of CPU
    for those on its first stream). One progress display counts the runs."""
    from ray_ingest.progress import Progress

    try:
        with Progress("bench", total=len(variants) * (repeats + 1), unit="runs",
                      enabled=show_progress) as bar:
            for v in variants:
                v.run_once(max(v.warmup, 1))
                v.runs.clear()
                v.windows.clear()
                v.cpus.clear()
                v.process_cpus.clear()
                v.threads.clear()
                bar.update()
            for _ in range(repeats):
                for v in variants:
                    v.run_once(images)
                    bar.update()
    finally:
        for v in variants:
            v.close()
