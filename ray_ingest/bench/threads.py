"""CPU time of each thread of this process (Linux ``/proc/self/task``), grouped by what the
thread is: where a Ray Train worker's feed spends its CPU (the decode threads, the loop's own
thread, Ray Data's iterator threads, Ray's core-worker threads)."""

from __future__ import annotations

import os
import re
import threading
from typing import Dict, Tuple

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(tid: int) -> Tuple[str, float]:
    with open(f"/proc/self/task/{tid}/stat", "rb") as f:
        text = f.read().decode("ascii", "replace")
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return comm, (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def _group(name: str) -> str:
    """A thread's name without its number: threads of one pool count together."""
    return re.sub(r"[-_ ]?\d+(_\d+)?$", "", name.split(" (")[0]) or name


def thread_cpu() -> Dict[int, Tuple[str, float]]:
    """``{thread id: (group, CPU seconds so far)}`` of this process's threads (empty where
    ``/proc`` is not there). Python threads go by their Python name, the rest by their OS
    name; the thread that calls this is ``caller``."""
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return {}
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    names[threading.get_native_id()] = "caller"
    out = {}
    for tid in tids:
        try:
            comm, seconds = _stat(tid)
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
        out[tid] = (_group(names.get(tid, comm)), seconds)
    return out


def cpu_by_group(before: Dict[int, Tuple[str, float]], after: Dict[int, Tuple[str, float]]
                 ) -> Dict[str, float]:
    """CPU seconds per thread group between two :func:`thread_cpu` snapshots, largest first
    (threads that started meanwhile count from zero; those that ended are lost)."""
    groups: Dict[str, float] = {}
    for tid, (group, seconds) in after.items():
        used = seconds - (before[tid][1] if tid in before else 0.0)
        groups[group] = groups.get(group, 0.0) + used
    return dict(sorted(groups.items(), key=lambda kv: -kv[1]))
