"""Conversion throughput, in one run on the same input, against its references.

    python benchmarks/convert_bench.py [--num-images 2000] [--size 500x375] [--repeats 1]
    python benchmarks/convert_bench.py --data PHOTOS [--whole-run] [--skip tf,stock]

``--data`` takes a class-folder tree (natural photos: ``benchmarks/photos.py``); without it the
synthetic set is drawn. Rows (all produce TFRecord shards of 224x224 images from the same JPEG
folder, read from the page cache):
  * ray-ingest convert     - our Ray Data pipeline (Ray already started, listing and commit timed)
  * python multiprocess    - one plain Python process per core running the same library
                             function (decode at the smallest DCT scale that covers 224,
                             resize, encode) and our record writer: the machine's limit
  * python multiprocess, full decode - the same, decoding every JPEG at full size first: what
                             a converter without DCT scaling does
  * tensorflow loop        - one TensorFlow process: read_file, decode_jpeg, resize, crop,
                             encode_jpeg, tf.train.Example, tf.io.TFRecordWriter
  * ray data stock         - ray.data.read_images(size=...) -> Dataset.write_tfrecords
With ``--whole-run``, two rows time whole commands, start-up included: ``ray-ingest convert``
and the full-decode converter run as its own process (``--full-decode-converter SRC OUT``).

Prints images/s and ratios; writes a JSON with every figure.
"""

from __future__ import annotations

import argparse
import glob
import json
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---- the machine's limit: plain Python processes --------------------------------------------


def _full_decode_process(data: bytes, spec):
    """decode at full size (no DCT scaling) -> the same resize -> encode."""
    import simplejpeg

    from ray_ingest.convert.images import encode_pixels, resize_image

    return encode_pixels(resize_image(simplejpeg.decode_jpeg(data, colorspace="RGB"), spec),
                         spec), None


def _limit_worker(args):
    files, out_path, size, full = args
    from ray_ingest.convert.images import ImageSpec, process_image
    from ray_ingest.format.example import encode_image_example
    from ray_ingest.format.framing import TFRecordWriter

    spec = ImageSpec(size=size)
    process = _full_decode_process if full else process_image
    with open(out_path, "wb") as f:
        w = TFRecordWriter(f)
        for path in files:
            with open(path, "rb") as g:
                data = g.read()
            encoded, _ = process(data, spec)
            w.write(encode_image_example(encoded=encoded, image_format="jpeg", height=size,
                                         width=size, channels=3, label=0, class_text="x",
                                         filename=path))
    return len(files)


def _warm(_):
    """Imports everything _limit_worker uses, so that no import is timed."""
    import simplejpeg  # noqa: F401
    from PIL import Image  # noqa: F401

    import ray_ingest.convert.images  # noqa: F401
    import ray_ingest.format.example  # noqa: F401
    import ray_ingest.format.framing  # noqa: F401

    time.sleep(0.2)  # so that every pool process gets one of the warm-up calls
    return os.getpid()


def bench_limit(files, out_dir, size, procs, full=False):
    ctx = mp.get_context("spawn")
    with ctx.Pool(procs) as pool:
        pids = set(pool.map(_warm, range(procs * 2), chunksize=1))  # start, import: untimed
        assert len(pids) == procs, pids
        chunks = [files[i::procs] for i in range(procs)]
        t = time.perf_counter()
        n = sum(pool.map(_limit_worker, [(c, os.path.join(out_dir, f"part{i}.tfrecord"), size,
                                          full) for i, c in enumerate(chunks)]))
        return n, time.perf_counter() - t


def full_decode_converter(src, out_dir, size, procs) -> int:
    """A plain converter without DCT scaling, as its own command (start-up included when timed
    from outside): lists SRC, one process per core decoding at full size."""
    files = sorted(glob.glob(os.path.join(src, "*", "*.jpg")))
    os.makedirs(out_dir, exist_ok=True)
    chunks = [files[i::procs] for i in range(procs)]
    with mp.get_context("spawn").Pool(procs) as pool:
        return sum(pool.map(_limit_worker, [(c, os.path.join(out_dir, f"part{i}.tfrecord"),
                                             size, True) for i, c in enumerate(chunks)]))


def bench_command(cmd, n):
    """Times a whole command (start-up included)."""
    import subprocess

    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return n, seconds


# ---- one TensorFlow process -------------------------------------------------------------------


