"""A training run's folder under ``--storage-path``: where it is, how many times its worker
group started (attempt markers), and its TensorBoard logs."""

from __future__ import annotations

import os
import tempfile
import uuid
from typing import Any, Dict

from ray_ingest import fs

ATTEMPTS_DIR = "_attempts"


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


class TensorBoard:
    """Scalars per epoch under ``<run dir>/tensorboard`` (local storage; elsewhere a local
    folder named in the log), written by rank 0 only."""

    def __init__(self, storage_path: str, name: str, enabled: bool):
        self.writer = None
        if not enabled:
            return
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            return
        root = run_dir(storage_path, name)
        logdir = (fs.join(root, "tensorboard") if not fs.is_uri(root)
                  else os.path.join(tempfile.gettempdir(), "ray-ingest-tb", name))
        self.writer = SummaryWriter(logdir)
        self.logdir = logdir

    def write(self, metrics: Dict[str, Any]) -> None:
        if self.writer is None:
            return
        step = int(metrics["epoch"])
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and k != "epoch":
                self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
