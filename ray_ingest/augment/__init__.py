"""Vectorized image augmentation, one definition of the parameters, one implementation per framework.

A training batch (``uint8[N, H, W, 3]``) becomes ``float[N, S, S, 3]`` (TensorFlow, NHWC) or
``float[N, 3, S, S]`` (torch, NCHW) in a handful of batched tensor ops on the device:

1. random resized crop: per-sample boxes (area fraction in ``scale``, aspect ratio in ``ratio``,
   uniformly placed), cut and resized to ``S x S`` in one batched bilinear crop-and-resize;
2. horizontal flip with probability ``flip_prob``, folded into the crop (a box read right to
   left);
3. brightness, contrast and saturation jitter, each a per-sample factor in ``[1 - x, 1 + x]``
   (the definitions of torchvision's ``adjust_*``: scale; blend with the image's mean grey;
   blend with its grey image), applied in that order;
4. normalisation ``(x / 255 - mean) / std``.

Steps 3 and 4 are linear in the pixels, so they are folded into one per-image 3x3 colour matrix
and offset (:func:`color_transform`), applied in one pass and clipped once to the range of
normalised ``[0, 255]`` pixels (torchvision clips after each adjustment; we clip at the end).

:func:`sample_params` draws the per-sample parameters from a seed (numpy, so both frameworks can
be given the very same ones in tests); each framework's module has its own on-device sampler and
one ``apply`` that takes the parameters. Training draws them with :func:`sample_uniforms`: a
counter-based function of ``(seed, epoch, the sample's place in the epoch)``, so a sample is
augmented the same way whichever rank, world size or resumed run trains it. Validation uses no randomness: a resize of the whole
image to ``S x S`` and the same normalisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Tuple

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ITU-R 601-2 luma, as torchvision's rgb_to_grayscale.
GREY_WEIGHTS = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentConfig:
    size: int = 224
    scale: Tuple[float, float] = (0.25, 1.0)
    ratio: Tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    mean: Tuple[float, float, float] = field(default=IMAGENET_MEAN)
    std: Tuple[float, float, float] = field(default=IMAGENET_STD)
    enabled: bool = True

    def __post_init__(self):
        if self.size < 8:
            raise ValueError(f"augment size must be >= 8, got {self.size}")
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {self.scale}")
        lo, hi = self.ratio
        if not 0 < lo <= hi:
            raise ValueError(f"ratio must satisfy 0 < low <= high, got {self.ratio}")
        if not 0 <= self.flip_prob <= 1:
            raise ValueError(f"flip_prob must be in [0, 1], got {self.flip_prob}")
        for name in ("brightness", "contrast", "saturation"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                raise ValueError(f"{name} must be in [0, 1), got {v}")


def params_from_uniforms(u, cfg: AugmentConfig, ops) -> Dict:
    """Per-sample parameters from uniforms ``u[N, 8]`` in [0, 1): the one formula every
    sampler (numpy here, TensorFlow and torch in their modules) uses.

    ``ops`` gives ``exp``, ``sqrt``, ``minimum`` and ``stack(list, axis)`` for the array type.
    Crop: area fraction ``a = lerp(scale, u0)``, ``log r = lerp(log ratio, u1)``,
    ``w = sqrt(a r)``, ``h = sqrt(a / r)`` (each clipped to 1), corner ``(u2 (1 - h),
    u3 (1 - w))``; boxes are ``(y0, x0, y1, x1)`` in [0, 1]. Flip when ``u4 < flip_prob``;
    jitter factors ``1 - x + 2 x u`` for brightness, contrast, saturation (``u5..u7``).
    """
    a = cfg.scale[0] + (cfg.scale[1] - cfg.scale[0]) * u[:, 0]
    log_lo, log_hi = math.log(cfg.ratio[0]), math.log(cfg.ratio[1])
    r = ops.exp(log_lo + (log_hi - log_lo) * u[:, 1])
    w = ops.minimum(ops.sqrt(a * r), 1.0)
    h = ops.minimum(ops.sqrt(a / r), 1.0)
    y0 = u[:, 2] * (1.0 - h)
    x0 = u[:, 3] * (1.0 - w)
    return {
        "boxes": ops.stack([y0, x0, y0 + h, x0 + w], 1),
        "flip": u[:, 4] < cfg.flip_prob,
        "brightness": 1 - cfg.brightness + 2 * cfg.brightness * u[:, 5],
        "contrast": 1 - cfg.contrast + 2 * cfg.contrast * u[:, 6],
        "saturation": 1 - cfg.saturation + 2 * cfg.saturation * u[:, 7],
    }


class NumpyOps:
    exp, sqrt, minimum = staticmethod(np.exp), staticmethod(np.sqrt), staticmethod(np.minimum)

    @staticmethod
    def stack(values, axis):
        return np.stack(values, axis=axis)


def sample_uniforms(seed: int, epoch: int, positions) -> np.ndarray:
    """``float32[N, 8]`` uniforms in [0, 1) for the samples at ``positions`` (their places in
    the epoch's order, ``int[N]``): SplitMix64 of a counter keyed by ``(seed, epoch)``, so each
    sample's draw depends on nothing else (not on the batch it is in, the rank that trains it,
    or what came before it). :func:`params_from_uniforms` makes them parameters."""
    key = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch)]).generate_state(
        1, np.uint64)[0]
    z = (np.asarray(positions, np.uint64)[:, None] * np.uint64(8)
         + np.arange(8, dtype=np.uint64)[None, :]) + key
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def sample_params(n: int, cfg: AugmentConfig, seed: int) -> Dict[str, np.ndarray]:
    """Per-sample parameters for ``n`` images from a seed (numpy, float32; for tests and tools)."""
    u = np.random.default_rng(seed).random((n, 8), dtype=np.float32)
    p = params_from_uniforms(u, cfg, NumpyOps)
    return {k: v if v.dtype == bool else v.astype(np.float32) for k, v in p.items()}


def color_transform(brightness, contrast, saturation, grey_mean, cfg: AugmentConfig, ops):
    """Per-image ``(M[N, 3, 3], o[N, 3])`` with ``normalised = M @ rgb + o``: brightness
    ``b``, contrast ``c`` (about ``grey_mean``, the mean grey of the cropped image), saturation
    ``s``, then ``(x / 255 - mean) / std``, composed:

        x3 = c b A x + (1 - c) b mu 1,   A = s I + (1 - s) 1 w^T   (A 1 = 1 since w sums to 1)

    ``ops`` gives ``reshape(x, shape)``, ``eye3``, ``constant(values)``; arrays broadcast.
    """
    w = ops.constant(GREY_WEIGHTS)  # [3]
    inv = ops.constant([1.0 / (255.0 * s) for s in cfg.std])  # [3]
    shift = ops.constant([-m / s for m, s in zip(cfg.mean, cfg.std)])  # [3]
    b = ops.reshape(brightness, (-1, 1, 1))
    c = ops.reshape(contrast, (-1, 1, 1))
    s = ops.reshape(saturation, (-1, 1, 1))
    a = s * ops.eye3() + (1.0 - s) * ops.reshape(w, (1, 1, 3))  # rows: output channel
    m = c * b * a * ops.reshape(inv, (1, 3, 1))
    o = ops.reshape((1.0 - c) * b, (-1, 1)) * ops.reshape(grey_mean, (-1, 1)) * inv + shift
    return m, o


def clip_range(cfg: AugmentConfig):
    """Normalised values of pixel 0 and 255, per channel: the output's clip range."""
    lo = [-m / s for m, s in zip(cfg.mean, cfg.std)]
    hi = [(1 - m) / s for m, s in zip(cfg.mean, cfg.std)]
    return lo, hi


def identity_params(n: int) -> Dict[str, np.ndarray]:
    """Parameters that change nothing: the whole image, no flip, factors of 1."""
    return {
        "boxes": np.tile(np.array([[0, 0, 1, 1]], np.float32), (n, 1)),
        "flip": np.zeros(n, bool),
        "brightness": np.ones(n, np.float32),
        "contrast": np.ones(n, np.float32),
        "saturation": np.ones(n, np.float32),
    }
