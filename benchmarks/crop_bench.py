"""Random resized crop taken while decoding, on natural photos at their own sizes.

    python benchmarks/crop_bench.py [--workdir DIR] [--rounds 3] [--json out.json]

Inputs (benchmarks/photos.py): 500x375 photo crops, and 12-megapixel photos stored whole with
their longest side 512 (aspect kept, JPEG quality 90), as whole-image shards. Every row draws
RandomResizedCrop(224) boxes (scale 0.08-1, ratio 3/4-4/3) and yields uint8 224x224 batches.
Rows, in interleaved rounds (each ratio taken within one round):

  pixels             (first round) mean absolute difference of the fused decode from full
                     decode -> crop -> PIL BILINEAR resize of the same boxes, S = 224/128/64
  fused 1 core       the fused region decode + resize of a batch, one thread
  full 1 core        full decode (simplejpeg, fast IDCT) + crop + PIL BILINEAR resize of the
                     same boxes, one thread
  limit              every core running the fused decode from memory, no pipeline
  Ray Train feed     read_records(crop=..., decode="consumer") through a Ray Train worker
  tf.data            sample_distorted_bounding_box + decode_and_crop_jpeg + resize, per
                     record (AUTOTUNE) then batch, or batched first; the best of the two
  DALI               NVIDIA DALI's CPU pipeline (device_id=None, threads = cores) on the same
                     shards and .idx files: fn.decoders.image_random_crop (decodes only the
                     box) + fn.resize to 224x224
  DataLoader PIL     torch DataLoader (workers = cores) over the photos as files, a
                     torchvision-style RandomResizedCrop written with PIL
  cause              (with --rows cause) the per-image work of the tf.data and PIL rows on
                     one core beside the fused decode (same boxes, alternating bursts), and
                     how far the machine's cores add up (the limit over cores x one core)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Dict, List

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

SIZE, BATCH = 224, 128


def make_inputs(workdir: str, small: int, large: int) -> Dict[str, str]:
    """Photo folders and their whole-image shards (``{name: shards}``), converted as a user
    would: ``convert --resize-mode keep --max-side 512`` (the 500x375 photos fit and are
    stored byte for byte; the 12-megapixel ones are re-encoded at 512x384)."""
    import photos

    from ray_ingest.convert.pipeline import convert

    out = {}
    for name, (n, size) in {"500x375": (small, (500, 375)),
                            "12MP-512": (large, (4000, 3000))}.items():
        src = os.path.join(workdir, f"photos-{name}")
        if not os.path.isdir(src):
            photos.make(src, n, *size)
        shards = os.path.join(workdir, f"shards-{name}")
        if not os.path.exists(os.path.join(shards, "manifest.json")):
            convert(src, shards, resize_mode="keep", max_side=512, val_fraction=0.02,
                    show_progress=False)
        out[name] = shards
    return out


def stored_files(folder: str, encoded: List[bytes]) -> List[str]:
    """The shards' JPEGs as files (the same bytes the other rows decode), written once."""
    files = [os.path.join(folder, f"{i:06d}.jpg") for i in range(len(encoded))]
    if not os.path.exists(os.path.join(folder, ".complete")):
        os.makedirs(folder, exist_ok=True)
        for path, data in zip(files, encoded):
            with open(path, "wb") as f:
                f.write(data)
        open(os.path.join(folder, ".complete"), "w").close()
    return files


def _records(shards: str):
    from ray_ingest.format.records import iter_records

    recs = list(iter_records(shards, "train"))
    return [bytes(r.encoded) for r in recs], np.array([r.height for r in recs]), \
        np.array([r.width for r in recs])


def _boxes(h, w, seed=0):
    from ray_ingest.read.crop import RandomResizedCrop, record_keys

    n = len(h)
    return RandomResizedCrop(SIZE).boxes(h, w, record_keys(seed, np.zeros(n), np.arange(n)))[0]


def one_core(encoded, h, w, seconds=2.0, per_image_peers=False) -> Dict[str, float]:
    """images/s of the fused decode and of full decode + crop + resize, same boxes; with
    ``per_image_peers``, also tf.data's and PIL's per-image work of the recipe on one core."""
    import simplejpeg
    from PIL import Image

    from ray_ingest.read.cropdecode import decode_crops

    boxes = _boxes(h, w)
    data = b"".join(encoded)
    sizes = np.array([len(e) for e in encoded])
    ends = np.cumsum(sizes)
    out = np.empty((len(encoded), SIZE, SIZE, 3), np.uint8)

    def fused():
        decode_crops(data, ends - sizes, ends, boxes, np.zeros(len(boxes)), out, threads=1)
        return len(boxes)

    def full():
        for i, e in enumerate(encoded):
            y, x, bh, bw = boxes[i]
            img = simplejpeg.decode_jpeg(e, colorspace="RGB", fastdct=True)
            out[i] = np.asarray(Image.fromarray(img).resize(
                (SIZE, SIZE), Image.BILINEAR, box=(x, y, x + bw, y + bh)))
        return len(boxes)

    calls = {"fused 1 core": fused, "full 1 core": full}
    if per_image_peers:
        calls["tf.data 1 core"] = _tf_one_core(encoded, boxes)
        calls["PIL 1 core"] = lambda: _pil_one_core(encoded, boxes, out)
    return alternating(calls, seconds)


