"""``ray-ingest evaluate``: a saved model on a split of a conversion output.

The model is a checkpoint's portable file (Keras ``model.keras`` or a ``torch.export``
``model.pt2``, told apart by their contents), loaded the way a user would load it anywhere:
uint8 images as stored in, logits out. The split streams through our reader; the result is the
accuracy, the accuracy of each class and the confusion matrix, printed as a table and written
as a JSON file and a PNG.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from ray_ingest import fs
from ray_ingest.errors import CheckpointError, ConfigError
from ray_ingest.format import keys
from ray_ingest.format.manifest import read_manifest
import ray_ingest.train.checkpoint as checkpoint


@dataclass
class Evaluation:
    model: str
    data: str
    split: str
    framework: str
    class_names: List[str]
    #: ``confusion[i, j]``: images of class ``i`` predicted as class ``j``.
    confusion: np.ndarray
    json_path: str = ""
    png_path: str = ""

    @property
    def images(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion)) / max(1, self.images)

    @property
    def per_class(self) -> List[Dict[str, Any]]:
        rows = []
        for i, name in enumerate(self.class_names):
            n = int(self.confusion[i].sum())
            correct = int(self.confusion[i, i])
            rows.append({"class": name, "images": n, "correct": correct,
                         "accuracy": correct / n if n else None})
        return rows

    def to_dict(self) -> Dict[str, Any]:
        return {"model": self.model, "data": self.data, "split": self.split,
                "framework": self.framework, "images": self.images, "accuracy": self.accuracy,
                "per_class": self.per_class, "class_names": self.class_names,
                "confusion": self.confusion.tolist()}

    def table(self) -> str:
        width = max(5, *(len(n) for n in self.class_names))
        lines = [f"{'class'.ljust(width)}  {'images':>7}  {'correct':>7}  {'accuracy':>8}"]
        for r in self.per_class:
            acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
            lines.append(f"{r['class'].ljust(width)}  {r['images']:>7}  {r['correct']:>7}  "
                         f"{acc:>8}")
        lines.append(f"{'all'.ljust(width)}  {self.images:>7}  "
                     f"{int(np.trace(self.confusion)):>7}  {self.accuracy:>8.3f}")
        return "\n".join(lines)


def load_model(path: str) -> Callable[[np.ndarray], np.ndarray]:
    """``predict(uint8[N, H, W, 3]) -> float32 logits[N, C]`` for a local model file, either
    framework, detected from the file."""
    framework = checkpoint.detect_framework(path)
    if framework == "tf":
        import keras

        model = keras.models.load_model(path)
        return lambda images: np.asarray(model.predict_on_batch(images), np.float32)
    import torch

    module = torch.export.load(path).module()

    def predict(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            # Batches can be read-only views of Ray's object store; torch wants them writable.
            x = torch.from_numpy(np.require(images, np.uint8, ["C", "W"]))
            return module(x).float().numpy()

    return predict


def eval_crop(manifest, meta):
    """Whole-image shards are centre-cropped while decoding, to the model's training size
    (its ``meta.json``; without one, the default whole-image size); None for fixed-size
    shards."""
    if not manifest.variable_size:
        return None
    from ray_ingest.read.crop import CenterCrop
    from ray_ingest.train.config import WHOLE_IMAGE_SIZE

    return CenterCrop(int((meta or {}).get("image_size") or WHOLE_IMAGE_SIZE))


def evaluate(data: str, model: str, split: str = keys.SPLITS[1], batch_size: int = 256,
             out: Optional[str] = None) -> Evaluation:
    """Evaluates the model that ``model`` names (a model file, a checkpoint folder, a run
    folder — its best checkpoint — or ``best.json`` / ``latest.json``) on ``split`` of the
    conversion output ``data``. Writes ``evaluation-<split>.json`` and ``confusion-<split>.png``
    to ``out`` (default: the model's folder when it is local, else the current folder)."""
    from ray_ingest.read.api import read_records

    if split not in keys.SPLITS:
        raise ConfigError(f"split must be one of {keys.SPLITS}, got {split!r}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    data = fs.normalize(data)
    manifest = read_manifest(data)
    if manifest.num_records(split) == 0:
        other = [s for s in keys.SPLITS if s != split and manifest.num_records(s)]
        raise ConfigError(f"{data}: the {split} split holds no records"
                          + (f"; evaluate on --split {other[0]}" if other else ""))
    names = manifest.class_names
    model_path, meta = checkpoint.resolve_model(model)
    if meta is not None and meta.get("class_names") not in (None, names):
        raise CheckpointError(
            f"{model_path}: the model was trained on the classes {meta['class_names']}, "
            f"{data} holds {names}")
    staged = None
    local = model_path
    if fs.is_uri(model_path):
        staged = tempfile.mkdtemp(prefix="ray-ingest-model-")
        local = os.path.join(staged, model_path.rsplit("/", 1)[-1])
        with open(local, "wb") as f:
            f.write(fs.read_bytes(model_path))
    try:
        framework = checkpoint.detect_framework(local)
        predict = load_model(local)
        confusion = np.zeros((len(names), len(names)), np.int64)
        ds = read_records(data, split, block_rows=batch_size,
                          crop=eval_crop(manifest, meta))
        for batch in ds.iter_batches(batch_size=batch_size, batch_format="numpy"):
            logits = predict(batch[keys.IMAGE_COLUMN])
            if logits.ndim != 2 or logits.shape[1] != len(names):
                raise CheckpointError(f"{model_path}: the model gives logits of shape "
                                      f"{tuple(logits.shape)}; {data} has {len(names)} classes")
            labels = np.asarray(batch[keys.LABEL_COLUMN], np.int64)
            pred = logits.argmax(axis=1)
            confusion += np.bincount(labels * len(names) + pred,
                                     minlength=len(names) ** 2).reshape(len(names), len(names))
    finally:
        if staged:
            shutil.rmtree(staged, ignore_errors=True)
    result = Evaluation(model=model_path, data=data, split=split, framework=framework,
                        class_names=names, confusion=confusion)
    if out is None:
        out = os.path.dirname(model_path) if not fs.is_uri(model_path) else os.getcwd()
    out = fs.normalize(out)
    fs.makedirs(out)
    result.json_path = fs.join(out, f"evaluation-{split}.json")
    result.png_path = fs.join(out, f"confusion-{split}.png")
    fs.write_atomic(result.json_path, json.dumps(result.to_dict(), indent=1).encode())
    fs.write_atomic(result.png_path, confusion_png(result))
    return result


def confusion_png(result: Evaluation) -> bytes:
    """The confusion matrix as a PNG: each row (true class) in shares of its images, with the
    counts written in the cells when there are few classes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = result.confusion
    n = len(result.class_names)
    shares = c / np.maximum(1, c.sum(axis=1, keepdims=True))
    side = min(14.0, 3.0 + 0.45 * n)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    im = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(n), result.class_names, rotation=60, ha="right",
                  fontsize=8 if n > 20 else 10)
    ax.set_yticks(range(n), result.class_names, fontsize=8 if n > 20 else 10)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if c[i, j]:
                    ax.text(j, i, str(c[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if shares[i, j] > 0.5 else "black")
    ax.set_title(f"{os.path.basename(result.model)} on {result.split}: accuracy "
                 f"{result.accuracy:.3f} ({result.images} images)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
