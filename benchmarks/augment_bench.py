"""Augmentation micro-benchmark: the vectorized batch ops against the same augmentation applied
per image, in one run, on CPU here and on the GPU where there is one.

    python benchmarks/augment_bench.py [--framework tf|torch|both] [--batch 128] [--size 224]

Per image means the same ops on one image at a time: ``tf.map_fn`` over the batch for
TensorFlow, a Python loop over the batch for torch. Prints images/s and the speed-up, and
writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from ray_ingest.augment import AugmentConfig  # noqa: E402


def _time_pair(a, b, reps: int, sync=lambda: None):
    """Median seconds of ``a`` and of ``b``, run alternately (a shared machine's drifts then
    fall on both alike), after one untimed call of each (compilation, allocation)."""
    times = ([], [])
    for fn in (a, b):
        fn()
        sync()
    for _ in range(reps):
        for fn, out in zip((a, b), times):
            t = time.perf_counter()
            fn()
            sync()
            out.append(time.perf_counter() - t)
    return statistics.median(times[0]), statistics.median(times[1])


def bench_tf(images: np.ndarray, cfg: AugmentConfig, reps: int):
    import tensorflow as tf

    from ray_ingest.augment import tf_ops

    device = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    with tf.device(device):
        x = tf.constant(images)
        seed = tf.constant([1, 2], tf.int64)

        @tf.function
        def vectorized(x):
            return tf_ops.augment(x, cfg, seed)

        @tf.function
        def per_image(x):
            def one(args):
                img, i = args
                s = tf.stack([tf.constant(1, tf.int64), tf.cast(i, tf.int64)])
                return tf_ops.augment(img[None], cfg, s)[0]

            return tf.map_fn(one, (x, tf.range(tf.shape(x)[0])),
                             fn_output_signature=tf.float32)

        v, p = _time_pair(lambda: vectorized(x).numpy(), lambda: per_image(x).numpy(), reps)
    return device, v, p


def bench_torch(images: np.ndarray, cfg: AugmentConfig, reps: int):
    import torch

    from ray_ingest.augment import torch_ops

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x = torch.from_numpy(images).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    gen = torch.Generator(device=dev)
    gen.manual_seed(0)

    def vectorized():
        return torch_ops.augment(x, cfg, gen)

    def per_image():
        return torch.cat([torch_ops.augment(x[i : i + 1], cfg, gen) for i in range(len(x))])

    return (str(dev),) + _time_pair(vectorized, per_image, reps, sync)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--framework", default="both", choices=("tf", "torch", "both"))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--size", type=int, default=224, help="input and output side")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", default="augment_bench.json")
    args = ap.parse_args(argv)
    cfg = AugmentConfig(size=args.size)
    images = np.random.default_rng(0).integers(0, 256, (args.batch, args.size, args.size, 3),
                                               dtype=np.uint8)
    rows = []
    frameworks = ["tf", "torch"] if args.framework == "both" else [args.framework]
    for fw in frameworks:
        try:
            device, v, p = (bench_tf if fw == "tf" else bench_torch)(images, cfg, args.reps)
        except ImportError as e:
            print(f"{fw}: skipped ({e})")
            continue
        rows.append({"framework": fw, "device": device, "batch": args.batch, "size": args.size,
                     "vectorized_images_per_second": args.batch / v,
                     "per_image_images_per_second": args.batch / p, "speedup": p / v})
    print(f"{'framework':<10}{'device':<10}{'vectorized img/s':>18}{'per-image img/s':>17}{'speed-up':>10}")
    for r in rows:
        print(f"{r['framework']:<10}{r['device']:<10}{r['vectorized_images_per_second']:>18.0f}"
              f"{r['per_image_images_per_second']:>17.0f}{r['speedup']:>9.1f}x")
    with open(args.json, "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%d"), "machine": platform.platform(),
                   "cpus": os.cpu_count(), "rows": rows}, f, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
