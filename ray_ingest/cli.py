"""``ray-ingest <verb>``: the command line. Each verb parses its arguments into the library's
config (one way: :func:`config_from_args`) and calls the library function that
``jobs/<job>.py`` and the benchmarks call too. A :class:`~ray_ingest.errors.RayIngestError`
(also one raised in a Ray task or a Ray Train worker) is the user's to fix: its message as the
last line and exit status 2; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from typing import Any, List, Optional

from ray_ingest.format import keys


def config_from_args(cls: type, args: argparse.Namespace, **overrides: Any):
    """The dataclass ``cls`` from the parsed arguments of the same names (plus ``overrides``)."""
    given = vars(args)
    values = {f.name: given[f.name] for f in dataclasses.fields(cls) if f.name in given}
    values.update(overrides)
    return cls(**values)


def _parser(sub, name: str, help: str, run) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help,
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.set_defaults(func=run)
    return p


# ---- convert -------------------------------------------------------------------------------


def add_convert_arguments(p: argparse.ArgumentParser) -> None:
    from ray_ingest.convert import ConvertOptions
    from ray_ingest.convert.images import RESIZE_MODES

    d = ConvertOptions()
    p.add_argument("src", help="class-folder tree, or a .csv/.jsonl list of path,label (path or URI)")
    p.add_argument("out", help="output folder (path or URI)")
    p.add_argument("--size", type=int, default=d.size, help="square output side")
    p.add_argument("--resize-mode", choices=RESIZE_MODES, default=d.resize_mode)
    p.add_argument("--encoding", choices=keys.ENCODINGS, default=d.encoding)
    p.add_argument("--quality", type=int, default=d.quality, help="JPEG quality")
    p.add_argument("--shard-size-mb", type=float, default=d.shard_size_mb)
    p.add_argument("--val-fraction", type=float, default=d.val_fraction)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--max-reject-fraction", type=float, default=d.max_reject_fraction)
    p.add_argument("--max-pixels", type=int, default=d.max_pixels,
                   help="reject images with more pixels, before decoding")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="images per map_batches call")
    p.add_argument("--overwrite", action="store_true", help="replace a finished output")
    p.add_argument("--report-json", help="also write the conversion summary to this JSON file")


def _run_convert(args) -> int:
    from ray_ingest.convert import ConvertOptions, convert

    report = convert(args.src, args.out, config_from_args(ConvertOptions, args))
    print(report.summary_line(), flush=True)
    m = report.manifest
    if m["conversions"]:
        print("  converted to RGB: " + ", ".join(f"{k} x{v}" for k, v in m["conversions"].items()))
    if m["num_rejected"] or m["num_ignored"]:
        reasons = ", ".join(f"{k} x{v}" for k, v in m["reject_reasons"].items())
        print(f"  rejected: {reasons or 'none'}; details in {args.out.rstrip('/')}/{m['rejects_file']}")
    if args.report_json:
        with open(args.report_json, "w") as f:
            json.dump({"summary": report.summary_line(), "images_per_second":
                       report.images_per_second, "seconds": report.seconds, "manifest": m}, f,
                      indent=2)
    return 0


# ---- synth ---------------------------------------------------------------------------------


def _add_synth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out")
    p.add_argument("--num-images", type=int, default=2000)
    p.add_argument("--classes", dest="num_classes", type=int, default=10)
    p.add_argument("--size", default="320x240", help="WxH")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quality", type=int, default=90)


def _run_synth(args) -> int:
    import time

    from ray_ingest.tools.synth import SynthSpec, parse_size, synthesize

    w, h = parse_size(args.size)
    spec = config_from_args(SynthSpec, args, width=w, height=h)
    t = time.time()
    n = synthesize(spec)
    print(f"synth: {n} images of {spec.num_classes} classes ({w}x{h}) in {time.time() - t:.1f} s "
          f"-> {args.out}", flush=True)
    return 0


# ---- demo ----------------------------------------------------------------------------------


def _add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", default="demo-data")
    p.add_argument("--num-images", type=int, default=3000)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--epochs", type=int, default=6, help="training epochs")
    p.add_argument("--framework", choices=("tf", "torch"), default="tf")


def _run_demo(args) -> int:
    from ray_ingest.tools.demo import run_demo

    run_demo(args.workdir, num_images=args.num_images, classes=args.classes,
             train_epochs=args.epochs, framework=args.framework)
    return 0


# ---- bench ---------------------------------------------------------------------------------


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    from ray_ingest.bench import BenchConfig

    d = BenchConfig(data="")
    p.add_argument("data", help="a conversion output (path or URI)")
    p.add_argument("--split", default=d.split)
    p.add_argument("--images", type=int, default=d.images, help="images timed per run")
    p.add_argument("--warmup", type=int, default=d.warmup, help="images skipped before timing")
    p.add_argument("--repeats", type=int, default=d.repeats)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="batch size of Ray rows")
    p.add_argument("--rows", type=lambda s: [r.strip() for r in s.split(",") if r.strip()],
                   help="comma-separated row names (default: all this machine can run)")
    p.add_argument("--out", default="bench-report", help="folder for report.json/.md/.png")


def _run_bench(args) -> int:
    from ray_ingest.bench import BenchConfig, format_table, run_bench

    report = run_bench(config_from_args(BenchConfig, args))
    print()
    print(format_table(report))
    print(f"\nwrote {args.out}/report.json, report.md, report.png", flush=True)
    return 0


# ---- train ---------------------------------------------------------------------------------


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    from ray_ingest.train.config import FRAMEWORKS, MODELS, TrainConfig

    d = TrainConfig(data="")
    p.add_argument("data", help="a conversion output (path or URI)")
    p.add_argument("--framework", choices=FRAMEWORKS, default=d.framework)
    p.add_argument("--model", choices=MODELS, default=d.model)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch size")
    p.add_argument("--num-workers", type=int, default=d.num_workers)
    p.add_argument("--use-gpu", action=argparse.BooleanOptionalAction, default=None,
                   help="default: use GPUs when the cluster has one per worker")
    p.add_argument("--cpus-per-worker", type=float, default=None,
                   help="default: chosen from the cluster")
    p.add_argument("--storage-path", default=d.storage_path)
    p.add_argument("--name", default=d.name, help="run name (folder under --storage-path)")
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    p.add_argument("--metrics-out", help="write the final metrics to this JSON file")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--image-size", type=int, default=None,
                   help="training resolution (default: the stored size)")
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--crop-scale", type=float, default=d.crop_scale,
                   help="random resized crop: smallest area fraction")
    p.add_argument("--crop-ratio", type=float, default=d.crop_ratio,
                   help="random resized crop: largest aspect-ratio change")
    p.add_argument("--max-failures", type=int, default=d.max_failures,
                   help="worker-group restarts allowed (-1: unlimited)")
    p.add_argument("--prefetch-batches", type=int, default=d.prefetch_batches)
    p.add_argument("--shuffle-buffer", type=int, default=d.shuffle_buffer,
                   help="rows of Ray Data's local shuffle buffer (0: off)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=d.precision)
    p.add_argument("--synthetic-data", action="store_true",
                   help="train on one batch kept on the device: the step's upper bound")
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--stall-timeout", type=float, default=d.stall_timeout,
                   help="seconds without training progress before the run is stopped with a "
                        "stack dump of each worker (0: wait forever)")
    p.add_argument("--skip-corrupt", action="store_true",
                   help="skip damaged records of the train split instead of stopping; the "
                        "final report says how many and where")


def _run_train(args) -> int:
    from ray_ingest.train import TrainConfig, train

    train(config_from_args(TrainConfig, args))
    return 0


# ---- main ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ray-ingest",
        description="Ray-based ingestion and training for image models.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    _add_synth_arguments(_parser(sub, "synth", "draw a learnable synthetic dataset of JPEGs",
                                 _run_synth))
    add_convert_arguments(_parser(sub, "convert", "convert images to TFRecord shards on Ray Data",
                                  _run_convert))
    add_bench_arguments(_parser(sub, "bench", "throughput: the tf.data study next to the Ray "
                                "variants", _run_bench))
    add_train_arguments(_parser(sub, "train", "train on Ray Train (TensorFlow/Keras or PyTorch)",
                                _run_train))
    _add_demo_arguments(_parser(sub, "demo", "run the main job end to end on synthetic data",
                                _run_demo))
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from ray_ingest.errors import find_error

    ray_was_up = _ray_is_up()
    try:
        return int(args.func(args) or 0)
    except Exception as e:  # noqa: BLE001 - only ours (or a Ray wrapper of ours) is handled
        error = find_error(e)
        if error is None:
            raise
        if not ray_was_up and _ray_is_up():
            sys.modules["ray"].shutdown()  # so that no line of Ray's logs comes after ours
        print(f"ray-ingest {args.verb}: error: {error}", file=sys.stderr, flush=True)
        return 2


def _ray_is_up() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


if __name__ == "__main__":
    sys.exit(main())