def alternating(calls, seconds: float, min_bursts: int = 5) -> Dict[str, float]:
    """Images/s of each ``calls[name]()`` (which returns the images it did), in alternating
    bursts, the median of each: other jobs on a shared machine slow them all alike."""
    samples: Dict[str, List[float]] = {name: [] for name in calls}
    for fn in calls.values():
        fn()
    t_end = time.perf_counter() + len(calls) * seconds
    while time.perf_counter() < t_end or min(map(len, samples.values())) < min_bursts:
        for name, fn in calls.items():
            t0 = time.perf_counter()
            samples[name].append(fn() / (time.perf_counter() - t0))
    return {name: float(np.median(v)) for name, v in samples.items()}


def _tf_one_core(encoded, boxes):
    """tf.data's per-image work of the recipe on one thread, the same boxes:
    decode_and_crop_jpeg + resize (antialiased bilinear, as the tf.data rows), from memory."""
    import tensorflow as tf

    windows = tf.constant(np.asarray(boxes, np.int32))
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(encoded), windows)).map(
        lambda e, b: tf.cast(tf.image.resize(tf.io.decode_and_crop_jpeg(e, b, channels=3),
                                             (SIZE, SIZE), antialias=True), tf.uint8)
    ).batch(BATCH)  # batches, as the tf.data rows: no per-image cost of Python's iterator
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    options.autotune.enabled = False
    ds = ds.with_options(options)

    def run():
        return sum(int(b.shape[0]) for b in ds)

    return run


def _pil_one_core(encoded, boxes, out):
    """The DataLoader row's per-image work (PIL open + full decode + crop-resize) on one
    thread, from memory, the same boxes."""
    import io

    from PIL import Image

    for i, e in enumerate(encoded):
        y, x, bh, bw = boxes[i]
        img = Image.open(io.BytesIO(e)).convert("RGB")
        out[i] = np.asarray(img.resize((SIZE, SIZE), Image.BILINEAR,
                                       box=(x, y, x + bw, y + bh)))
    return len(encoded)


def scaling(encoded, h, w, cores: int, seconds=3.0) -> float:
    """How far the machine's cores add up: the fused decode's rate on every core at once over
    ``cores`` x its rate on one (1.0: independent cores; less: shared physical cores or a
    busy host)."""
    return limit(encoded, h, w, cores, seconds) / (cores * limit(encoded, h, w, 1, seconds))


def pixels(encoded, h, w, count: int = 150) -> Dict[str, float]:
    """Mean absolute difference (grey levels) of the fused decode from a full decode -> crop ->
    PIL BILINEAR resize of the same boxes: the mean over images and the worst image."""
    import io

    from PIL import Image

    from ray_ingest.read.cropdecode import decode_crops
    from ray_ingest.read.crop import RandomResizedCrop, record_keys

    encoded, h, w = encoded[:count], h[:count], w[:count]
    n = len(encoded)
    data = b"".join(encoded)
    sizes = np.array([len(e) for e in encoded])
    ends = np.cumsum(sizes)
    out = {}
    for size in (224, 128, 64):
        boxes = RandomResizedCrop(size).boxes(h, w, record_keys(2, np.zeros(n), np.arange(n)))[0]
        got = np.empty((n, size, size, 3), np.uint8)
        decode_crops(data, ends - sizes, ends, boxes, np.zeros(n), got, fast=False)
        mads = [np.abs(np.asarray(Image.open(io.BytesIO(e)).convert("RGB").resize(
            (size, size), Image.BILINEAR, box=(x, y, x + bw, y + bh))).astype(np.int16)
            - got[i]).mean() for i, (e, (y, x, bh, bw)) in enumerate(zip(encoded, boxes))]
        out[f"MAD {size} mean"] = float(np.mean(mads))
        out[f"MAD {size} worst"] = float(np.max(mads))
    return out


def _limit_worker(args):
    data, starts, ends, boxes, seconds = args
    from ray_ingest.read.cropdecode import decode_crops

    out = np.empty((len(boxes), SIZE, SIZE, 3), np.uint8)
    flips = np.zeros(len(boxes), np.uint8)
    decode_crops(data, starts, ends, boxes, flips, out, threads=1)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        decode_crops(data, starts, ends, boxes, flips, out, threads=1)
        n += len(boxes)
    return n / (time.perf_counter() - t0)


