"""The torch ``DataLoader`` rows: the split's JPEG bytes written out as image files in class
folders (``<label>/<n>.jpg``, the ImageFolder layout), read by ``workers = cores`` processes
and decoded three ways: PIL (what torchvision's ``ImageFolder`` does by default), simplejpeg
(libjpeg-turbo, the decode limit's settings, one batch array per batch) and torchvision's
``decode_jpeg`` (where torchvision imports beside the installed torch)."""

from __future__ import annotations

import os
from typing import List, Sequence

import numpy as np

from ray_ingest.bench.measure import Variant, timed_stream
from ray_ingest.bench.peers.common import (
    GROUP,
    loader_counts,
    loader_kwargs,
    missing_modules,
    scratch_dir,
    simplejpeg_collate,
    stop_workers,
    split_bytes,
)

PIL_ROW = "torch DataLoader + PIL (ImageFolder-style)"
SIMPLEJPEG_ROW = "torch DataLoader + simplejpeg"
TORCHVISION_ROW = "torch DataLoader + torchvision decode_jpeg"


def missing():
    return missing_modules("torch")


def missing_torchvision():
    return missing_modules("torch", "torchvision.io")


class _Files:
    """A map-style dataset of image files and labels; ``load`` says what a sample is."""

    def __init__(self, paths: Sequence[str], labels: np.ndarray, load: str):
        self.paths, self.labels, self.load = list(paths), labels, load

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        path, label = self.paths[i], int(self.labels[i])
        if self.load == "pil":  # torchvision's default_loader, then the pixels as an array
            from PIL import Image

            with open(path, "rb") as f:
                return np.array(Image.open(f).convert("RGB")), label
        if self.load == "torchvision":
            from torchvision.io import decode_jpeg, read_file

            return decode_jpeg(read_file(path)), label
        with open(path, "rb") as f:
            return f.read(), label


def write_files(folder: str, encoded: List[bytes], labels: np.ndarray) -> List[str]:
    """The records as ``folder/<label>/<n>.jpg``; returns the paths in record order."""
    paths = []
    for n, (data, label) in enumerate(zip(encoded, labels)):
        d = os.path.join(folder, str(int(label)))
        os.makedirs(d, exist_ok=True)
        paths.append(os.path.join(d, f"{n}.jpg"))
        with open(paths[-1], "wb") as f:
            f.write(data)
    return paths


def _row(name: str, load: str):
    def make(ctx) -> Variant:
        import torch.utils.data as tud

        from ray_ingest.runtime import usable_cores

        encoded, labels = split_bytes(ctx)
        folder, remove = scratch_dir("files")
        dataset = _Files(write_files(folder, encoded, labels), labels, load)
        collate = simplejpeg_collate if load == "simplejpeg" else None
        loader = tud.DataLoader(dataset, shuffle=False, collate_fn=collate,
                                **loader_kwargs(ctx.batch_size, usable_cores()))
        return Variant(name, GROUP, timed_stream(lambda: loader_counts(loader, ctx.passes)),
                       warmup=ctx.warmup, close=lambda: (stop_workers(loader), remove()),
                       note=f"workers = cores, the same bytes as files, decoded with {load}")
    return make


make_pil_row = _row(PIL_ROW, "pil")
make_simplejpeg_row = _row(SIMPLEJPEG_ROW, "simplejpeg")
make_torchvision_row = _row(TORCHVISION_ROW, "torchvision")
