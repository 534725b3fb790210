"""A small learnable texture set for multi-worker training checks: horizontal stripes, vertical
stripes, checks and dots, each with a random frequency, phase, two random colours and sensor
noise, stored as JPEG (quality 90) in the class-folder layout ``ray-ingest convert`` takes.

    python benchmarks/textures.py textures --num-images 800 --size 64
    ray-ingest convert textures textures-64 --size 64 --val-fraction 0.2
    ray-ingest train textures-64 --framework torch --epochs 8 --num-workers 2 --no-use-gpu \
        --storage-path runs
"""

from __future__ import annotations

import argparse
import os

import numpy as np

KINDS = ("hstripes", "vstripes", "checks", "dots")


def texture(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    f, phase = rng.uniform(0.15, 0.5), rng.uniform(0, 6.3)
    if kind == "hstripes":
        v = np.sin(yy * f + phase)
    elif kind == "vstripes":
        v = np.sin(xx * f + phase)
    elif kind == "checks":
        v = np.sin(xx * f + phase) * np.sin(yy * f + phase)
    else:
        v = np.cos(xx * f) + np.cos(yy * f) - 1
    c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    img = c1 + (c2 - c1) * ((v[..., None] + 1) / 2) + rng.normal(0, 12, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def main(argv=None) -> None:
    import simplejpeg

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--num-images", type=int, default=800)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    for kind in KINDS:
        os.makedirs(os.path.join(args.out, kind), exist_ok=True)
    for i in range(args.num_images):
        kind = KINDS[i % len(KINDS)]
        with open(os.path.join(args.out, kind, f"{i:05d}.jpg"), "wb") as f:
            f.write(simplejpeg.encode_jpeg(texture(kind, args.size, rng), 90))
    print(f"textures: {args.num_images} images of {args.size}x{args.size}, "
          f"{len(KINDS)} classes -> {args.out}")


if __name__ == "__main__":
    main()
