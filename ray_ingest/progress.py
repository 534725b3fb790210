"""One progress display per long stage: a live bar on a terminal; in a log (not a terminal), a
line every few seconds with the count, the rate and the time left; a last line when it ends.

    with Progress("convert", total=n, unit="images") as bar:
        for batch in ...:
            bar.update(len(batch))

Thread-safe: ``update`` may be called from any thread.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Dict, List, Optional, TextIO


def plural(n: int, word: str) -> str:
    """``1 shard``, ``2 shards`` (``word`` is the singular; an ``s`` is added)."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _rate(per_second: float) -> str:
    """``1,234/s``; a slow rate keeps two significant digits (``0.27/s``)."""
    if per_second >= 10 or per_second == 0:
        return f"{per_second:,.0f}/s"
    return f"{per_second:.2g}/s"


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    m, s = divmod(seconds, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


class Progress:
    """Progress of one stage of ``total`` units (None: unknown)."""

    def __init__(self, desc: str, total: Optional[int] = None, unit: str = "images", *,
                 stream: Optional[TextIO] = None, interval: Optional[float] = None,
                 enabled: bool = True):
        self.desc, self.total, self.unit = desc, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.live = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (0.2 if self.live else 5.0)
        self.enabled = enabled
        self.count = 0
        self.started = time.monotonic()
        self._last_draw = self.started
        self._lock = threading.Lock()
        self._closed = False

    # -- counting ----------------------------------------------------------------------------
    def update(self, n: int = 1) -> None:
        with self._lock:
            self.count += n
            self._maybe_draw()

    def set(self, count: int) -> None:
        with self._lock:
            self.count = count
            self._maybe_draw()

    def _maybe_draw(self) -> None:
        now = time.monotonic()
        if self.enabled and not self._closed and now - self._last_draw >= self.interval:
            self._last_draw = now
            self._draw(now)

    # -- drawing -----------------------------------------------------------------------------
    def rate(self, now: Optional[float] = None) -> float:
        elapsed = (now or time.monotonic()) - self.started
        return self.count / elapsed if elapsed > 0 else 0.0

    def line(self, now: Optional[float] = None) -> str:
        now = now or time.monotonic()
        rate = self.rate(now)
        if self.total:
            done = min(1.0, self.count / self.total)
            left = (self.total - self.count) / rate if rate > 0 else None
            due = left is not None and self.count < self.total
            eta = f", {_duration(left)} left" if due else ""
            text = (f"{self.count:,}/{self.total:,} {self.unit} ({done:.0%}), "
                    f"{_rate(rate)}{eta}")
            if self.live:
                width = 24
                filled = int(done * width)
                return f"{self.desc} [{'#' * filled}{'.' * (width - filled)}] {text}"
            return f"{self.desc}: {text}"
        return f"{self.desc}: {self.count:,} {self.unit}, {_rate(rate)}"

    def _draw(self, now: float) -> None:
        if self.live:
            self.stream.write("\r\x1b[2K" + self.line(now))
        else:
            self.stream.write(self.line(now) + "\n")
        self.stream.flush()

    def close(self, summary: Optional[str] = None) -> None:
        """Ends the display with one last line (``summary``, or the count, time and rate)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if not self.enabled:
                return
            now = time.monotonic()
            text = summary or (f"{self.desc}: {self.count:,} {self.unit} in "
                               f"{_duration(now - self.started)} ({_rate(self.rate(now))})")
            self.stream.write(("\r\x1b[2K" if self.live else "") + text + "\n")
            self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---- counted in Ray tasks ------------------------------------------------------------------


class _Counter:
    """The count of a :class:`RemoteProgress`, in a Ray actor that tasks anywhere add to."""

    def __init__(self):
        self.count = 0

    def add(self, n: int) -> None:
        self.count += int(n)

    def get(self) -> int:
        return self.count


#: Per process: a counter's actor id -> [count not sent yet, when it last sent].
_PENDING: Dict[str, List[float]] = {}


def add_count(counter, n: int, every: float = 1.0) -> None:
    """Adds ``n`` to a :class:`RemoteProgress` counter from a Ray task, in at most one actor
    call every ``every`` seconds from this process (one call per batch cost the counter's
    actor ~10 % of the run's CPU on two cores). What is not sent yet goes with this process's
    next call; a display that ends well shows its total."""
    if counter is None:
        return
    key = counter._actor_id.hex()
    entry = _PENDING.setdefault(key, [0, 0.0])
    entry[0] += n
    now = time.monotonic()
    if now - entry[1] >= every:
        counter.add.remote(int(entry[0]))
        entry[0], entry[1] = 0, now


class RemoteProgress:
    """A :class:`Progress` fed from Ray tasks on any node of the cluster.

        with RemoteProgress("convert", total=n) as progress:
            ds.map_batches(functools.partial(fn, counter=progress.counter)) ...
            # inside fn, per batch:  add_count(counter, len(batch))

    ``counter`` is a handle of a small actor (no CPU reserved; restarted if its process
    dies, which only loses count); a thread here reads it every ``poll`` seconds and draws.
    Disabled, nothing is started and ``counter`` is None. Leaving the block draws the last
    line (``summary``, or the count, time and rate) and lets the actor go.
    """

    def __init__(self, desc: str, total: Optional[int] = None, unit: str = "images", *,
                 enabled: bool = True, poll: float = 0.5, summary: Optional[str] = None,
                 **kwargs):
        self.bar = Progress(desc, total, unit, enabled=enabled, **kwargs)
        self.poll, self.summary = poll, summary
        self.counter = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "RemoteProgress":
        if self.bar.enabled:
            import ray

            actor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(_Counter)
            self.counter = actor.remote()
            self._thread = threading.Thread(target=self._follow, name="progress", daemon=True)
            self._thread.start()
        return self

    def _read(self, timeout: float) -> None:
        import ray

        try:
            count = ray.get(self.counter.get.remote(), timeout=timeout)
        except Exception:  # noqa: BLE001 - a display: a late or restarted counter is skipped
            return
        # Retried tasks count twice: the display never runs past the total.
        self.bar.set(min(count, self.bar.total) if self.bar.total else count)

    def _follow(self) -> None:
        while not self._stop.wait(self.poll):
            self._read(timeout=max(1.0, 4 * self.poll))

    def __exit__(self, exc_type, *exc) -> None:
        if self.counter is None:
            self.bar.close(self.summary)
            return
        self._stop.set()
        self._thread.join()
        if exc_type is None:
            self._read(timeout=10.0)
            if self.bar.total:  # done: tasks may still hold counts they had not sent
                self.bar.set(self.bar.total)
        self.bar.close(self.summary if exc_type is None else None)
        # Not killed: a task still adding to it (a failed run's stragglers) would log a retry
        # per call. The actor ends when the last handle (the tasks' and the dataset's) goes.
        self.counter = None
