"""Natural-photo benchmark inputs, so that figures are not measured on synthetic shapes alone.

The sources are the camera photographs (flowers, grass, leaves, water, wood, a storm, a tree
with a bird; 1280x1024 to 6028x3391) of two Debian packages, `mate-backgrounds` and
`lomiri-wallpapers-20.04`, fetched with `apt-get download` (no root needed) into a cache folder. From
them this draws any number of distinct images: a random crop (area 30-100 % of the source,
the output's aspect ratio), a random flip, a mild per-image colour and brightness change, light
sensor-like noise, then JPEG quality 90, 4:2:0, as cameras and phones store them.

    python benchmarks/photos.py OUT --num-images 2000 --size 500x375 [--classes 10]
    python benchmarks/photos.py OUT --num-images 120 --size 4000x3000     # 12-megapixel photos

OUT gets the class-folder layout `ray-ingest convert` takes (`OUT/<class>/<n>.jpg`; the class
is the source photo, so the set is also learnable).
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
from typing import List

import numpy as np

PACKAGES = ("mate-backgrounds", "lomiri-wallpapers-20.04")
#: The camera photographs among the packages' wallpapers (the rest are renders and artwork).
PHOTOS = (
    "Aqua.jpg", "Blinds.jpg", "Dune.jpg", "Garden.jpg", "GreenMeadow.jpg", "LadyBird.jpg",
    "RainDrops.jpg", "Storm.jpg", "TwoWings.jpg", "Wood.jpg", "YellowFlower.jpg",
    "Kleiber_by_Lukas_Baubkus.jpg",
)
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "ray-ingest", "photos")


def fetch_sources(cache: str = DEFAULT_CACHE) -> List[str]:
    """Paths of the source photographs, downloading the Debian packages into ``cache`` once."""
    found = {os.path.basename(p): p for p in glob.glob(os.path.join(cache, "**", "*.jpg"),
                                                       recursive=True)}
    if not all(name in found for name in PHOTOS):
        os.makedirs(cache, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            for pkg in PACKAGES:
                subprocess.run(["apt-get", "download", pkg], cwd=tmp, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for deb in glob.glob(os.path.join(tmp, "*.deb")):
                subprocess.run(["dpkg-deb", "-x", deb, cache], check=True)
        found = {os.path.basename(p): p for p in glob.glob(os.path.join(cache, "**", "*.jpg"),
                                                           recursive=True)}
    missing = [name for name in PHOTOS if name not in found]
    if missing:
        raise SystemExit(f"photos.py: the packages {PACKAGES} lack {missing}")
    return [found[name] for name in PHOTOS]


def draw(source, rng: np.random.Generator, width: int, height: int):
    """One new image from a source photo (a PIL image): crop, flip, colour, noise."""
    from PIL import Image

    sw, sh = source.size
    aspect = width / height
    area = rng.uniform(0.3, 1.0) * sw * sh
    cw = int(min(sw, np.sqrt(area * aspect)))
    ch = int(min(sh, cw / aspect))
    cw = int(ch * aspect)
    x, y = int(rng.integers(0, sw - cw + 1)), int(rng.integers(0, sh - ch + 1))
    img = source.crop((x, y, x + cw, y + ch)).resize((width, height), Image.LANCZOS)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    arr = np.asarray(img, dtype=np.float32)
    arr = arr * rng.uniform(0.85, 1.15, 3) + rng.uniform(-12, 12)
    arr += rng.normal(0.0, 2.5, arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _class_name(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0].split("_")[0].lower()


def _write(args) -> int:
    """Draws images ``indices`` (each from its own seed, so any split of the work gives the
    same set) and writes them."""
    import simplejpeg
    from PIL import Image

    out, paths, indices, width, height, seed = args
    sources = [Image.open(p).convert("RGB") for p in paths]
    for i in indices:
        k = i % len(sources)
        arr = draw(sources[k], np.random.default_rng([seed, i]), width, height)
        data = simplejpeg.encode_jpeg(arr, quality=90, colorspace="RGB", colorsubsampling="420")
        with open(os.path.join(out, _class_name(paths[k]), f"{i:06d}.jpg"), "wb") as f:
            f.write(data)
    return len(indices)


def make(out: str, num_images: int, width: int, height: int, classes: int = 0,
         seed: int = 0, cache: str = DEFAULT_CACHE, processes: int = 0) -> int:
    """Writes ``num_images`` photos to ``out/<class>/`` with ``processes`` processes (0: one per
    core); returns how many."""
    import multiprocessing as mp

    paths = fetch_sources(cache)[: classes or None]
    for p in paths:
        os.makedirs(os.path.join(out, _class_name(p)), exist_ok=True)
    processes = processes or os.cpu_count() or 1
    jobs = [(out, paths, range(k, num_images, processes), width, height, seed)
            for k in range(processes)]
    if processes == 1:
        return sum(map(_write, jobs))
    with mp.get_context("spawn").Pool(processes) as pool:
        return sum(pool.map(_write, jobs))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--num-images", type=int, default=2000)
    ap.add_argument("--size", default="500x375", help="WxH")
    ap.add_argument("--classes", type=int, default=0, help="source photos used (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=DEFAULT_CACHE,
                    help="where the source photos are (fetched there when missing)")
    ap.add_argument("--processes", type=int, default=0, help="0: one per core")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    n = make(args.out, args.num_images, w, h, args.classes, args.seed, args.cache,
             args.processes)
    print(f"photos: {n} natural photos of {w}x{h} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
