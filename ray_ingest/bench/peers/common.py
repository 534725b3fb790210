"""What the peer rows share: the split's JPEG bytes and labels, a scratch folder, the probe
for a package, the simplejpeg batch decode of the DataLoader rows and the stream of batch
sizes a DataLoader yields."""

from __future__ import annotations

import importlib.util
import itertools
import shutil
import tempfile
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ray_ingest.format import keys

INSTALL_HINT = "pip install 'ray-ingest[bench-peers]'"
#: The group of the peer rows in the report.
GROUP = "peer"


def missing_modules(*modules: str) -> Optional[str]:
    """None when every module imports here, else the one-line reason: not installed, or
    installed but failing to import (a torchvision built for another torch fails so, and
    MosaicML Streaming imports torchvision)."""
    tops = [m.split(".")[0] for m in modules]
    absent = [m for m in tops if importlib.util.find_spec(m) is None]
    if absent:
        return f"{', '.join(absent)} not installed: {INSTALL_HINT}"
    for m in modules:
        try:
            importlib.import_module(m)
        except Exception as e:  # noqa: BLE001 - any failure to import means: cannot run
            return f"{m} does not import here ({type(e).__name__}: {e})"[:240]
    return None


def split_bytes(ctx) -> Tuple[List[bytes], np.ndarray]:
    """Every JPEG record of the context's split, in shard order, and its label."""
    from ray_ingest.format.records import iter_records

    if ctx.manifest.encoding != keys.FORMAT_JPEG:
        raise ValueError("the peer rows stream JPEG records")
    encoded, labels = [], []
    for r in iter_records(ctx.manifest.root, ctx.split, manifest=ctx.manifest):
        encoded.append(r.encoded)
        labels.append(r.label)
    return encoded, np.asarray(labels, np.int64)


def scratch_dir(prefix: str) -> Tuple[str, callable]:
    """A new temporary folder and the function that removes it."""
    path = tempfile.mkdtemp(prefix=f"ray-ingest-{prefix}-")
    return path, lambda: shutil.rmtree(path, ignore_errors=True)


def decode_jpegs(encoded: Sequence[bytes]) -> np.ndarray:
    """``uint8[N, H, W, 3]``: JPEGs decoded into one batch array with libjpeg-turbo, the
    settings of the decode limit (fast integer IDCT, RGB)."""
    import simplejpeg

    h, w, _, _ = simplejpeg.decode_jpeg_header(encoded[0])
    out = np.empty((len(encoded), h, w, 3), np.uint8)
    for i, data in enumerate(encoded):
        simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out[i], fastdct=True)
    return out


def simplejpeg_collate(samples):
    """A DataLoader ``collate_fn`` (run in its workers) for ``(jpeg bytes, label)`` samples:
    one ``uint8`` tensor ``[N, H, W, 3]`` and the labels."""
    import torch

    images = decode_jpegs([s[0] for s in samples])
    labels = torch.as_tensor([int(s[1]) for s in samples], dtype=torch.int64)
    return torch.from_numpy(images), labels


def loader_counts(loader, passes: int) -> Iterator[int]:
    """Batch sizes of ``passes`` epochs of a DataLoader, in one stream; the workers stop when
    the stream is closed."""
    for images, _labels in itertools.chain.from_iterable(loader for _ in range(passes)):
        yield int(images.shape[0])


def loader_kwargs(batch_size: int, workers: int) -> dict:
    """The DataLoader settings of every loader row: ``workers`` processes started by a fork
    server (this process runs Ray's and TensorFlow's threads, which a plain fork would copy
    mid-flight), two batches ahead per worker (the default), workers kept across epochs."""
    return dict(batch_size=batch_size, num_workers=workers, multiprocessing_context="forkserver",
                persistent_workers=True, prefetch_factor=2, drop_last=True)


def stop_workers(loader) -> None:
    """Stops the persistent workers of a DataLoader now rather than when it is collected."""
    it = getattr(loader, "_iterator", None)
    if it is not None and hasattr(it, "_shutdown_workers"):
        it._shutdown_workers()
