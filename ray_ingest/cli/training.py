"""The verbs that read datasets: ``bench``, ``train``, ``evaluate`` and ``demo``."""

from __future__ import annotations

import argparse

from ray_ingest.cli.generate import add_config_arguments, config_from_args
from ray_ingest.format import keys

# ---- bench ---------------------------------------------------------------------------------


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    from ray_ingest.bench import BenchConfig

    add_config_arguments(p, BenchConfig)


def run_bench(args) -> int:
    from ray_ingest.bench import BenchConfig, format_table, run_bench as bench

    report = bench(config_from_args(BenchConfig, args))
    print()
    print(format_table(report))
    print(f"\nwrote {args.out}/report.json, report.md, report.png", flush=True)
    return 0


# ---- train ---------------------------------------------------------------------------------


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    from ray_ingest.train.config import TrainConfig

    add_config_arguments(p, TrainConfig)


def run_train(args) -> int:
    from ray_ingest.train.config import TrainConfig
    from ray_ingest.train.driver import train

    train(config_from_args(TrainConfig, args))
    return 0


# ---- evaluate ------------------------------------------------------------------------------


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="a conversion output (path or URI)")
    p.add_argument("--model", required=True, default=argparse.SUPPRESS,
                   help="a saved model (model.keras or model.pt2), a checkpoint folder, a run "
                        "folder (its best checkpoint) or a run's best.json/latest.json")
    p.add_argument("--split", choices=keys.SPLITS, default=keys.SPLITS[1], help="split to evaluate")
    p.add_argument("--batch-size", type=int, default=256, help="images per inference batch")
    p.add_argument("--out", default=argparse.SUPPRESS,
                   help="folder for evaluation-SPLIT.json and confusion-SPLIT.png (when not "
                        "given: the model's folder)")


def run_evaluate(args) -> int:
    from ray_ingest.train.evaluate import evaluate

    r = evaluate(args.data, args.model, split=args.split, batch_size=args.batch_size,
                 out=getattr(args, "out", None))
    print(f"evaluate: {r.model} ({r.framework}) on {r.data}, split {r.split}: {r.images} "
          f"images, accuracy {r.accuracy:.3f}")
    print(r.table())
    print(f"wrote {r.png_path}\n      {r.json_path}", flush=True)
    return 0


# ---- demo ----------------------------------------------------------------------------------


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", default="demo-data",
                   help="folder of the demo's images, shards and runs")
    p.add_argument("--num-images", type=int, default=3000, help="synthetic images to draw")
    p.add_argument("--classes", type=int, default=10, help="number of classes")
    p.add_argument("--epochs", type=int, default=6, help="training epochs")
    p.add_argument("--framework", choices=("tf", "torch"), default="tf",
                   help="TensorFlow/Keras or PyTorch")


def run_demo(args) -> int:
    from ray_ingest.tools.demo import run_demo as demo

    demo(args.workdir, num_images=args.num_images, classes=args.classes,
         train_epochs=args.epochs, framework=args.framework)
    return 0


#: Verb: (its help, the function adding its arguments, the function running it).
VERBS = {
    "bench": ("throughput: the tf.data study next to the Ray variants", add_bench_arguments,
              run_bench),
    "train": ("train on Ray Train (TensorFlow/Keras or PyTorch)", add_train_arguments,
              run_train),
    "evaluate": ("evaluate a saved model on a split: accuracy per class and a confusion matrix",
                 add_evaluate_arguments, run_evaluate),
    "demo": ("run the main job end to end on synthetic data", add_demo_arguments, run_demo),
}
