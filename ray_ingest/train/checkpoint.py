"""Checkpoints: plain numpy arrays and JSON, framework-neutral on disk."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Dict, Optional, Tuple

import numpy as np

CHECKPOINT_ARRAYS = "state.npz"
CHECKPOINT_META = "meta.json"


def report_epoch(metrics: Dict[str, Any], arrays: Optional[Dict[str, np.ndarray]] = None,
                 meta: Optional[Dict[str, Any]] = None) -> None:
    """``ray.train.report`` the epoch's metrics, with a checkpoint when ``arrays`` is given
    (rank 0). The checkpoint is staged in a local temporary folder that Ray Train copies to
    storage before ``report`` returns; the folder is removed afterwards."""
    import ray.train
    from ray.train import Checkpoint

    if arrays is None:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="ray-ingest-ckpt-", ignore_cleanup_errors=True) as d:
        np.savez(os.path.join(d, CHECKPOINT_ARRAYS), **arrays)
        with open(os.path.join(d, CHECKPOINT_META), "w") as f:
            json.dump(meta or {}, f)
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))


def load_checkpoint(checkpoint) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    with checkpoint.as_directory() as d:
        with np.load(os.path.join(d, CHECKPOINT_ARRAYS)) as z:
            arrays = {k: z[k] for k in z.files}
        with open(os.path.join(d, CHECKPOINT_META)) as f:
            meta = json.load(f)
    return arrays, meta