def limit(encoded, h, w, cores: int, seconds=3.0) -> float:
    import multiprocessing as mp

    boxes = _boxes(h, w, 1)
    data = b"".join(encoded)
    sizes = np.array([len(e) for e in encoded])
    ends = np.cumsum(sizes)
    with mp.get_context("spawn").Pool(cores) as pool:
        return float(sum(pool.map(_limit_worker, [(data, ends - sizes, ends, boxes, seconds)]
                                  * cores)))


def ray_train_feed(shards: str, images: int) -> float:
    from ray_ingest.bench.train_row import train_feed_run
    from ray_ingest.read.api import read_records
    from ray_ingest.read.crop import RandomResizedCrop

    def make():
        return read_records(shards, "train", crop=RandomResizedCrop(SIZE), decode="consumer",
                            shuffle_records=True, seed=0, repeat=50)

    t = train_feed_run(make, shards, BATCH, "consumer")(BATCH * 4, images)
    return t.images / t.seconds


def tfdata(shards: str, images: int) -> Dict[str, float]:
    import tensorflow as tf

    from ray_ingest.bench.tfdata import feature_spec
    from ray_ingest.format import keys
    from ray_ingest.format.manifest import read_manifest

    m = read_manifest(shards)
    files = [os.path.join(shards, s.file) for s in m.shards("train")]
    features = feature_spec()
    autotune = tf.data.AUTOTUNE

    def crop_one(encoded):
        shape = tf.io.extract_jpeg_shape(encoded)
        begin, size, _ = tf.image.sample_distorted_bounding_box(
            shape, tf.zeros([0, 0, 4], tf.float32), area_range=(0.08, 1.0),
            aspect_ratio_range=(3 / 4, 4 / 3), max_attempts=10,
            use_image_if_no_bounding_boxes=True)
        window = tf.stack([begin[0], begin[1], size[0], size[1]])
        img = tf.io.decode_and_crop_jpeg(encoded, window, channels=3)
        return tf.cast(tf.image.resize(img, (SIZE, SIZE), antialias=True), tf.uint8)

    def parse(serialized):
        return crop_one(tf.io.parse_single_example(serialized, features)[keys.ENCODED])

    def parse_batch(serialized):
        enc = tf.io.parse_example(serialized, features)[keys.ENCODED]
        return tf.map_fn(crop_one, enc, fn_output_signature=tf.uint8)

    def base():
        return tf.data.Dataset.from_tensor_slices(files).interleave(
            tf.data.TFRecordDataset, cycle_length=len(files), num_parallel_calls=autotune,
            deterministic=False).repeat()

    variants = {
        "tf.data map(AUTOTUNE) + batch": base().map(parse, num_parallel_calls=autotune,
                                                    deterministic=False)
        .batch(BATCH).prefetch(autotune),
        "tf.data batch + map(AUTOTUNE)": base().batch(BATCH).map(
            parse_batch, num_parallel_calls=autotune, deterministic=False).prefetch(autotune),
    }
    return {name: stream_rate((int(b.shape[0]) for b in ds), images, warmup=4)
            for name, ds in variants.items()}


def stream_rate(batch_sizes, images: int, warmup: int) -> float:
    """Images/s of an iterator of batch sizes over ``images``, after ``warmup`` batches."""
    it = iter(batch_sizes)
    for _ in range(warmup):
        next(it)
    n, t0 = 0, time.perf_counter()
    while n < images:
        n += next(it)
    return n / (time.perf_counter() - t0)


def dali_crop(shards: str, images: int, cores: int) -> float:
    """NVIDIA DALI's random-resized-crop decode of the same shards, with our .idx files."""
    from ray_ingest.bench.peers import dali
    from ray_ingest.format.manifest import read_manifest

    m = read_manifest(shards)
    train = m.shards("train")
    pipe = dali.pipeline([os.path.join(shards, s.file) for s in train],
                         [os.path.join(shards, s.index) for s in train], BATCH, cores,
                         decode=dali.decode_random_crop(SIZE), shuffle=True)
    rate = stream_rate(dali.batch_counts(pipe), images, warmup=4)
    del pipe
    return rate