def bench_tf_loop(files, out_dir, size):
    import tensorflow as tf

    def feature_bytes(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def feature_int(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    t = time.perf_counter()
    with tf.io.TFRecordWriter(os.path.join(out_dir, "tf.tfrecord")) as w:
        for path in files:
            img = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
            h, w_ = img.shape[0], img.shape[1]
            scale = size / min(h, w_)
            img = tf.image.resize(img, (max(size, round(h * scale)), max(size, round(w_ * scale))))
            img = tf.image.resize_with_crop_or_pad(img, size, size)
            enc = tf.io.encode_jpeg(tf.cast(tf.round(img), tf.uint8), quality=90).numpy()
            ex = tf.train.Example(features=tf.train.Features(feature={
                "image/encoded": feature_bytes(enc), "image/format": feature_bytes(b"jpeg"),
                "image/height": feature_int(size), "image/width": feature_int(size),
                "image/channels": feature_int(3), "image/class/label": feature_int(0),
                "image/filename": feature_bytes(path.encode()),
            }))
            w.write(ex.SerializeToString())
    return len(files), time.perf_counter() - t


# ---- Ray Data's stock path --------------------------------------------------------------------


def bench_ray_stock(src, out_dir, size):
    import ray

    t = time.perf_counter()
    ds = ray.data.read_images(src, size=(size, size), mode="RGB", include_paths=True)
    ds.write_tfrecords(out_dir)
    n = sum(1 for _ in glob.glob(os.path.join(src, "*", "*")))
    return n, time.perf_counter() - t


# ---- ours ---------------------------------------------------------------------------------------


def bench_ours(src, out_dir, size):
    from ray_ingest.convert import convert

    t = time.perf_counter()
    report = convert(src, out_dir, size=size, overwrite=True)
    assert report.num_written == report.num_inputs, report.summary_line()
    return report.num_inputs, time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num-images", type=int, default=2000)
    ap.add_argument("--size", default="500x375", help="input JPEG size WxH")
    ap.add_argument("--out-size", type=int, default=224)
    ap.add_argument("--data", help="input folder (synthesized there if missing)")
    ap.add_argument("--repeats", type=int, default=1, help="runs per row; the median is reported")
    ap.add_argument("--skip", default="",
                    help="comma-separated rows to skip: limit,full,tf,stock,ours")
    ap.add_argument("--whole-run", action="store_true",
                    help="also time whole commands, start-up included")
    ap.add_argument("--full-decode-converter", nargs=2, metavar=("SRC", "OUT"),
                    help="run only the plain full-decode converter (used by --whole-run)")
    ap.add_argument("--json", default="convert_bench.json")
    args = ap.parse_args(argv)
    if args.full_decode_converter:
        src, out = args.full_decode_converter
        n = full_decode_converter(src, out, args.out_size, os.cpu_count() or 1)
        print(f"full-decode converter: {n} images -> {out}")
        return 0

    import ray

    from ray_ingest.runtime import ensure_ray
    from ray_ingest.tools.synth import SynthSpec, parse_size, synthesize

    work = tempfile.mkdtemp(prefix="convert-bench-")
    src = args.data or os.path.join(work, "src")
    w, h = parse_size(args.size)
    procs = os.cpu_count() or 1
    if not os.path.isdir(src):
        print(f"synthesizing {args.num_images} JPEGs {w}x{h} in {src} ...", flush=True)
        synthesize(SynthSpec(out=src, num_images=args.num_images, width=w, height=h, seed=1))
    files = sorted(glob.glob(os.path.join(src, "*", "*.jpg")))
    # Warm the page cache so every row reads from memory.
    for f in files:
        with open(f, "rb") as g:
            g.read()
    skip = set(filter(None, args.skip.split(",")))
    rows = {}

    def run(name, fn):
        times = []
        for r in range(args.repeats):
            out = os.path.join(work, f"{name}-{r}")
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            n, sec = fn(out)
            times.append(sec)
            print(f"  {name:<22} run {r + 1}: {n} images in {sec:.2f} s = {n / sec:.0f} images/s",
                  flush=True)
            shutil.rmtree(out, ignore_errors=True)
        med = statistics.median(times)
        rows[name] = {"images": n, "seconds": med, "images_per_second": n / med,
                      "runs_seconds": times}

    if "limit" not in skip:
        run("python multiprocess", lambda out: bench_limit(files, out, args.out_size, procs))
    if "full" not in skip:
        run("python multiprocess, full decode",
            lambda out: bench_limit(files, out, args.out_size, procs, full=True))
    if args.whole_run:
        here = os.path.abspath(__file__)
        cli = os.path.join(os.path.dirname(sys.executable), "ray-ingest")
        run("ray-ingest convert, whole command", lambda out: bench_command(
            [cli, "convert", src, out, "--size", str(args.out_size), "--overwrite"], len(files)))
        run("full-decode converter, whole command", lambda out: bench_command(
            [sys.executable, here, "--out-size", str(args.out_size), "--full-decode-converter",
             src, out], len(files)))
    ensure_ray()
    # A small warm-up conversion so worker start-up is outside every timed Ray row.
    from ray_ingest.convert import convert

    convert(src, os.path.join(work, "warm"), size=32,
            overwrite=True, shard_size_mb=1)
    if "ours" not in skip:
        run("ray-ingest convert", lambda out: bench_ours(src, out, args.out_size))
    if "tf" not in skip:
        run("tensorflow loop", lambda out: bench_tf_loop(files, out, args.out_size))
    if "stock" not in skip:
        run("ray data stock", lambda out: bench_ray_stock(src, out, args.out_size))

    ours = rows.get("ray-ingest convert", {}).get("images_per_second")
    print()
    print(f"{'row':<24}{'images/s':>10}{'seconds':>10}{'ours / row':>12}")
    for name, r in rows.items():
        ratio = f"{ours / r['images_per_second']:.2f}x" if ours else "-"
        print(f"{name:<24}{r['images_per_second']:>10.0f}{r['seconds']:>10.2f}{ratio:>12}")
    verdict = {}
    rate = {name: r["images_per_second"] for name, r in rows.items()}
    for key, name in (("ours_vs_limit", "python multiprocess"),
                      ("ours_vs_full_decode", "python multiprocess, full decode"),
                      ("ours_vs_tf_loop", "tensorflow loop"),
                      ("ours_vs_ray_stock", "ray data stock")):
        if ours and name in rate:
            verdict[key] = ours / rate[name]
    whole = rate.get("ray-ingest convert, whole command")
    if whole and "full-decode converter, whole command" in rate:
        verdict["whole_command_vs_full_decode_converter"] = (
            whole / rate["full-decode converter, whole command"])
    print()
    for k, v in verdict.items():
        print(f"{k}: {v:.2f}x")
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": procs, "platform": platform.platform(), "python": platform.python_version(),
                    "ray": ray.__version__},
        "input": {"images": len(files), "folder": args.data or "synthetic", "size": args.size,
                  "out_size": args.out_size},
        "rows": rows,
        "ratios": verdict,
    }
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.json}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
