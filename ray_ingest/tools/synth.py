"""A learnable synthetic image-classification dataset, drawn procedurally.

Each class is a kind of shape (circle, square, triangle, star, ...); every image draws one
shape of its class with a random colour, position, scale and rotation over a textured
background (gradient, stripes or blotches), then adds pixel noise, and is saved as a quality-90
JPEG under ``OUT/<class_name>/<id>.jpg``. Images are a pure function of ``(seed, index)``,
so a dataset is reproducible and can be drawn in parallel on Ray.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from ray_ingest import fs
from ray_ingest.errors import ConfigError, FieldName
from ray_ingest.flags import no_flag, opt

SHAPES = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "hexagon",
    "diamond",
    "crescent",
    "arrow",
)
MAX_MULTIPLICITY = 3
#: Shapes are rotated by up to this much (radians) either way: enough to vary them, little
#: enough that a small CNN learns the classes from a few thousand images in a few epochs.
MAX_ROTATION = math.radians(30)


def class_names(num_classes: int) -> List[str]:
    """``num_classes`` names: shape kinds, then shape kinds drawn two or three times."""
    limit = len(SHAPES) * MAX_MULTIPLICITY
    if not 2 <= num_classes <= limit:
        raise ConfigError(f"classes must be from 2 to {limit}, got {num_classes}")
    names = []
    for i in range(num_classes):
        shape, copies = SHAPES[i % len(SHAPES)], i // len(SHAPES) + 1
        names.append(shape if copies == 1 else f"{shape}-x{copies}")
    return names


def parse_size(text: str) -> Tuple[int, int]:
    """``"WxH"`` → ``(W, H)``."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"size must look like 320x240, got {text!r}") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise ConfigError(f"size sides must be from 16 to 8192, got {text!r}")
    return w, h


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float):
    def ring_pts(n, radius, phase=0.0):
        return [
            (cx + radius * math.cos(angle + phase + 2 * math.pi * k / n),
             cy + radius * math.sin(angle + phase + 2 * math.pi * k / n))
            for k in range(n)
        ]

    if kind == "square":
        return ring_pts(4, r, math.pi / 4)
    if kind == "triangle":
        return ring_pts(3, r)
    if kind == "hexagon":
        return ring_pts(6, r)
    if kind == "diamond":
        pts = ring_pts(4, r)
        return [(cx + (x - cx) * (0.55 if k % 2 else 1.0), cy + (y - cy) * (0.55 if k % 2 else 1.0))
                for k, (x, y) in enumerate(pts)]
    if kind == "star":
        outer, inner = ring_pts(5, r), ring_pts(5, r * 0.42, math.pi / 5)
        return [p for pair in zip(outer, inner) for p in pair]
    if kind == "cross":
        w = r * 0.38
        base = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r),
                (-w, w), (-r, w), (-r, -w), (-w, -w)]
    elif kind == "arrow":
        base = [(-r, -0.25 * r), (0.2 * r, -0.25 * r), (0.2 * r, -0.7 * r), (r, 0),
                (0.2 * r, 0.7 * r), (0.2 * r, 0.25 * r), (-r, 0.25 * r)]
    else:
        raise ValueError(kind)
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in base]


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A textured float32 ``[H, W, 3]`` background: a gradient plus stripes, blotches or checks."""
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    base = rng.uniform(30, 225, size=3).astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    ramp = (xs * math.cos(theta) + ys * math.sin(theta)) / max(w, h)  # [H, W]
    style = rng.integers(3)
    if style == 0:  # stripes
        freq = rng.uniform(0.03, 0.15)
        phi = rng.uniform(0, 2 * math.pi)
        tex = np.sin((xs * math.cos(phi) + ys * math.sin(phi)) * (freq * 2 * math.pi))
        amp = rng.uniform(3, 12, size=3).astype(np.float32)
    elif style == 1:  # blotches: upsampled low-resolution noise
        gh, gw = max(2, h // 24), max(2, w // 24)
        coarse = rng.standard_normal((gh, gw), dtype=np.float32)
        yi = np.minimum(np.arange(h) * gh // h, gh - 1)
        xi = np.minimum(np.arange(w) * gw // w, gw - 1)
        tex = coarse[yi][:, xi]
        amp = rng.uniform(3, 10, size=3).astype(np.float32)
    else:  # checks
        cell = int(rng.integers(6, 24))
        tex = (((xs // cell) + (ys // cell)) % 2) * 2 - 1
        amp = np.full(3, rng.uniform(2, 8), dtype=np.float32)
    tint = rng.uniform(-60, 60, size=3).astype(np.float32)
    tex = tex.astype(np.float32)
    # Channel planes, then one interleave: broadcasting over a last axis of 3 is slow.
    return np.dstack([base[c] + ramp * tint[c] + tex * amp[c] for c in range(3)])


_NOISE_BANK_SIZE = 1 << 20


@functools.lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """A fixed bank of standard-normal samples; images take seeded slices of it (fast)."""
    return np.random.default_rng(12345).standard_normal(_NOISE_BANK_SIZE, dtype=np.float32)


def _noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    n = int(np.prod(shape))
    bank = _noise_bank()
    start = int(rng.integers(0, _NOISE_BANK_SIZE))
    idx = (start + np.arange(n)) % _NOISE_BANK_SIZE if start + n > _NOISE_BANK_SIZE else None
    flat = bank[idx] if idx is not None else bank[start : start + n]
    return (flat * sigma).astype(np.int16).reshape(shape)


def draw_image(seed: int, index: int, num_classes: int, width: int, height: int):
    """Draws image ``index``; returns ``(uint8[H, W, 3], label)``. Deterministic."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng([seed, index])
    label = index % num_classes
    kind = SHAPES[label % len(SHAPES)]
    copies = label // len(SHAPES) + 1
    img = _background(rng, width, height)
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    bg_mean = img[::8, ::8].reshape(-1, 3).mean(axis=0)
    # Keep shapes inside the central square so a center crop keeps them.
    side = min(width, height)
    x0, y0 = (width - side) / 2, (height - side) / 2
    for _ in range(copies):
        while True:  # a colour that stands out from the background
            color = rng.uniform(0, 255, size=3)
            if np.abs(color - bg_mean).sum() > 160:
                break
        fill = tuple(int(c) for c in color)
        r = side * (rng.uniform(0.22, 0.36) if copies == 1 else rng.uniform(0.12, 0.18))
        cx = x0 + rng.uniform(r * 1.05, side - r * 1.05)
        cy = y0 + rng.uniform(r * 1.05, side - r * 1.05)
        angle = rng.uniform(-MAX_ROTATION, MAX_ROTATION)
        if kind == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        elif kind == "ring":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
            ri = r * 0.55
            hole = tuple(int(c) for c in bg_mean)
            draw.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=hole)
        elif kind == "crescent":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
            dx, dy = 0.45 * r * math.cos(angle), 0.45 * r * math.sin(angle)
            hole = tuple(int(c) for c in bg_mean)
            draw.ellipse([cx + dx - r * 0.85, cy + dy - r * 0.85, cx + dx + r * 0.85,
                          cy + dy + r * 0.85], fill=hole)
        else:
            draw.polygon(_polygon(kind, cx, cy, r, angle), fill=fill)
    out = np.asarray(canvas, dtype=np.int16)
    sigma = rng.uniform(2, 9)
    out += _noise(rng, out.shape, sigma)
    return np.clip(out, 0, 255).astype(np.uint8), label


