"""``ray-ingest demo``: the main job end to end on an embedded Ray instance and synthetic data."""

from __future__ import annotations

import os
import time

from ray_ingest import fs


def _step(title: str) -> float:
    print(f"\n=== {title} ===", flush=True)
    return time.time()


def run_demo(workdir: str = "demo-data", num_images: int = 2000, classes: int = 10,
             size: int = 224, bench_images: int = 2000, bench_repeats: int = 3) -> None:
    from ray_ingest.convert import ConvertOptions, convert
    from ray_ingest.runtime import ensure_ray
    from ray_ingest.synth import SynthSpec, synthesize

    started = time.time()
    workdir = fs.normalize(workdir)
    images = fs.join(workdir, "images")
    shards = fs.join(workdir, f"shards-{size}")
    ensure_ray()

    t = _step(f"1. synth: {num_images} JPEGs of {classes} classes -> {images}")
    marker = images + ".complete"  # beside the tree, not in it
    if fs.exists(marker):
        print(f"already there (delete {images} to redraw)")
    else:
        synthesize(SynthSpec(out=images, num_images=num_images, num_classes=classes))
        fs.write_bytes(marker, b"")
        print(f"drew {num_images} images in {time.time() - t:.1f} s")

    _step(f"2. convert: {images} -> {shards} ({size}x{size} JPEG shards)")
    report = convert(images, shards, ConvertOptions(size=size, overwrite=True, shard_size_mb=10))
    print(report.summary_line(), flush=True)

    bench_out = fs.join(workdir, "bench")
    _step(f"3. throughput: the tf.data study next to the Ray rows -> {bench_out}")
    from ray_ingest.bench import BenchConfig, format_table, run_bench

    report = run_bench(BenchConfig(data=shards, images=bench_images, warmup=300,
                                   repeats=bench_repeats, out=bench_out))
    print()
    print(format_table(report))

    print(f"\ndemo finished in {time.time() - started:.0f} s; outputs under {workdir}")
