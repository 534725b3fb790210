"""Helpers the tests share (fixtures stay in conftest.py): image bytes of every kind, the TF
feature spec built from our keys, what a split stores, and synthetic source trees."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from ray_ingest.format import keys
from ray_ingest.format.example import ImageRecord
from ray_ingest.format.manifest import Manifest, read_manifest
from ray_ingest.format.records import iter_records


def jpeg_bytes(arr: np.ndarray, quality: int = 90) -> bytes:
    import simplejpeg

    return simplejpeg.encode_jpeg(np.ascontiguousarray(arr), quality=quality, colorspace="RGB")


def pil_bytes(img, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def random_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def huge_jpeg_header(width: int, height: int) -> bytes:
    """A small JPEG whose SOF header claims ``width`` x ``height`` (a decompression bomb)."""
    data = bytearray(jpeg_bytes(random_rgb(16, 16)))
    i = 2
    while i < len(data):
        marker = data[i + 1]
        seg_len = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 7] = height.to_bytes(2, "big")
            data[i + 7 : i + 9] = width.to_bytes(2, "big")
            return bytes(data)
        i += 2 + seg_len
    raise AssertionError("no SOF marker")


def tf_feature_spec():
    """``tf.io.parse_single_example`` features of every key we write, from :data:`keys.FEATURES`."""
    from ray_ingest.bench.tfdata import feature_spec

    return feature_spec(tuple(keys.FEATURES))


def stored(path, split: str) -> Tuple[Manifest, List[ImageRecord]]:
    """The manifest and every record of a split, read with our codec."""
    m = read_manifest(str(path))
    return m, list(iter_records(str(path), split, manifest=m))


def stored_filenames(path) -> List[str]:
    """``image/filename`` of every record of every split."""
    m = read_manifest(str(path))
    return [r.filename for split in m.splits for r in iter_records(str(path), split, manifest=m)]


def pixel_key(label, pixels) -> Tuple[int, str]:
    """A record's identity for comparing sets of records: its label and a hash of its pixels."""
    return int(label), hashlib.sha1(np.ascontiguousarray(pixels).tobytes()).hexdigest()


def make_synth_tree(root: Path, num_images: int, num_classes: int, width: int, height: int,
                    seed: int, parallel: bool = False) -> Path:
    """A synthetic class-folder tree of JPEGs under ``root``."""
    from ray_ingest.tools.synth import SynthSpec, synthesize

    synthesize(SynthSpec(out=str(root), num_images=num_images, num_classes=num_classes,
                         width=width, height=height, seed=seed), parallel=parallel)
    return root


# ---- the command line in a subprocess ------------------------------------------------------

#: Lines of Ray, Ray Data, Ray Train and TensorFlow that quiet output leaves out: Ray Data's
#: execution and progress logs, Ray Train's report dumps and checkpoint notes, TensorFlow's
#: INFO logs and load banners, Ray Train's cleaner failing to reach the State API, Ray core's
#: note on Ray Train's own actors.
#: What quiet output leaves out: INFO lines of Ray, Ray Data, Ray Train and TensorFlow's Python
#: logger. (TensorFlow's load-time lines and Ray core's notes stay: README, "Output".)
NOISE = re.compile(r"Starting execution|Execution plan|logging_progress|TrainingReport\(|"
                   r"Checkpoint successfully|INFO:tensorflow|PlacementGroupCleaner|"
                   r"Started a local Ray instance")

#: The lines of other libraries that quiet output lets through, having no documented switch
#: to turn them off (README, "Output"): TensorFlow's load-time lines, Ray's token
#: authentication notice, Ray core's notes on its own actors and worker pool.
FOREIGN = re.compile(r"absl::InitializeLog\(\) is called|I\d{4} [\d:.]+\s+\d+ port\.cc:\d+\] "
                     r"oneDNN custom operations|Token authentication is enabled|"
                     r"has constructor arguments in the object store|"
                     r"PYTHON worker processes have been started")


def own_lines(out: str) -> List[str]:
    """The non-empty lines of a command's output, less :data:`FOREIGN`."""
    return [line for line in out.splitlines() if line.strip() and not FOREIGN.search(line)]


