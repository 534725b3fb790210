"""``ray-ingest demo``: the main job end to end on an embedded Ray instance and synthetic data:
synth → convert (224 px JPEG shards) → convert (36 px, for training on CPUs) → a short 2-worker
training run on Ray Train → does the input keep up? (the reader's images/s next to the images/s
the training consumed and its data-wait share)."""

from __future__ import annotations

import time
from typing import List

from ray_ingest import fs

STEPS = 5


def _step(n: int, title: str) -> None:
    print(f"\n=== {n}/{STEPS} {title} ===", flush=True)


def keeps_up_lines(reader: float, reader_224: float, consumed: float, data_wait: float,
                   workers: int) -> List[str]:
    """The answer to "does the input keep up?": what the reader delivers next to what the
    training run consumed, and how long the training waited for its batches."""
    ratio = reader / consumed if consumed > 0 else float("inf")
    lines = [
        f"reader delivers     {reader:9,.0f} images/s  (read_records, the training's shards, "
        "measured alone)",
        f"training consumed   {consumed:9,.0f} images/s  ({workers} workers, last epoch)",
        f"training waited for data {data_wait:.1%} of its step time in the last epoch",
    ]
    if ratio >= 1.0:
        lines.append(f"-> the input keeps up: the reader delivers {ratio:.1f}x what training "
                     "consumed; a faster model or more workers have that much headroom.")
    else:
        lines.append(f"-> the input is the bottleneck: the reader delivers {ratio:.2f}x what "
                     "training could consume; add CPUs for reading or decode on the consumer "
                     "(read_records(..., decode=\"consumer\") with iter_images).")
    lines.append(f"at 224 px the reader delivers {reader_224:,.0f} images/s")
    return lines


def _reader_rate(data: str, images: int, repeats: int) -> float:
    """images/s of ``read_records(...).iter_batches``, the way a training worker reads."""
    from ray_ingest.bench import BenchConfig, run_bench
    from ray_ingest.bench.rows import OURS_ITER

    report = run_bench(BenchConfig(data=data, images=images, warmup=min(200, images),
                                   repeats=repeats, batch_size=64, rows=[OURS_ITER]))
    return report["rows"][0]["images_per_second"]


def run_demo(workdir: str = "demo-data", num_images: int = 3000, classes: int = 10,
             bench_images: int = 2000, bench_repeats: int = 2, train_epochs: int = 6,
             framework: str = "tf") -> None:
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

    _step(1, f"synth: {num_images} JPEGs of {classes} classes -> {images}")
    marker = images + ".complete"  # beside the tree, not in it
    if fs.exists(marker):
        print(f"already there (delete {images} to draw again)")
    else:
        synthesize(SynthSpec(out=images, num_images=num_images, num_classes=classes))
        fs.write_bytes(marker, b"")

    _step(2, f"convert: {images} -> {shards} (224x224 JPEG shards)")
    report = convert(images, shards, ConvertOptions(size=224, overwrite=True, shard_size_mb=10))
    print(report.summary_line(), flush=True)

    _step(3, f"convert for training: {images} -> {small} (36x36)")
    print(convert(images, small, ConvertOptions(size=36, overwrite=True)).summary_line(),
          flush=True)

    runs = fs.join(workdir, "runs")
    name = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    workers = 2
    _step(4, f"train: {framework} small CNN, {workers} workers, {train_epochs} epochs at 32 px "
          f"-> {runs}/{name}")
    final = train(TrainConfig(data=small, framework=framework, epochs=train_epochs,
                              batch_size=64, num_workers=workers, image_size=32,
                              storage_path=runs, name=name,
                              metrics_out=fs.join(workdir, "train-metrics.json")))

    _step(5, "does the input keep up?")
    lines = keeps_up_lines(
        reader=_reader_rate(small, bench_images, bench_repeats),
        reader_224=_reader_rate(shards, bench_images, bench_repeats),
        consumed=final["images_per_second"], data_wait=final["data_wait_share"],
        workers=workers)
    print("\n".join(lines), flush=True)

    print(f"\ndemo finished in {time.time() - started:.0f} s; outputs under {workdir}. "
          f"The full throughput study (tf.data next to the Ray readers): "
          f"ray-ingest bench {shards}")
