"""What ``train --resume`` may change and what it may not.

A resumed run loads the latest checkpoint's weights and optimizer into the model this command
builds, and goes on training it on this command's data. That means nothing when the model or
the data are others than the checkpoint's: another framework (another file format), another
architecture or training size (other weights), other classes or the same classes in another
order (every label id would mean another class), other stored images (size, encoding), or a
validation split where there was none or the other way round (the best checkpoint is ranked by
validation accuracy, without one by training loss). These are compared with the checkpoint's
``meta.json`` before Ray starts, and a difference refuses the resume, naming each. Everything
else (epochs, batch size, workers, learning rate, augmentation, the data's path) may change,
except that a checkpoint inside an epoch keeps the global batch size, the seed and the order
(the rest of that epoch's global batches depend on them).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, List

from ray_ingest.errors import CheckpointError
from ray_ingest.format import keys


def _classes(old: List[str], new: List[str]) -> str:
    """Where two class lists first differ, in a few words (lists can be long)."""
    if sorted(old) == sorted(new):
        i = next(i for i, (a, b) in enumerate(zip(old, new)) if a != b)
        return (f"class_names: the same {len(new)} classes in another order (class id {i} is "
                f"{old[i]!r} in the run, {new[i]!r} in this data: every id would mean another "
                "class)")
    if len(old) != len(new):
        return f"class_names: the run has {len(old)} classes, this data {len(new)}"
    i = next(i for i, (a, b) in enumerate(zip(old, new)) if a != b)
    return f"class_names: class id {i} is {old[i]!r} in the run, {new[i]!r} in this data"


def differences(meta: Dict[str, Any], cfg, manifest) -> List[str]:
    """What differs between a run's checkpoint (``meta``: its ``meta.json``) and a command
    that resumes it (``cfg`` on ``manifest``'s data), one phrase each: old, then new. Fields
    that an older checkpoint does not record are not compared."""
    out = []
    if meta.get("framework") not in (None, cfg.framework):
        out.append(f"--framework: the run trained {meta['framework']}, this command "
                   f"{cfg.framework}")
    if meta.get("model") not in (None, cfg.model):
        out.append(f"--model: the run trained {meta['model']}, this command {cfg.model}")
    size = cfg.train_size(manifest)
    if meta.get("image_size") not in (None, size):
        out.append(f"--image-size: the run trained at {meta['image_size']} px, this command "
                   f"at {size} px")
    names = list(manifest.class_names)
    if meta.get("class_names") not in (None, names):
        out.append(_classes(list(meta["class_names"]), names))
    stored = [manifest.height, manifest.width]
    if meta.get("stored_size") not in (None, stored):
        out.append(f"stored size: the run's data holds {_stored(meta['stored_size'])}, this "
                   f"data {_stored(stored)}")
    had_val = meta["validated"] if "validated" in meta else (
        (meta.get("metrics") or {}).get("val_accuracy", 0.0) is not None)
    has_val = manifest.num_records(keys.SPLITS[1]) > 0
    if had_val != has_val:
        out.append("validation split: the run's data " + ("had one, this data has none" if
                   had_val else "had none, this data has one") + " (checkpoints would be "
                   "ranked on two measures)")
    pos = meta.get("position") or {}
    if pos.get("step"):  # inside an epoch: the rest of its order must be the same
        for field, name, value in (("global_batch_size", "--batch-size", cfg.batch_size),
                                   ("seed", "--seed", cfg.seed), ("order", "--order", cfg.order)):
            if meta.get(field) not in (None, value):
                out.append(f"{name}: the run's checkpoint inside epoch {pos['epoch'] + 1} "
                           f"has {meta[field]}, this command {value} (the rest of the "
                           "epoch's global batches would differ)")
    if pos.get("step"):
        from ray_ingest.train.stream import steps_per_epoch

        steps = steps_per_epoch(cfg, manifest.num_records(keys.SPLITS[0]))
        if pos["step"] >= steps:
            out.append(f"--steps-per-epoch: the run's checkpoint is after step {pos['step']} "
                       f"of epoch {pos['epoch'] + 1}, this command's epochs have {steps} "
                       "steps")
    if meta.get("encoding") not in (None, manifest.encoding):
        out.append(f"encoding: the run's data stores {meta['encoding']} records, this data "
                   f"{manifest.encoding}")
    return out


def _stored(size) -> str:
    """``[height, width]`` of a manifest as words: whole images have none."""
    if not size or size[0] is None:
        return "whole images (each its own size)"
    return f"{size[1]}x{size[0]} images"


def check(meta: Dict[str, Any], cfg, manifest, run: str) -> None:
    """Refuses (:class:`CheckpointError`, one line) a resume of ``run`` whose checkpoint
    ``meta`` does not fit ``cfg`` and its data. When only options differ, the message ends
    with the command that does resume the run (the run's own values of those options)."""
    found = differences(meta, cfg, manifest)
    if not found:
        return
    data_differs = any(not d.startswith("--") for d in found)
    if data_differs:
        where = f" ({meta['data']})" if meta.get("data") else ""
        advice = f"resume it on the data it was trained on{where}, or start a new run (--name)"
    else:
        fixed = replace(cfg, framework=meta.get("framework", cfg.framework),
                        model=meta.get("model", cfg.model),
                        image_size=(cfg.image_size if meta.get("image_size") in
                                    (None, cfg.train_size(manifest))
                                    else meta["image_size"]))
        if (meta.get("position") or {}).get("step"):
            fixed = replace(fixed, batch_size=meta.get("global_batch_size", cfg.batch_size),
                            seed=meta.get("seed", cfg.seed), order=meta.get("order", cfg.order),
                            steps_per_epoch=(None if any(d.startswith("--steps-per-epoch")
                                                         for d in found)
                                             else cfg.steps_per_epoch))
        advice = f"resume with: {fixed.command_line()}"
    raise CheckpointError(f"{run}: --resume cannot continue this run: {'; '.join(found)}; "
                          f"{advice}")
