"""GPU measurements of the whole path, in one command (made for one H100 + 16 CPU cores).

    python benchmarks/gpu_bench.py --out $OUT [--images 20000] [--photos CACHE] [--smoke]

(a) augmentation: vectorized torch ops vs the same ops per image, 224x224, on the GPU;
    and its share of a ResNet-50 training step;
(b) ResNet-50 training images/s fed by our pipeline from JPEG shards vs a batch kept on the GPU
    (``--synthetic-data``): the data-stall ratio real / synthetic, and the data-wait share, for
    each decode placement (``--decode workers``, ``consumer``, ``gpu``);
(c) ingestion images/s to a consumer with 1, 2, 4, 8, 16 CPU workers: scaling efficiency
    rate(k) / (k * rate(1));
(d) JPEG decode on the GPU (``torchvision.io.decode_jpeg(device="cuda")``, where importable)
    vs libjpeg-turbo on one CPU core.

Targets: real/synthetic >= 0.95, augmentation <= 5 % of the step, efficiency >= 0.8 at 16
workers. Prints a table; writes gpu_bench.json (and the training metrics) to --out.
``--photos CACHE`` draws natural photos (``benchmarks/photos.py``; CACHE holds its source
photographs, e.g. carried to a machine without network) instead of the synthetic shapes.
``--smoke`` shrinks everything to run on a CPU machine in a minute (checks the script only).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # augment_bench


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bench_augment(batch: int, size: int, reps: int):
    """(a): the augmentation micro-benchmark's torch rows (benchmarks/augment_bench.py)."""
    import numpy as np

    from augment_bench import bench_torch
    from ray_ingest.augment import AugmentConfig

    images = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    device, vec, per = bench_torch(images, AugmentConfig(size=size), reps)
    return {"device": device, "batch": batch, "size": size,
            "vectorized_images_per_second": batch / vec, "per_image_images_per_second": batch / per,
            "speedup": per / vec, "vectorized_seconds_per_batch": vec}


