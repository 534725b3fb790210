"""Checkpoints: the model in its framework's standard format, the optimizer's state, ``meta.json``.

A checkpoint folder holds

* ``model.keras`` (TensorFlow/Keras) or ``model.pt2`` (PyTorch, a ``torch.export`` program):
  uint8 images ``[N, H, W, 3]`` as stored in the shards in, logits out, the evaluation
  transform inside; loadable without this package (``keras.models.load_model``,
  ``torch.export.load(...).module()``);
* ``optimizer.npz`` (Keras: the optimizer's variables) or ``optimizer.pt`` (torch: the
  optimizer's and the learning-rate schedule's ``state_dict``), for resuming;
* ``meta.json``: epoch (the epochs completed), ``position`` (the next global batch:
  ``{"epoch", "step"}``; a checkpoint inside an epoch has ``step > 0``), the epoch's metrics
  (none inside an epoch), framework, architecture, class names, sizes, the data's encoding and
  path, and what the position depends on (order, seed, global batch size).

The backends write and read the framework files (``save_state`` / ``load_state``); this module
stages and reports a checkpoint, finds a run's best (validation accuracy) and latest
checkpoints from the folders themselves, writes the pointers ``best.json`` / ``latest.json``
into the run folder, and resolves what a user names as a model.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import tempfile
import time
import zipfile
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ray_ingest import fs
from ray_ingest.errors import CheckpointError
from ray_ingest.format import keys

MODEL_FILES = {"tf": "model.keras", "torch": "model.pt2"}
OPTIMIZER_FILES = {"tf": "optimizer.npz", "torch": "optimizer.pt"}
META_FILE = "meta.json"
#: Ray Train names each checkpoint folder of a run ``checkpoint_<time>``.
CHECKPOINT_PREFIX = "checkpoint_"
#: ``<run>/best.json`` and ``<run>/latest.json`` name the run's best and latest checkpoints.
POINTERS = ("best", "latest")
#: The metric that ranks checkpoints (higher is better; the later one wins a tie)...
SCORE = "val_accuracy"
#: ... and, in a run on data without a validation split, the training loss (lower is better).
SCORE_WITHOUT_VALIDATION = "loss"


def score_order(validated: bool) -> Tuple[str, str]:
    """Ray Train's ``(checkpoint_score_attribute, checkpoint_score_order)`` of a run on data
    with (``validated``) or without a validation split: the same ranking as :func:`rank`."""
    return (SCORE, "max") if validated else (SCORE_WITHOUT_VALIDATION, "min")


def rank(info: Dict[str, Any]) -> Tuple[bool, float, int]:
    """How a checkpoint's ``meta.json`` ranks (the greatest is the best): by validation
    accuracy; an epoch without validation (no validation split) by its training loss, below
    every validated one; the later epoch on a tie. A checkpoint inside an epoch (no metrics)
    ranks last."""
    m = info.get("metrics") or {}
    if m.get(SCORE) is not None:
        return True, float(m[SCORE]), info["epoch"]
    return False, -float(m.get(SCORE_WITHOUT_VALIDATION, math.inf)), info["epoch"]


def checkpoint_meta(cfg, manifest, metrics: Dict[str, Any],
                    position: Optional[Dict[str, int]] = None) -> Dict[str, Any]:
    """What ``meta.json`` says about the model of a checkpoint: of an epoch's end (``metrics``
    of the epoch) or, with ``position``, of a step inside an epoch."""
    position = position or {"epoch": int(metrics["epoch"]), "step": 0}
    return {
        "epoch": int(position["epoch"]),
        "position": {"epoch": int(position["epoch"]), "step": int(position["step"])},
        "order": cfg.order,
        "seed": cfg.seed,
        "validated": manifest.num_records(keys.SPLITS[1]) > 0,
        "global_batch_size": cfg.batch_size,
        "framework": cfg.framework,
        "model": cfg.model,
        "model_file": MODEL_FILES[cfg.framework],
        "class_names": list(manifest.class_names),
        "image_size": cfg.train_size(manifest),
        "stored_size": [manifest.height, manifest.width],
        "encoding": manifest.encoding,
        "data": cfg.data,
        "input": ("uint8 [N, S, S, 3] RGB images centre-cropped to image_size (as "
                  "CenterCrop(image_size) gives them)" if manifest.variable_size else
                  "uint8 [N, H, W, 3] RGB images (any H and W: resized to image_size inside)"),
        "output": "float32 logits [N, len(class_names)]",
        "metrics": metrics,
    }


def report_epoch(metrics: Dict[str, Any], save: Optional[Callable[[str], None]] = None,
                 meta: Optional[Dict[str, Any]] = None) -> None:
    """``ray.train.report`` the epoch's metrics, with a checkpoint when ``save`` is given
    (rank 0): ``save(folder)`` writes the framework's files, then ``meta.json``. The checkpoint
    is staged in a local temporary folder that Ray Train copies to storage before ``report``
    returns; the folder is removed afterwards."""
    import ray.train
    from ray.train import Checkpoint

    if save is None:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="ray-ingest-ckpt-", ignore_cleanup_errors=True) as d:
        save(d)
        # The files and their sizes: a folder that lacks one (copied in part when its worker
        # died) is not a checkpoint.
        files = {os.path.relpath(os.path.join(r, n), d).replace(os.sep, "/"):
                 os.path.getsize(os.path.join(r, n)) for r, _, ns in os.walk(d) for n in ns}
        with open(os.path.join(d, META_FILE), "w") as f:
            json.dump({**(meta or {}), "files": files}, f, indent=1)
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))


def position_of(meta: Dict[str, Any]) -> Tuple[int, int]:
    """``(epoch, step)`` of the next global batch after a checkpoint (one without a position,
    of an older layout: the start of the epoch after it)."""
    pos = meta.get("position") or {"epoch": meta["epoch"], "step": 0}
    return int(pos["epoch"]), int(pos["step"])


def restore(checkpoint, load: Callable[[str], None]) -> Tuple[int, int]:
    """Loads a Ray Train checkpoint with ``load(folder)``; returns its :func:`position_of`."""
    with checkpoint.as_directory() as d:
        with open(os.path.join(d, META_FILE)) as f:
            meta = json.load(f)
        load(d)
    return position_of(meta)


def newest(given, run: str):
    """The checkpoint to go on from, as ``(checkpoint, position)``: ``given`` (the last one
    Ray Train registered, or None) with position None, or a later complete checkpoint folder
    of the run (``run``) that a worker wrote before it died and before Ray Train registered it
    (it polls the workers every few seconds), with its :func:`position_of`. Every complete
    checkpoint of a run is a state of the same deterministic sequence, so the later one only
    saves a replay; the workers go on from it only if all of them found it
    (:func:`agreed`)."""
    from ray.train import Checkpoint

    found = find_checkpoints(run)["latest"]
    if found is None:
        return given, None
    if given is not None:
        name = posixpath.basename(str(given.path).rstrip("/"))
        mine = _info(fs.join(run, name))
        if mine is None or position_of(mine) >= position_of(found):
            return given, None
    storage, inner = fs.resolve(found["checkpoint"])
    return Checkpoint(path=inner, filesystem=storage), position_of(found)


def agreed(position: Optional[Tuple[int, int]], world: int, all_reduce: Callable) -> bool:
    """Whether every worker found the same later checkpoint (``position``: this worker's, or
    None): one all-reduce of the count, the positions and their squares, which equal ``world``
    times this worker's only when all are the same. Every worker calls it, and all get the
    same answer."""
    if world <= 1:
        return position is not None
    e, k = position or (0, 0)
    mine = np.asarray([float(position is not None), e, k, e * e, k * k], dtype=np.float64)
    sums = np.asarray(all_reduce(mine.tolist()), dtype=np.float64)
    return bool(sums[0] == world and np.allclose(sums[1:], world * mine[1:]))


class Schedule:
    """When a worker checkpoints inside an epoch: after every ``every_steps``-th global step
    of the run, or when ``every_minutes`` have passed since the last checkpoint (rank 0's
    clock, shared with an all-reduce so that every worker reports at the same step). Never at
    an epoch's last step, whose checkpoint comes with the epoch's report."""

    def __init__(self, every_steps: Optional[int], every_minutes: Optional[float],
                 rank: int, all_reduce: Callable):
        self.every_steps, self.rank, self.all_reduce = every_steps, rank, all_reduce
        self.seconds = every_minutes * 60.0 if every_minutes else None
        self.last = time.monotonic()

    def due(self, epoch: int, step: int, steps_per_epoch: int) -> bool:
        if step + 1 >= steps_per_epoch:
            return False
        done = epoch * steps_per_epoch + step + 1
        if self.every_steps and done % self.every_steps == 0:
            return True
        if self.seconds is None:
            return False
        late = float(self.rank == 0 and time.monotonic() - self.last >= self.seconds)
        return bool(self.all_reduce([late])[0] > 0)

    def reset(self) -> None:
        self.last = time.monotonic()


def step_metrics(epoch: int, step: int, validated: bool) -> Dict[str, Any]:
    """What a checkpoint inside an epoch reports to Ray Train: its position, and the ranking
    metric at its worst, so that Ray Train keeps it as the latest checkpoint, never as the
    best (the best is an epoch's)."""
    worst = {SCORE: -1.0} if validated else {SCORE_WITHOUT_VALIDATION: math.inf}
    return {"epoch": epoch, "step": step, "mid_epoch": True, **worst}


def _info(folder: str) -> Optional[Dict[str, Any]]:
    try:
        meta = json.loads(fs.read_bytes(fs.join(folder, META_FILE)))
        if "files" in meta:
            sizes = fs.file_sizes(folder)
            if any(sizes.get(n) != size for n, size in meta["files"].items()):
                return None  # copied in part
    except (FileNotFoundError, OSError, ValueError):
        return None  # being written or deleted
    if "model_file" not in meta:  # an older layout (state.npz): no portable model
        return {**meta, "checkpoint": folder, "model_path": None}
    return {**meta, "checkpoint": folder, "model_path": fs.join(folder, meta["model_file"])}


def find_checkpoints(run: str) -> Dict[str, Optional[Dict[str, Any]]]:
    """``{"best": info, "latest": info}`` of the run folder ``run`` (``None`` without
    checkpoints): each checkpoint's ``meta.json`` plus ``checkpoint`` (its folder) and
    ``model_path`` (its model file). Read from the folders, so it holds however the run ended.
    Latest: the furthest position (epoch, step); best: by :func:`rank` (the one Ray Train's ``CheckpointConfig``
    of :func:`score_order` keeps)."""
    found = [i for i in (_info(fs.join(run, n)) for n in fs.list_dir(run)
                         if n.startswith(CHECKPOINT_PREFIX)) if i is not None]
    if not found:
        return {"best": None, "latest": None}
    return {"best": max(found, key=rank), "latest": max(found, key=position_of)}


def remove_unretained(run: str, retained) -> List[str]:
    """Removes the checkpoint folders of ``run`` that Ray Train does not retain (``retained``:
    the folder names of its result's checkpoints): those a worker wrote and died before Ray
    Train registered them. Returns the names removed."""
    keep = {posixpath.basename(str(p).rstrip("/")) for p in retained}
    gone = [n for n in fs.list_dir(run) if n.startswith(CHECKPOINT_PREFIX) and n not in keep
            and fs.isdir(fs.join(run, n))]
    for n in gone:
        fs.delete_dir(fs.join(run, n))
    return gone


def write_pointers(run: str, found: Dict[str, Optional[Dict[str, Any]]]) -> None:
    """``<run>/best.json`` and ``<run>/latest.json`` (each replaced atomically)."""
    for name in POINTERS:
        if found.get(name) is not None:
            fs.write_atomic(pointer_path(run, name),
                            json.dumps(found[name], indent=1).encode())


def pointer_path(run: str, name: str) -> str:
    return fs.join(run, f"{name}.json")


def resolve_model(path: str) -> Tuple[str, Optional[Dict[str, Any]]]:
    """``(model file, its checkpoint's meta or None)`` for what a user names as a model: a
    model file, a checkpoint folder, a run folder (its best checkpoint) or a pointer file
    (``best.json`` / ``latest.json``)."""
    path = fs.normalize(path)
    if not fs.exists(path):
        raise CheckpointError(f"{path}: no such model file or folder")
    if fs.isdir(path):
        if fs.exists(fs.join(path, META_FILE)):
            info = _info(path)
        elif fs.exists(pointer_path(path, "best")):
            info = json.loads(fs.read_bytes(pointer_path(path, "best")))
        else:
            raise CheckpointError(f"{path}: neither a checkpoint folder ({META_FILE}) nor a run "
                                  "folder (best.json); name a model file, a checkpoint or a run")
        if info is None or not info.get("model_path"):
            raise CheckpointError(f"{path}: the checkpoint holds no portable model (an older "
                                  "layout); train again to get one")
        return info["model_path"], info
    if path.endswith(".json"):
        info = json.loads(fs.read_bytes(path))
        if "model_path" not in info:
            raise CheckpointError(f"{path}: not a best.json/latest.json pointer of a run")
        return info["model_path"], info
    folder = path.rsplit("/", 1)[0] if fs.is_uri(path) else os.path.dirname(path)
    info = _info(folder) if fs.exists(fs.join(folder, META_FILE)) else None
    return path, info


def detect_framework(local_path: str) -> str:
    """``"tf"`` for a Keras ``.keras`` file, ``"torch"`` for a ``torch.export`` program, from
    the file's contents (both are zip archives)."""
    try:
        with zipfile.ZipFile(local_path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{local_path}: not a saved model (a Keras .keras file or a "
                              f"torch.export .pt2 program): {e}") from None
    if "config.json" in names and "metadata.json" in names:
        return "tf"
    if any(n.endswith("/archive_format") for n in names):
        return "torch"
    raise CheckpointError(f"{local_path}: a zip archive, but neither a Keras .keras file nor a "
                          "torch.export .pt2 program")
