"""``ray-ingest demo``: the main job end to end on an embedded Ray instance and synthetic data:
synth → convert (224 px JPEG shards) → the throughput study → convert (36 px) → a short
2-worker training run on Ray Train."""

from __future__ import annotations

import time

from ray_ingest import fs


def _step(title: str) -> float:
    print(f"\n=== {title} ===", flush=True)
    return time.time()


def run_demo(workdir: str = "demo-data", num_images: int = 3000, classes: int = 10,
             bench_images: int = 1000, bench_repeats: int = 2, train_epochs: int = 6,
             framework: str = "tf") -> None:
    from ray_ingest.bench import BenchConfig, format_table, run_bench
    from ray_ingest.convert import ConvertOptions, convert
    from ray_ingest.runtime import ensure_ray
    from ray_ingest.tools.synth import SynthSpec, synthesize
    from ray_ingest.train import TrainConfig, train

    started = time.time()
    workdir = fs.normalize(workdir)
    images = fs.join(workdir, "images")
    shards = fs.join(workdir, "shards-224")
    small = fs.join(workdir, "shards-36")
    ensure_ray()

    t = _step(f"1/5 synth: {num_images} JPEGs of {classes} classes -> {images}")
    marker = images + ".complete"  # beside the tree, not in it
    if fs.exists(marker):
        print(f"already there (delete {images} to draw again)")
    else:
        synthesize(SynthSpec(out=images, num_images=num_images, num_classes=classes))
        fs.write_bytes(marker, b"")
        print(f"drew {num_images} images in {time.time() - t:.1f} s")

    _step(f"2/5 convert: {images} -> {shards} (224x224 JPEG shards)")
    report = convert(images, shards, ConvertOptions(size=224, overwrite=True, shard_size_mb=10))
    print(report.summary_line(), flush=True)

    bench_out = fs.join(workdir, "bench")
    _step(f"3/5 throughput: the tf.data study next to the Ray rows -> {bench_out}")
    from ray_ingest.bench.rows import TRAIN_ROWS, available_rows

    rows = [r for r in available_rows() if r not in TRAIN_ROWS.values()]  # a fit a run: slow
    bench = run_bench(BenchConfig(data=shards, images=bench_images, warmup=200,
                                  repeats=bench_repeats, out=bench_out, rows=rows))
    print()
    print(format_table(bench), flush=True)

    _step(f"4/5 convert for training: {images} -> {small} (36x36)")
    print(convert(images, small, ConvertOptions(size=36, overwrite=True)).summary_line(),
          flush=True)

    runs = fs.join(workdir, "runs")
    name = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    _step(f"5/5 train: {framework} small CNN, 2 workers, {train_epochs} epochs at 32 px -> {runs}/{name}")
    final = train(TrainConfig(data=small, framework=framework, epochs=train_epochs,
                              batch_size=64, num_workers=2, image_size=32, storage_path=runs,
                              name=name, metrics_out=fs.join(workdir, "train-metrics.json")))
    print(f"\ndemo finished in {time.time() - started:.0f} s; outputs under {workdir} "
          f"(bench report: {bench_out}/report.md; final val accuracy {final['val_accuracy']:.3f})")