def bench_step_share(batch: int, size: int, reps: int, model_name: str):
    """Seconds of one training step with and without augmentation (same batch on the GPU)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from ray_ingest.augment import AugmentConfig
    from ray_ingest.augment import torch_ops
    from ray_ingest.train.models_torch import build_model

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = dev.type == "cuda"
    fmt = torch.channels_last if cuda else torch.contiguous_format
    model = build_model(model_name, 1000).to(dev, memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    cfg = AugmentConfig(size=size)
    images = torch.from_numpy(np.random.default_rng(0).integers(
        0, 256, (batch, size, size, 3), dtype=np.uint8)).to(dev)
    labels = torch.randint(0, 1000, (batch,), device=dev)
    pre = torch_ops.augment(images, cfg, torch.Generator(device=dev).manual_seed(0))
    gen = torch.Generator(device=dev).manual_seed(1)

    def step(augment: bool):
        x = torch_ops.augment(images, cfg, gen) if augment else pre
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(x.contiguous(memory_format=fmt)).float(), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(augment):
        for _ in range(3):
            step(augment)
        _sync()
        t = time.perf_counter()
        for _ in range(reps):
            step(augment)
        _sync()
        return (time.perf_counter() - t) / reps

    with_aug, without = timed(True), timed(False)
    return {"model": model_name, "batch": batch, "step_seconds_with_augment": with_aug,
            "step_seconds_without_augment": without,
            "augment_share_of_step": max(0.0, with_aug - without) / with_aug}


def bench_ingest_scaling(data: str, workers, images: int):
    from ray_ingest.read import read_records

    rows = []
    for k in workers:
        ds = read_records(data, "train", repeat=50, concurrency=k)
        it = iter(ds.iter_batches(batch_size=256, batch_format="numpy", prefetch_batches=8))
        n = 0
        while n < 1024:  # warm-up: tasks started, workers up
            n += len(next(it)["label"])
        t, n = time.perf_counter(), 0
        while n < images:
            n += len(next(it)["label"])
        rate = n / (time.perf_counter() - t)
        rows.append({"cpu_workers": k, "images_per_second": rate})
        del it
        print(f"  ingest with {k:2d} CPU workers: {rate:8.0f} images/s", flush=True)
    base = rows[0]["images_per_second"]
    for r in rows:
        r["scaling_efficiency"] = r["images_per_second"] / (r["cpu_workers"] * base)
    return rows


def bench_decode(data: str, n: int):
    import numpy as np
    import simplejpeg

    import itertools

    from ray_ingest.format.manifest import read_manifest
    from ray_ingest.format.records import iter_records

    m = read_manifest(data)
    encoded = [r.encoded for r in itertools.islice(iter_records(data, "train", manifest=m), n)]
    out = np.empty((m.height, m.width, 3), np.uint8)
    t = time.perf_counter()
    for e in encoded:
        simplejpeg.decode_jpeg(e, buffer=out, fastdct=True)
    cpu = len(encoded) / (time.perf_counter() - t)
    result = {"images": len(encoded), "cpu_one_core_images_per_second": cpu}
    try:
        import torch
        import torchvision
        from torchvision.io import decode_jpeg

        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA")
        datas = [torch.frombuffer(bytearray(e), dtype=torch.uint8) for e in encoded]
        for chunk in (datas[:64],):
            decode_jpeg(chunk, device="cuda")
        _sync()
        t = time.perf_counter()
        for i in range(0, len(datas), 256):
            decode_jpeg(datas[i:i + 256], device="cuda")
        _sync()
        result["gpu_images_per_second"] = len(datas) / (time.perf_counter() - t)
        result["torchvision"] = torchvision.__version__
    except Exception as e:  # noqa: BLE001 - optional row
        result["gpu_decode"] = f"not measured: {type(e).__name__}: {e}"
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".")
    ap.add_argument("--images", type=int, default=20000, help="synthetic JPEGs to convert")
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", default="1,2,4,8,16")
    ap.add_argument("--photos", help="natural photos: the cache folder of benchmarks/photos.py")
    ap.add_argument("--decodes", default="workers,consumer,gpu",
                    help="decode placements to train with (gpu: where a GPU decoder imports)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, CPU: checks the script")
    args = ap.parse_args(argv)
    if args.smoke:
        args.images, args.model, args.batch, args.epochs, args.workers = 600, "small_cnn", 32, 1, "1,2"
    import ray
    import torch

    from ray_ingest.convert import convert
    from ray_ingest.runtime import ensure_ray
    from ray_ingest.tools.synth import SynthSpec, synthesize
    from ray_ingest.train import TrainConfig, train

    os.makedirs(args.out, exist_ok=True)
    ensure_ray()
    work = tempfile.mkdtemp(prefix="gpu-bench-")
    size = 64 if args.smoke else 224
    t = time.time()
    if args.photos:
        import photos

        photos.make(f"{work}/src", args.images, 500, 375, cache=args.photos)
    else:
        synthesize(SynthSpec(out=f"{work}/src", num_images=args.images, num_classes=10,
                             width=320, height=240))
    conv = convert(f"{work}/src", f"{work}/shards", size=size, val_fraction=0.02)
    print(conv.summary_line(), f"(data ready in {time.time() - t:.0f} s)", flush=True)
    result = {"date": time.strftime("%Y-%m-%d"), "gpu": torch.cuda.get_device_name(0)
              if torch.cuda.is_available() else None, "cpus": os.cpu_count(),
              "platform": platform.platform(), "torch": torch.__version__, "ray": ray.__version__,
              "convert_images_per_second": conv.images_per_second}
    reps = 3 if args.smoke else 20
    result["augment"] = bench_augment(args.batch if not args.smoke else 16, size, reps)
    print("  augment:", result["augment"], flush=True)
    result["step_share"] = bench_step_share(args.batch, size, reps, args.model)
    print("  step:", result["step_share"], flush=True)
    result["decode"] = bench_decode(f"{work}/shards", 2000)
    print("  decode:", result["decode"], flush=True)
    from ray_ingest.read.gpu import probe

    runs = {}
    decodes = [d for d in args.decodes.split(",") if d != "gpu" or probe("torch")[0]]
    for name in ["synthetic"] + decodes:
        synthetic = name == "synthetic"
        cfg = TrainConfig(data=f"{work}/shards", framework="torch", model=args.model,
                          epochs=args.epochs, batch_size=args.batch, num_workers=1,
                          storage_path=f"{work}/runs", name=f"run-{name}",
                          synthetic_data=synthetic, image_size=size, prefetch_batches=8,
                          decode="workers" if synthetic else name)
        try:
            runs[name] = train(cfg)
        except Exception as e:  # noqa: BLE001 - one placement failing must not lose the rest
            runs[name] = {"error": f"{type(e).__name__}: {e}"}
            print(f"  train --decode {name}: {runs[name]['error']}", flush=True)
    result["train"] = runs
    real = next((runs[d] for d in ("gpu", "consumer", "workers")
                 if d in runs and "error" not in runs[d]), None)
    result["real_over_synthetic"] = (real["images_per_second"]
                                     / runs["synthetic"]["images_per_second"]) if real else None
    workers = [int(w) for w in args.workers.split(",") if int(w) <= (os.cpu_count() or 1)]
    result["ingest_scaling"] = bench_ingest_scaling(f"{work}/shards", workers,
                                                    2000 if args.smoke else 20000)
    eff = result["ingest_scaling"][-1]["scaling_efficiency"]
    a, s = result["augment"], result["step_share"]
    print()
    print(f"{'measure':<52}{'value':>14}{'target':>12}")
    print(f"{'(a) vectorized augmentation, images/s':<52}{a['vectorized_images_per_second']:>14.0f}{'':>12}")
    print(f"{'    per-image augmentation, images/s':<52}{a['per_image_images_per_second']:>14.0f}{'':>12}")
    print(f"{'    augmentation share of a ' + args.model + ' step':<52}{s['augment_share_of_step']:>14.1%}{'<= 5%':>12}")
    print(f"{'(b) training images/s, synthetic data':<52}{runs['synthetic']['images_per_second']:>14.0f}{'':>12}")
    for d in decodes:
        r = runs[d]
        if "error" in r:
            print(f"{'    --decode ' + d:<52}{'failed':>14}")
            continue
        print(f"{'    training images/s, --decode ' + d:<52}{r['images_per_second']:>14.0f}"
              f"{'wait %.1f%%' % (100 * r['data_wait_share']):>12}")
    if result["real_over_synthetic"]:
        print(f"{'    best real / synthetic':<52}{result['real_over_synthetic']:>14.2f}{'>= 0.95':>12}")
    for r in result["ingest_scaling"]:
        print(f"{'(c) ingest, %d CPU workers, images/s' % r['cpu_workers']:<52}{r['images_per_second']:>14.0f}"
              f"{'eff %.2f' % r['scaling_efficiency']:>12}")
    d = result["decode"]
    print(f"{'(d) JPEG decode, one CPU core, images/s':<52}{d['cpu_one_core_images_per_second']:>14.0f}{'':>12}")
    print(f"{'    JPEG decode, GPU (nvjpeg), images/s':<52}{d.get('gpu_images_per_second', float('nan')):>14.0f}{'':>12}")
    print(f"scaling efficiency at {workers[-1]} workers: {eff:.2f} (target >= 0.8)")
    with open(os.path.join(args.out, "gpu_bench.json"), "w") as f:
        json.dump(result, f, indent=2, default=str)
    print(f"wrote {os.path.join(args.out, 'gpu_bench.json')}")


if __name__ == "__main__":
    main()