def fresh_env() -> Dict[str, str]:
    """A new shell's environment: none of the RAY_* or TF_CPP_* variables this test session
    set, and the virtual environment's tools first on PATH (as when it is activated)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "TF_CPP_"))}
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """``ray-ingest ARGS`` in a fresh environment, stdout and stderr into one pipe (a log)."""
    return subprocess.run([str(Path(sys.executable).parent / "ray-ingest"), *args],
                          env=fresh_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)
_LOAD_ELSEWHERE = r"""
import importlib.abc
import sys


class _NoRayIngest(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "ray_ingest":
            raise ModuleNotFoundError("ray_ingest is not importable in this process")


sys.meta_path.insert(0, _NoRayIngest())
import numpy as np

framework, model_path, inputs_path, out_path = sys.argv[1:]
with np.load(inputs_path) as z:
    batches = [z[f"arr_{i}"] for i in range(len(z.files))]
if framework == "tf":
    import keras

    model = keras.models.load_model(model_path)
    logits = [np.asarray(model(images)) for images in batches]
else:
    import torch

    model = torch.export.load(model_path).module()
    with torch.no_grad():
        logits = [model(torch.from_numpy(images)).numpy() for images in batches]
assert not [m for m in sys.modules if m.split(".")[0] == "ray_ingest"]
np.savez(out_path, *logits)
"""


def predict_elsewhere(framework: str, model_path, batches: List[np.ndarray],
                      tmp: Path) -> List[np.ndarray]:
    """Logits of a saved model file for each batch of ``batches``, computed in a fresh Python
    process where ``ray_ingest`` cannot be imported (isolated mode, no PYTHONPATH, an import
    hook refusing it): what a user who only has Keras or torch gets."""
    import os
    import subprocess
    import sys

    tmp.mkdir(parents=True, exist_ok=True)
    script, inputs, out = tmp / "load_model.py", tmp / "batches.npz", tmp / "logits.npz"
    script.write_text(_LOAD_ELSEWHERE)
    np.savez(inputs, *batches)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-I", str(script), framework, str(model_path),
                        str(inputs), str(out)], cwd=tmp, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    with np.load(out) as z:
        return [z[f"arr_{i}"] for i in range(len(batches))]


def write_whole_image_shards(root: Path, splits: Dict[str, List[Tuple[bytes, int]]],
                             class_names: List[str], records_per_shard: int = 64) -> Path:
    """A whole-image conversion output (manifest version 2, ``resize_mode`` "keep"): each
    split's ``(jpeg bytes, label)`` stored as they are, each record with its own size, in the
    given splits (``convert --resize-mode keep`` assigns splits itself). Written with the
    format's own pieces (example codec, framing, manifest)."""
    import simplejpeg

    from ray_ingest.format.example import encode_image_example
    from ray_ingest.format.framing import TFRecordWriter
    from ray_ingest.format.manifest import header, index_name, shard_name, split_entry, \
        write_manifest

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    entries, sizes = {}, []
    for split, items in splits.items():
        chunks = [items[i : i + records_per_shard] for i in range(0, len(items),
                                                                   records_per_shard)] or [[]]
        shards, counts = [], [0] * len(class_names)
        for k, chunk in enumerate(chunks):
            name = shard_name(split, k, len(chunks))
            with open(root / name, "wb") as f:
                w = TFRecordWriter(f)
                for j, (data, label) in enumerate(chunk):
                    h, wd, _, _ = simplejpeg.decode_jpeg_header(data)
                    sizes.append((h, wd))
                    counts[label] += 1
                    w.write(encode_image_example(
                        encoded=data, image_format=keys.FORMAT_JPEG, height=h, width=wd,
                        channels=3, label=label, class_text=class_names[label],
                        filename=f"{split}/{k}/{j}.jpg"))
            (root / index_name(name)).write_text(w.index_text())
            shards.append({"file": name, "index": index_name(name),
                           "num_records": w.num_records, "num_bytes": w.bytes_written})
        entries[split] = split_entry(shards, counts)
    longest = max((max(s) for s in sizes), default=0)
    data = header(source="test", encoding=keys.FORMAT_JPEG, size=None, resize_mode="keep",
                  quality=None, seed=0, val_fraction=0.0, shard_size_mb=0.0,
                  class_names=class_names, max_side=longest or None)
    data["splits"] = entries
    write_manifest(str(root), data)
    return root
