"""One writer per output folder: the lock a conversion (or a
:class:`~ray_ingest.format.writer.ShardSetWriter`) takes before it does any work.

The lock is a small JSON file in OUT (:data:`~ray_ingest.format.manifest.LOCK_NAME`) naming
its holder: host, process id, run id, start time, and a lease that the holder refreshes from a
thread while it runs. Locally it is created exclusively (written under a temporary name, then
hard-linked into place, which fails if a lock exists, so it is never seen half-written). Object
stores have no exclusive create: the lock object is written, then read back after a moment to
confirm that this run's write is the one that stayed.

A second conversion into the same OUT fails at once naming the holder. A lock is stale when
its process is gone (same host, dead pid) or its lease ran out (the holder stopped refreshing
it for ``lease_s`` seconds: killed on another host, or frozen); a stale lock is taken over
with a warning. A holder that finds its lock taken over (it was frozen past its lease) refuses
to commit (:func:`ensure_owner`).

Clocks of the hosts that share OUT are assumed to agree within the lease.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Optional

from ray_ingest import fs
from ray_ingest.errors import ConversionError
from ray_ingest.format.manifest import LOCK_NAME

logger = logging.getLogger("ray_ingest")

#: Seconds a lock stays valid without a refresh; the holder refreshes it every quarter.
LEASE_S = 60.0
#: Object stores: seconds between writing the lock object and reading it back.
SETTLE_S = 1.0
_ATTEMPTS = 5


@dataclass(frozen=True)
class LockInfo:
    """What a lock file holds."""

    host: str
    pid: int
    run_id: str
    started: float  # seconds since the epoch
    refreshed: float
    lease_s: float

    def describe(self) -> str:
        return (f"host {self.host}, pid {self.pid}, run {self.run_id}, started "
                f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(self.started))}")

    def stale_because(self, now: float) -> Optional[str]:
        """Why this lock no longer holds (None while it does)."""
        if self.host == socket.gethostname() and not _pid_alive(self.pid):
            return f"process {self.pid} of this host is gone"
        if now - self.refreshed > self.lease_s:
            return (f"not refreshed for {now - self.refreshed:.0f} s, over its lease of "
                    f"{self.lease_s:g} s")
        return None

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self)) + "\n").encode()

    @classmethod
    def parse(cls, raw: bytes) -> "LockInfo":
        data = json.loads(raw)
        return cls(str(data["host"]), int(data["pid"]), str(data["run_id"]),
                   float(data["started"]), float(data["refreshed"]), float(data["lease_s"]))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def lock_path(out: str) -> str:
    return fs.join(out, LOCK_NAME)


def read_lock(out: str) -> Optional[LockInfo]:
    """The lock of ``out`` (None if there is none). An unreadable lock file is an error: it
    is not ours to judge, and never half-written by us."""
    path = lock_path(out)
    try:
        raw = fs.read_bytes(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return LockInfo.parse(raw)
    except (ValueError, KeyError, TypeError) as e:
        raise ConversionError(
            f"{path}: unreadable lock file ({e}); remove it if no conversion is writing "
            f"{out}") from None


def ensure_owner(out: str, run_id: str) -> None:
    """Raises :class:`ConversionError` unless run ``run_id`` holds the lock of ``out``."""
    info = read_lock(out)
    if info is None or info.run_id != run_id:
        holder = "nobody" if info is None else info.describe()
        raise ConversionError(
            f"{out}: this conversion (run {run_id}) lost its lock, now held by {holder} (was "
            "this process paused past its lease?); not committing")


class OutputLock:
    """``with OutputLock(out, run_id):`` holds the lock of ``out`` for the block.

    Entering creates ``out`` if needed (a file in its place is an error) and takes the lock
    or raises :class:`ConversionError` naming its holder; leaving (also on an error or
    Ctrl-C) releases it, and removes ``out`` again if this run created it and left nothing.
    """

    def __init__(self, out: str, run_id: Optional[str] = None, *, lease_s: float = LEASE_S,
                 settle_s: float = SETTLE_S):
        self.out = fs.normalize(out)
        self.path = lock_path(self.out)
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.lease_s = float(lease_s)
        self.settle_s = float(settle_s)
        self._local = not fs.is_uri(self.out)
        self._created_out = False
        self._info: Optional[LockInfo] = None
        self._stop = threading.Event()
        self._refresher: Optional[threading.Thread] = None

    # -- taking it ------------------------------------------------------------------------
    def acquire(self) -> None:
        if fs.exists(self.out) and not fs.isdir(self.out):
            raise ConversionError(f"{self.out}: exists and is not a directory")
        self._created_out = not fs.exists(self.out)
        try:
            self._acquire()
        except BaseException:
            self._remove_out_if_created()
            raise
        self._refresher = threading.Thread(target=self._refresh_loop, daemon=True,
                                           name=f"ray-ingest-lock-{self.run_id}")
        self._refresher.start()

    def _acquire(self) -> None:
        fs.makedirs(self.out)
        for _ in range(_ATTEMPTS):
            now = time.time()
            mine = LockInfo(socket.gethostname(), os.getpid(), self.run_id, now, now,
                            self.lease_s)
            try:
                if self._create(mine):
                    self._info = mine
                    return
            except FileNotFoundError:  # OUT was removed by a run that failed: make it again
                fs.makedirs(self.out)
                continue
            held = read_lock(self.out)
            if held is None:
                continue  # released in between: try again
            why = held.stale_because(time.time())
            if why is None:
                raise ConversionError(
                    f"{self.out} is being written by another conversion ({held.describe()}); "
                    f"wait for it to end (its lock is {self.path})")
            logger.warning("taking over the lock of %s from %s: %s", self.out, held.describe(),
                           why)
            self._remove_stale(held)
        raise ConversionError(f"{self.path}: could not take the lock ({_ATTEMPTS} attempts, "
                              "other conversions kept taking it)")

    def _create(self, info: LockInfo) -> bool:
        """Creates the lock file if there is none; True if this run now holds it."""
        if self._local:
            tmp = f"{self.path}.tmp-{uuid.uuid4().hex[:12]}"
            try:
                fs.write_bytes(tmp, info.to_bytes())
            except BaseException:
                try:  # a disk that filled up mid-write: leave nothing behind
                    fs.delete_file(tmp)
                except OSError:
                    pass
                raise
            try:
                os.link(tmp, self.path)  # atomic, and fails if a lock exists
                return True
            except FileExistsError:
                return False
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
                return self._create_exclusive(info)  # a file system without hard links
            finally:
                os.remove(tmp)
        if fs.exists(self.path):
            return False
        fs.write_bytes(self.path, info.to_bytes())
        time.sleep(self.settle_s)  # a racing writer's object replaces ours in this window
        held = read_lock(self.out)
        return held is not None and held.run_id == info.run_id

    def _create_exclusive(self, info: LockInfo) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(info.to_bytes())
        return True

    def _remove_stale(self, stale: LockInfo) -> None:
        if not self._local:
            fs.delete_file(self.path)
            return
        # Move it aside first, and check that what moved is the lock judged stale: another
        # run may have taken it over and locked anew in between.
        aside = f"{self.path}.stale-{self.run_id}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            moved = LockInfo.parse(fs.read_bytes(aside))
        except (ValueError, KeyError, TypeError):
            moved = None
        if moved is None or moved.run_id != stale.run_id:
            try:
                os.link(aside, self.path)  # put a live lock back, unless one is there again
            except OSError:
                pass  # its holder finds it gone at its next refresh and will not commit
        os.remove(aside)

    # -- holding it -----------------------------------------------------------------------
    def refresh(self) -> None:
        """Renews the lease (the refresher thread calls this every quarter lease)."""
        ensure_owner(self.out, self.run_id)
        info = LockInfo(**{**asdict(self._info), "refreshed": time.time()})
        fs.write_atomic(self.path, info.to_bytes())
        self._info = info

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            try:
                self.refresh()
            except ConversionError as e:
                logger.error("%s", e)
                return
            except OSError as e:  # a passing storage error: try again next time
                logger.warning("could not refresh the lock %s: %s", self.path, e)

    # -- giving it back -------------------------------------------------------------------
    def release(self) -> None:
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join()
            self._refresher = None
        try:
            held = read_lock(self.out)
        except ConversionError:
            held = None
        if held is not None and held.run_id == self.run_id:
            fs.delete_file(self.path)
        self._info = None
        self._remove_out_if_created()

    def _remove_out_if_created(self) -> None:
        if not self._created_out or fs.list_dir(self.out):
            return
        try:
            if self._local:
                os.rmdir(self.out)  # only if still empty: another run may be starting
            else:
                fs.delete_dir(self.out)
        except OSError:
            pass

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
