"""A training run's folder under ``--storage-path``: where it is, how many times its worker
group started (attempt markers), its per-epoch history, its TensorBoard logs, and the sample
log a run writes when asked (``--sample-log``)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from typing import Any, Dict, List

from ray_ingest import fs

ATTEMPTS_DIR = "_attempts"
HISTORY_FILE = "history.jsonl"
TENSORBOARD_DIR = "tensorboard"


def run_dir(storage_path: str, name: str) -> str:
    return fs.join(storage_path, name)


def mark_attempt(storage_path: str, name: str, attempt_id: str) -> None:
    """Rank 0 of every (re)started worker group leaves one marker."""
    d = fs.join(run_dir(storage_path, name), ATTEMPTS_DIR)
    fs.makedirs(d)
    fs.write_bytes(fs.join(d, f"{attempt_id}-{uuid.uuid4().hex[:8]}"), b"")


def count_attempts(storage_path: str, name: str, attempt_id: str) -> int:
    d = fs.join(run_dir(storage_path, name), ATTEMPTS_DIR)
    return sum(1 for n in fs.list_dir(d) if n.startswith(attempt_id + "-"))


def tensorboard_dir(storage_path: str, name: str) -> str:
    return fs.join(run_dir(storage_path, name), TENSORBOARD_DIR)


def history_path(storage_path: str, name: str) -> str:
    return fs.join(run_dir(storage_path, name), HISTORY_FILE)


def read_history(path: str) -> List[Dict[str, Any]]:
    """The epochs of a history file (empty if there is none yet)."""
    try:
        text = fs.read_bytes(path).decode()
    except (FileNotFoundError, OSError):
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class SampleLog:
    """``--sample-log PATH``: one JSON line per worker and step, appended as the step is
    trained: ``{"epoch": e, "step": k, "rank": r, "world": W, "attempt": the command's run
    attempt (a --resume is another), "restart": the worker group's restart within it (0: its
    first start), "loss": the rank's mean loss, "ids": [image/filename, ...]}`` (epochs and
    steps from 0). Each line is one ``write`` to a file opened for appending, so
    the workers of one node can share the file; on a cluster each node writes its own file at
    PATH. A step trained again after a restart is logged again."""

    def __init__(self, path: str, rank: int, world: int, attempt: str = "", restart: int = 0):
        self.path, self.rank, self.world, self.attempt = path, rank, world, attempt
        self.restart = restart
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, epoch: int, step: int, batch, loss: float) -> None:
        from ray_ingest.format.keys import FILENAME_COLUMN

        column = batch[FILENAME_COLUMN]
        ids = column.to_pylist() if hasattr(column, "to_pylist") else [
            v.decode() if isinstance(v, bytes) else str(v) for v in column]
        line = json.dumps({"epoch": epoch, "step": step, "rank": self.rank,
                           "world": self.world, "attempt": self.attempt,
                           "restart": self.restart, "loss": loss,
                           "ids": ids}) + "\n"
        os.write(self._fd, line.encode())

    def close(self) -> None:
        os.close(self._fd)


class History:
    """The run's metrics, one JSON line per epoch, in ``<run>/history.jsonl``; written by rank
    0, followed by the driver. Each write replaces the whole file (atomically; object stores
    cannot append), and an epoch trained again after a restart or a resume replaces its line
    and any later ones: one line per epoch, in order."""

    def __init__(self, storage_path: str, name: str):
        fs.makedirs(run_dir(storage_path, name))
        self.path = history_path(storage_path, name)
        self.rows = read_history(self.path)

    def append(self, metrics: Dict[str, Any]) -> None:
        row = {**metrics, "time": time.time()}
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]
        fs.write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.rows).encode())


class TensorBoard:
    """Scalars per epoch under ``<run dir>/tensorboard``, written by rank 0 only.

    The events are written to a local folder: the run's own when the run folder is local,
    otherwise a temporary one whose files are uploaded to the run folder (a URI such as
    ``s3://...``) after every epoch, so ``tensorboard --logdir <run>/tensorboard`` follows the
    run wherever it is stored."""

    def __init__(self, storage_path: str, name: str, enabled: bool):
        self.writer = None
        self.logdir = tensorboard_dir(storage_path, name)
        if not enabled:
            return
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            return
        self._remote = fs.is_uri(self.logdir)
        self._local = (tempfile.mkdtemp(prefix="ray-ingest-tb-") if self._remote
                       else self.logdir)
        self.writer = SummaryWriter(self._local)

    def write(self, metrics: Dict[str, Any]) -> None:
        if self.writer is None:
            return
        step = int(metrics["epoch"])
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and k != "epoch":
                self.writer.add_scalar(k, v, step)
        self.writer.flush()
        self._upload()

    def _upload(self) -> None:
        """Copies every local event file, whole, to the run folder (they are small)."""
        if not self._remote:
            return
        for rel in fs.list_files(self._local):
            with open(os.path.join(self._local, rel), "rb") as f:
                data = f.read()
            fs.write_bytes(fs.join(self.logdir, rel), data)

    def close(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        self._upload()
        if self._remote:
            shutil.rmtree(self._local, ignore_errors=True)
