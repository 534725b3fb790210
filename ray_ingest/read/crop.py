"""Crops taken while decoding: :class:`RandomResizedCrop` (training) and :class:`CenterCrop`
(evaluation), as per-sample boxes ``(y, x, h, w)`` in stored-image pixels.

Boxes are drawn for a whole batch at once (numpy, no per-image Python), from a counter-based
hash of ``(seed, shard, record)``: a record gets the same box whichever worker reads it and
whatever the order, and a new one each epoch (the reader's per-epoch seed). The draw is
torchvision's ``RandomResizedCrop.get_params``, step for step: ten tries of an area fraction
``U(scale)`` and a log-uniform aspect ratio, ``w = round(sqrt(area * r))``,
``h = round(sqrt(area / r))``, accepted when ``0 < w <= W`` and ``0 < h <= H`` and placed
uniformly; when no try fits, the whole image with its aspect ratio clamped into ``ratio``,
centred.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Tuple, Union

import numpy as np

from ray_ingest.errors import ConfigError

TRIES = 10
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class RandomResizedCrop:
    """A crop of ``scale`` of the image's area with aspect ratio in ``ratio``, resized to
    ``size x size``; mirrored left to right with probability ``flip_prob``."""

    size: int
    scale: Tuple[float, float] = (0.08, 1.0)
    ratio: Tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.0

    def __post_init__(self):
        _check_size(self.size)
        scale, ratio = tuple(map(float, self.scale)), tuple(map(float, self.ratio))
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise ConfigError(f"RandomResizedCrop: scale must be (low, high) with "
                              f"0 < low <= high <= 1, got {self.scale!r}")
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
            raise ConfigError(f"RandomResizedCrop: ratio must be (low, high) with "
                              f"0 < low <= high, got {self.ratio!r}")
        if not 0 <= self.flip_prob <= 1:
            raise ConfigError(f"RandomResizedCrop: flip_prob must be in [0, 1], got "
                              f"{self.flip_prob!r}")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "ratio", ratio)

    def boxes(self, heights, widths, keys) -> Tuple[np.ndarray, np.ndarray]:
        """``(int32[N, 4] boxes (y, x, h, w), uint8[N] flips)`` for images of the given sizes;
        ``keys``: uint64[N] per-record keys (:func:`record_keys`)."""
        u = uniforms(keys, 4 * TRIES + 1)
        boxes = draw_boxes(heights, widths, self.scale, self.ratio, u[:, : 4 * TRIES])
        flips = (u[:, 4 * TRIES] < self.flip_prob).astype(np.uint8)
        return boxes, flips


@dataclass(frozen=True)
class CenterCrop:
    """The shorter side resized to ``size / ratio``, the centre ``size x size`` kept: a square
    box of ``ratio`` times the shorter side, centred (torchvision's ``Resize`` +
    ``CenterCrop`` evaluation transform)."""

    size: int
    ratio: float = 0.875

    def __post_init__(self):
        _check_size(self.size)
        if not 0 < self.ratio <= 1:
            raise ConfigError(f"CenterCrop: ratio must be in (0, 1], got {self.ratio!r}")

    def boxes(self, heights, widths, keys=None) -> Tuple[np.ndarray, np.ndarray]:
        h = np.asarray(heights, np.int64)
        w = np.asarray(widths, np.int64)
        side = np.maximum(1, np.rint(np.minimum(h, w) * self.ratio)).astype(np.int64)
        top = np.rint((h - side) / 2.0).astype(np.int64)
        left = np.rint((w - side) / 2.0).astype(np.int64)
        boxes = np.stack([top, left, side, side], 1).astype(np.int32)
        return boxes, np.zeros(len(h), np.uint8)


Crop = Union[RandomResizedCrop, CenterCrop]


def _check_size(size) -> None:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise ConfigError(f"crop size must be a positive int, got {size!r}")


def check_crop(crop) -> None:
    if crop is not None and not isinstance(crop, (RandomResizedCrop, CenterCrop)):
        raise ConfigError(f"crop must be a RandomResizedCrop, a CenterCrop or None, got "
                          f"{crop!r}")


def shard_key(name: str) -> int:
    """A stable number for a shard file (its base name's CRC-32)."""
    return zlib.crc32(name.rsplit("/", 1)[-1].encode())


def record_keys(seed: int, shards, records) -> np.ndarray:
    """uint64[N] keys of records ``(shards[i], records[i])`` (shard keys and record numbers)
    under ``seed``."""
    k = _mix(np.full(len(records), np.uint64(seed % (1 << 64)), np.uint64))
    k = _mix(k ^ np.asarray(shards, np.uint64))
    return _mix(k ^ np.asarray(records, np.int64).astype(np.uint64))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise (wrap-around uint64 arithmetic)."""
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def uniforms(keys, count: int) -> np.ndarray:
    """float64[N, count] uniforms in [0, 1): stream ``j`` of key ``k`` is ``mix(k + j phi)``."""
    keys = np.asarray(keys, np.uint64)
    with np.errstate(over="ignore"):
        steps = np.arange(1, count + 1, dtype=np.uint64) * _GOLDEN
        bits = _mix(keys[:, None] + steps[None, :])
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def draw_boxes(heights, widths, scale, ratio, u: np.ndarray) -> np.ndarray:
    """torchvision's ``RandomResizedCrop.get_params`` for a batch: ``u`` holds float[N, 40]
    uniforms (per try: area, log-ratio, row, column). int32[N, 4] boxes ``(y, x, h, w)``."""
    H = np.asarray(heights, np.int64)[:, None]
    W = np.asarray(widths, np.int64)[:, None]
    n = H.shape[0]
    u = u.reshape(n, TRIES, 4)
    area = (H * W) * (scale[0] + (scale[1] - scale[0]) * u[:, :, 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    r = np.exp(log_lo + (log_hi - log_lo) * u[:, :, 1])
    w = np.rint(np.sqrt(area * r)).astype(np.int64)  # round half to even, as Python's round
    h = np.rint(np.sqrt(area / r)).astype(np.int64)
    ok = (w > 0) & (w <= W) & (h > 0) & (h <= H)
    i = np.floor(u[:, :, 2] * (H - h + 1)).astype(np.int64)
    j = np.floor(u[:, :, 3] * (W - w + 1)).astype(np.int64)
    first = np.argmax(ok, axis=1)
    rows = np.arange(n)
    found = ok[rows, first]
    # No try fitted: the whole image, its aspect ratio clamped into ``ratio``, centred.
    Hc, Wc = H[:, 0], W[:, 0]
    in_ratio = Wc / Hc
    fw = np.where(in_ratio < ratio[0], Wc,
                  np.where(in_ratio > ratio[1], np.rint(Hc * ratio[1]), Wc)).astype(np.int64)
    fh = np.where(in_ratio < ratio[0], np.rint(Wc / ratio[0]), Hc).astype(np.int64)
    fi, fj = (Hc - fh) // 2, (Wc - fw) // 2
    out = np.empty((n, 4), np.int32)
    out[:, 0] = np.where(found, i[rows, first], fi)
    out[:, 1] = np.where(found, j[rows, first], fj)
    out[:, 2] = np.where(found, h[rows, first], fh)
    out[:, 3] = np.where(found, w[rows, first], fw)
    return out
