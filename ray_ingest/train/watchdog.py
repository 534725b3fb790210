"""No silent hangs: a per-worker watchdog that fails a training run whose progress stops.

The training loop calls :meth:`StallWatchdog.tick` at every step, validation batch and report.
A thread checks that the count advances; when it has not for ``timeout`` seconds, the watchdog
writes a dump of every thread's Python stack to ``<run>/_stalls/<attempt>-rank<k>.txt``
(through :mod:`ray_ingest.fs`, so object storage works too), prints it to the worker's log, and
ends the worker process. The driver then finds the dumps and raises
:class:`~ray_ingest.errors.TrainingStalledError` naming each rank and where it waits.

A stuck collective stops every rank at about the same time, but the first rank to exit turns
the others' waits into connection errors. So a firing watchdog first leaves a flag that the
other ranks' watchdogs look for: they dump their own stacks at once, and every rank waits a
short grace period before exiting.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import tempfile
import threading
import time
import traceback
from typing import Callable, List, Optional

from ray_ingest import fs

STALLS_DIR = "_stalls"
FLAG_SUFFIX = ".stalled"
#: Exit status of a worker ended by its watchdog.
STALL_EXIT_CODE = 75


def stalls_dir(run: str) -> str:
    return fs.join(run, STALLS_DIR)


def dump_name(attempt_id: str, rank: int) -> str:
    return f"{attempt_id}-rank{rank}.txt"


def innermost_frames(frame, count: int = 4) -> List[str]:
    """``file:line in function`` of the ``count`` innermost frames of ``frame``, innermost
    last (what a one-line summary of where a thread waits needs)."""
    stack = traceback.extract_stack(frame)[-count:]
    return [f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}" for f in stack]


class StallWatchdog:
    """Ends this worker when its progress count stops for ``timeout`` seconds (0: off)."""

    def __init__(self, run: str, attempt_id: str, rank: int, timeout: float, *,
                 poll: Optional[float] = None,
                 exit_fn: Callable[[int], None] = os._exit):
        self.run, self.attempt_id, self.rank, self.timeout = run, attempt_id, rank, timeout
        self.poll = poll if poll is not None else min(5.0, max(0.2, timeout / 20))
        self.grace = min(30.0, max(2.0, timeout / 4))
        self.exit_fn = exit_fn
        self.progress = 0
        self.where = "starting"
        self._last = time.monotonic()
        self._started = time.time()
        self._watched = threading.get_ident()  # the thread that runs the training loop
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.fired = False

    def tick(self, where: str = "") -> None:
        self.progress += 1
        self._last = time.monotonic()
        if where:
            self.where = where

    def start(self) -> "StallWatchdog":
        if self.timeout and self.timeout > 0:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="ray-ingest-stall-watchdog")
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "StallWatchdog":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the watching thread -----------------------------------------------------------------
    def _flag(self) -> str:
        return fs.join(stalls_dir(self.run), self.attempt_id + FLAG_SUFFIX)

    def _other_rank_stalled(self) -> bool:
        """Whether another rank of this worker group fired (a flag written since this worker
        started: one left by an earlier, restarted group does not count)."""
        try:
            written = float(fs.read_bytes(self._flag()).decode())
        except FileNotFoundError:
            return False
        except Exception:  # noqa: BLE001 - storage hiccups must not end a healthy run
            return False
        return written >= self._started - 5.0  # tolerates small clock skew between hosts

    def _run(self) -> None:
        seen = self.progress
        while not self._stop.wait(self.poll):
            if self.progress != seen:
                seen = self.progress
                continue
            idle = time.monotonic() - self._last
            if idle >= self.timeout:
                self._fire(idle, first=True)
                return
            if idle >= self.poll and self._other_rank_stalled():
                self._fire(idle, first=False)
                return

    def report(self, idle: float) -> str:
        """The dump: a summary of where the training thread waits, then every thread's stack."""
        frame = sys._current_frames().get(self._watched)
        lines = [f"rank {self.rank}: no training progress for {idle:.0f} s "
                 f"(last: {self.where}, {self.progress} steps counted)"]
        if frame is not None:
            lines.append("training thread waits in: " + " -> ".join(innermost_frames(frame)))
            lines.append("")
            lines.append("training thread:")
            lines += [x.rstrip("\n") for x in traceback.format_stack(frame)]
        with tempfile.TemporaryFile("w+") as f:
            faulthandler.dump_traceback(f, all_threads=True)
            f.seek(0)
            lines += ["", "all threads (faulthandler):", f.read()]
        return "\n".join(lines)

    def _fire(self, idle: float, first: bool) -> None:
        self.fired = True
        text = self.report(idle)
        print(text, file=sys.stderr, flush=True)
        try:
            d = stalls_dir(self.run)
            fs.makedirs(d)
            fs.write_atomic(fs.join(d, dump_name(self.attempt_id, self.rank)), text.encode())
            if first:
                fs.write_atomic(self._flag(), repr(time.time()).encode())
        except Exception as e:  # noqa: BLE001 - the exit below matters more than the file
            print(f"rank {self.rank}: could not write the stall dump: {e}", file=sys.stderr,
                  flush=True)
        # Give the other ranks' watchdogs time to see the flag and dump their own stacks.
        if not self._stop.wait(self.grace):
            self.exit_fn(STALL_EXIT_CODE)


def read_stall_dumps(run: str, attempt_id: str) -> List[str]:
    """The dumps the workers of this fit left, rank order."""
    d = stalls_dir(run)
    names = sorted((n for n in fs.list_dir(d)
                    if n.startswith(attempt_id + "-rank") and n.endswith(".txt")),
                   key=lambda n: int(n[len(attempt_id) + 5:-4]))
    out = []
    for n in names:
        try:
            out.append(fs.read_bytes(fs.join(d, n)).decode("utf-8", "replace"))
        except FileNotFoundError:
            pass
    return out


def stall_summary(run: str, attempt_id: str, timeout: float) -> Optional[str]:
    """One message for the driver from the dumps (None: no worker stalled)."""
    dumps = read_stall_dumps(run, attempt_id)
    if not dumps:
        return None
    parts = []
    for text in dumps:
        lines = text.splitlines()
        head = lines[0] if lines else "a rank stalled"
        where = next((x for x in lines if x.startswith("training thread waits in: ")), "")
        parts.append(head + ("; " + where if where else ""))
    return (f"training stalled (no progress for --stall-timeout {timeout:g} s) and was "
            "stopped. " + " | ".join(parts) + f". Full stack dumps: {stalls_dir(run)}")