@dataclass(frozen=True)
class SynthSpec:
    out: str = opt(help="output folder of class folders of JPEGs (path or URI)",
                   positional=True)
    num_images: int = opt(help="images to draw", cli_default=2000)
    num_classes: int = opt(10, flag="--classes", help="number of classes (kinds of shapes)")
    # The command line sets both with --size WxH (parse_size).
    width: int = no_flag(320)
    height: int = no_flag(240)
    seed: int = opt(0, help="the same seed draws the same images")
    quality: int = opt(90, help="JPEG quality")

    def __post_init__(self):
        if self.num_images < 1:
            raise ConfigError(FieldName("num_images"), f" must be at least 1, got "
                              f"{self.num_images}")
        class_names(self.num_classes)  # validates
        if not 1 <= self.quality <= 100:
            raise ConfigError(FieldName("quality"), f" must be from 1 to 100, got "
                              f"{self.quality}")

    def relpath(self, index: int) -> str:
        return f"{class_names(self.num_classes)[index % self.num_classes]}/{index:07d}.jpg"


def write_images(spec: SynthSpec, indices) -> int:
    """Draws and writes the images with the given indices; returns how many were written."""
    import simplejpeg

    for i in indices:
        arr, _ = draw_image(spec.seed, int(i), spec.num_classes, spec.width, spec.height)
        data = simplejpeg.encode_jpeg(arr, quality=spec.quality, colorspace="RGB",
                                      colorsubsampling="420")
        fs.write_bytes(fs.join(spec.out, spec.relpath(int(i))), data)
    return len(indices)


def synthesize(spec: SynthSpec, *, parallel: bool = True, show_progress: bool = True) -> int:
    """Writes the whole dataset (in parallel as Ray tasks when ``parallel``, with a progress
    display when ``show_progress``); returns the count."""
    out = fs.normalize(spec.out)
    spec = SynthSpec(**{**spec.__dict__, "out": out})
    for name in class_names(spec.num_classes):
        fs.makedirs(fs.join(out, name))
    if not parallel or spec.num_images <= 64:
        return write_images(spec, range(spec.num_images))
    import ray

    from ray_ingest.runtime import ensure_ray

    ensure_ray()
    draw = ray.remote(write_images).options(num_cpus=1)
    chunk = max(16, min(256, spec.num_images // (4 * max(1, int(ray.cluster_resources().get("CPU", 1))))))
    from ray_ingest.progress import Progress

    pending = [draw.remote(spec, range(i, min(spec.num_images, i + chunk)))
               for i in range(0, spec.num_images, chunk)]
    written = 0
    with Progress("synth", total=spec.num_images, unit="images", enabled=show_progress) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            n = ray.get(done[0])
            written += n
            bar.update(n)
    return written