class _PilFiles:
    """A map-style dataset of photo files with a torchvision-style PIL RandomResizedCrop."""

    def __init__(self, files: List[str], seed: int = 0):
        self.files, self.seed = files, seed

    def __len__(self):
        return len(self.files) * 1000

    def __getitem__(self, i):
        import math
        import random

        from PIL import Image

        img = Image.open(self.files[i % len(self.files)]).convert("RGB")
        width, height = img.size
        rng = random.Random(self.seed * 1_000_003 + i)
        area = width * height
        box = None
        for _ in range(10):  # torchvision's RandomResizedCrop.get_params
            target = area * rng.uniform(0.08, 1.0)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            w, h = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
            if 0 < w <= width and 0 < h <= height:
                y, x = rng.randint(0, height - h), rng.randint(0, width - w)
                box = (x, y, x + w, y + h)
                break
        if box is None:
            side = min(width, height)
            box = ((width - side) // 2, (height - side) // 2, (width + side) // 2,
                   (height + side) // 2)
        out = img.resize((SIZE, SIZE), Image.BILINEAR, box=box)
        if rng.random() < 0.5:
            out = out.transpose(Image.FLIP_LEFT_RIGHT)
        return np.asarray(out)


def dataloader(files: List[str], images: int, cores: int) -> float:
    import torch

    loader = torch.utils.data.DataLoader(_PilFiles(files), batch_size=BATCH, shuffle=True,
                                         num_workers=cores, persistent_workers=False,
                                         prefetch_factor=4)
    def forever():  # epochs back to back, as a training loop sees them
        while True:
            yield from loader

    return stream_rate((int(b.shape[0]) for b in forever()), images, warmup=2 * cores)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "crop-bench"))
    ap.add_argument("--small", type=int, default=600, help="500x375 photos")
    ap.add_argument("--large", type=int, default=120, help="12-megapixel photos")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--images", type=int, default=3072, help="images timed per feed row")
    ap.add_argument("--rows", default="pixels,one,limit,feed,tf,dali,torch")
    ap.add_argument("--json", help="write every round's figures here")
    args = ap.parse_args(argv)
    from ray_ingest.runtime import ensure_ray, usable_cores

    os.makedirs(args.workdir, exist_ok=True)
    shards = make_inputs(args.workdir, args.small, args.large)
    cores = usable_cores()
    rows = set(args.rows.split(","))
    if "feed" in rows:
        ensure_ray()
    results: Dict[str, List[Dict[str, float]]] = {name: [] for name in shards}
    for r in range(args.rounds):
        for name, path in shards.items():
            encoded, h, w = _records(path)
            fig: Dict[str, float] = {}
            if "pixels" in rows and r == 0:
                fig.update(pixels(encoded, h, w))
            if "one" in rows or "cause" in rows:
                fig.update(one_core(encoded, h, w, per_image_peers="cause" in rows))
            if "cause" in rows:
                fig["core scaling"] = scaling(encoded, h, w, cores)
            if "limit" in rows:
                fig["limit"] = limit(encoded, h, w, cores)
            if "feed" in rows:
                fig["Ray Train feed"] = ray_train_feed(path, args.images)
            if "tf" in rows:
                fig.update(tfdata(path, args.images))
            if "dali" in rows:
                from ray_ingest.bench.peers import dali

                why = dali.missing()
                if why is None:
                    fig["DALI"] = dali_crop(path, args.images, cores)
                elif r == 0:
                    print(f"not run: DALI ({why})", flush=True)
            if "torch" in rows:
                files = stored_files(os.path.join(args.workdir, f"files-{name}"), encoded)
                fig["DataLoader PIL"] = dataloader(files, args.images // 2, cores)
            results[name].append(fig)
            print(f"round {r + 1} {name}: " + ", ".join(
                f"{k} {v:.2f}" if k.startswith(("MAD", "core")) else f"{k} {v:.0f}/s"
                for k, v in fig.items()), flush=True)
    print(f"\n{cores} cores; ratios per round, median over {args.rounds} rounds:")
    for name, rounds in results.items():
        def med(f):
            vals = [f(x) for x in rounds]
            return float(np.median(vals)) if all(v == v for v in vals) else float("nan")

        tf_best = lambda x: max((v for k, v in x.items() if k.startswith("tf.data")),  # noqa
                                default=float("nan"))
        lines = {
            "fused / full, 1 core (>= 1.5)": lambda x: x["fused 1 core"] / x["full 1 core"],
            "feed / limit (>= 0.8)": lambda x: x["Ray Train feed"] / x["limit"],
            "feed / best tf.data (>= 1.3)": lambda x: x["Ray Train feed"] / tf_best(x),
            "feed / DataLoader PIL (>= 2)": lambda x: x["Ray Train feed"] / x["DataLoader PIL"],
            "feed / DALI (>= 1.0)": lambda x: x["Ray Train feed"] / x["DALI"],
            "fused / tf.data, 1 core": lambda x: x["fused 1 core"] / x["tf.data 1 core"],
            "fused / PIL, 1 core": lambda x: x["fused 1 core"] / x["PIL 1 core"],
            "core scaling (1.0: cores add up)": lambda x: x["core scaling"],
        }
        for label, f in lines.items():
            try:
                print(f"  {name:9} {label:32} {med(f):.2f}")
            except KeyError:
                pass
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cores": cores, "rounds": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
