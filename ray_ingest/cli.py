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
import re
import sys
from typing import Any, List, Optional

from ray_ingest.format import keys


def config_from_args(cls: type, args: argparse.Namespace, **overrides: Any):
    """The dataclass ``cls`` from the parsed arguments of the same names (plus ``overrides``).
    A value the config refuses is reported under its flag (``--max-side``, not ``max_side``)."""
    from ray_ingest.errors import ConfigError

    given = vars(args)
    values = {f.name: given[f.name] for f in dataclasses.fields(cls) if f.name in given}
    values.update(overrides)
    try:
        return cls(**values)
    except ConfigError as e:
        raise type(e)(flag_names(str(e), given.get("_flags") or {})) from None


def flag_names(message: str, flags: dict) -> str:
    """``message`` with each option's field name replaced by its flag."""
    for dest in sorted(flags, key=len, reverse=True):
        message = re.sub(rf"(?<![\w-]){re.escape(dest)}(?!\w)", flags[dest], message)
    return message


class _FlagParser(argparse.ArgumentParser):
    """A verb's parser that remembers each option's flag by its field name (``_flags``)."""

    def __init__(self, *a, **kw):
        self.flags: dict = {}
        super().__init__(*a, **kw)
        self.set_defaults(_flags=self.flags)

    def add_argument(self, *a, **kw):
        action = super().add_argument(*a, **kw)
        if action.option_strings:
            self.flags[action.dest] = max(action.option_strings, key=len)
        return action


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show: flags, and options
    whose help says what their absence means."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def _verbose_parent() -> argparse.ArgumentParser:
    """``-v`` before or after the verb (``jobs/*.py`` pass their arguments after it)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="show Ray's, Ray Data's, Ray Train's and TensorFlow's own logs and "
                        "start-up banners (default: only ray-ingest's lines, warnings and "
                        "errors, and a progress display per stage)")
    return p


def _parser(sub, name: str, help: str, run) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help, parents=[_verbose_parent()],
                       formatter_class=_DefaultsFormatter)
    p.set_defaults(func=run)
    return p


# ---- convert -------------------------------------------------------------------------------


def add_convert_arguments(p: argparse.ArgumentParser) -> None:
    from ray_ingest.convert import ConvertOptions
    from ray_ingest.convert.images import EXIF_MODES, RESIZE_MODES
    from ray_ingest.convert.pipeline import DEFAULT_MAX_SIDE, DEFAULT_SIZE

    d = ConvertOptions()
    p.add_argument("src", help="class-folder tree, a .csv/.jsonl list of path,label, or a Parquet "
                               "file or folder (path or URI)")
    p.add_argument("out", help="output folder (path or URI)")
    p.add_argument("--size", type=int, default=None,
                   help=f"store fixed SIZE x SIZE squares (center-crop unless --resize-mode "
                        f"names another fixed mode; default of the fixed modes: {DEFAULT_SIZE})")
    p.add_argument("--resize-mode", choices=RESIZE_MODES, default=None,
                   help="keep (the default unless --size is given): store whole images, "
                        "aspect kept (fitting JPEGs byte for byte), bounded by --max-side / "
                        "--short-side; center-crop: crop to a square, then resize; squash: "
                        "resize the whole image; pad: fit inside the square and pad")
    p.add_argument("--max-side", type=int, default=None,
                   help=f"keep: downscale so that the longer side is at most this (never "
                        f"upscaled; default {DEFAULT_MAX_SIDE} unless --short-side is given; "
                        f"0: no limit)")
    p.add_argument("--short-side", type=int, default=None,
                   help="keep: downscale so that the shorter side is at most this (never "
                        "upscaled; default: no limit)")
    p.add_argument("--encoding", choices=keys.ENCODINGS, default=d.encoding,
                   help="how records store the pixels: JPEG bytes or raw uint8 HxWx3")
    p.add_argument("--quality", type=int, default=d.quality, help="JPEG quality")
    p.add_argument("--shard-size-mb", type=float, default=d.shard_size_mb,
                   help="largest size of a shard file")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="share of the inputs in the val split (a stable hash of each name)")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="seed of the split and of the order of the inputs in the shards")
    p.add_argument("--max-reject-fraction", type=float, default=d.max_reject_fraction,
                   help="fail (and write no manifest) when more inputs than this are rejected")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels,
                   help="reject images with more pixels, before decoding")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="images per map_batches call")
    p.add_argument("--overwrite", action="store_true", help="replace a finished output")
    p.add_argument("--follow-links", action="store_true",
                   help="follow links whose target lies outside SRC (reported and skipped "
                   "otherwise)")
    p.add_argument("--num-classes", type=int, default=d.num_classes,
                   help="number of classes, when integer labels leave some ids unused")
    p.add_argument("--exif", choices=EXIF_MODES, default=d.exif,
                   help="apply the Exif orientation (photos stored upright), or ignore it")
    p.add_argument("--checksums", action="store_true",
                   help="store each shard's SHA-256 in the manifest")
    p.add_argument("--report-json", help="also write the conversion summary to this JSON file")
    p.add_argument("--dry-run", action="store_true",
                   help="print the classes, images per class and split, the expected shards "
                        "and what would be ignored or rejected; write nothing, start no Ray")
    p.add_argument("--image-column", default="image",
                   help="Parquet SRC: column of encoded images (or paths, or pixel arrays)")
    p.add_argument("--label-column", default="label",
                   help="Parquet SRC: column of class ids (integers) or class names (strings)")
    p.add_argument("--id-column", default=None,
                   help="Parquet SRC: column naming each row (its record's image/filename and "
                        "the key of its split; default: a hash of the image)")


def _run_convert(args) -> int:
    from ray_ingest.convert import ConvertOptions, convert
    from ray_ingest.convert.from_dataset import convert_parquet, is_parquet_source
    from ray_ingest.errors import ConfigError

    if args.size is not None and args.resize_mode == "keep":
        raise ConfigError("--size sets the side of the fixed-size modes; whole images "
                          "(--resize-mode keep) are bounded by --max-side / --short-side")
    opts = config_from_args(ConvertOptions, args)
    parquet = is_parquet_source(args.src)
    if not parquet and (args.image_column, args.label_column, args.id_column) != (
            "image", "label", None):
        raise ConfigError(f"{args.src}: --image-column/--label-column/--id-column apply to a "
                          "Parquet source (a .parquet file or a folder of them)")
    if args.report_json and not args.dry_run:
        from ray_ingest import fs

        fs.check_report_file("--report-json", args.report_json)
    if args.dry_run:
        if parquet:
            raise ConfigError("--dry-run plans a conversion of files; a Parquet source is "
                              "planned by converting it")
        from ray_ingest.convert.dryrun import format_plan, plan_conversion

        print("\n".join(format_plan(plan_conversion(args.src, args.out, opts), opts)))
        return 0
    try:
        if parquet:
            report = convert_parquet(args.src, args.out, opts, image_column=args.image_column,
                                     label_column=args.label_column, id_column=args.id_column)
        else:
            report = convert(args.src, args.out, opts)
    except KeyboardInterrupt:
        if _ray_is_up():
            sys.modules["ray"].shutdown()  # so that no line of Ray's logs comes after ours
        print(f"ray-ingest convert: interrupted; nothing committed, {args.out} holds what it "
              "held before", file=sys.stderr, flush=True)
        return 130
    print(report.summary_line(), flush=True)
    m = report.manifest
    sizes = m.get("image_sizes")
    if sizes:
        print(f"  whole images: {sizes['stored_as_is']} stored byte for byte, "
              f"{sizes['reencoded']} re-encoded; height {sizes['height']['min']}.."
              f"{sizes['height']['max']}, width {sizes['width']['min']}.."
              f"{sizes['width']['max']}")
    if m["conversions"]:
        print("  converted to RGB: " + ", ".join(f"{k} x{v}" for k, v in m["conversions"].items()))
    if m["num_rejected"] or m["num_ignored"]:
        reasons = ", ".join(f"{k} x{v}" for k, v in m["reject_reasons"].items())
        ignored = ", ".join(f"{k} x{v}" for k, v in m.get("ignored_reasons", {}).items())
        print(f"  rejected: {reasons or 'none'}; ignored: {ignored or 'none'}; details in "
              f"{args.out.rstrip('/')}/{m['rejects_file']}")
    if args.report_json:
        with open(args.report_json, "w") as f:
            json.dump({"summary": report.summary_line(), "images_per_second":
                       report.images_per_second, "seconds": report.seconds, "manifest": m}, f,
                      indent=2)
    return 0


# ---- inspect -------------------------------------------------------------------------------


def _add_inspect_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="a conversion output (path or URI)")
    p.add_argument("--verify", action="store_true",
                   help="read every shard and check framing, CRCs, indexes, records and "
                        "counts against the manifest (exit status 2 at the first problem)")
    p.add_argument("--threads", type=int, default=4, help="shards verified at once")
    p.add_argument("--grid", metavar="FILE.png", help="write a contact sheet of sample images")
    p.add_argument("--per-class", type=int, default=8, help="grid: images per class")
    p.add_argument("--grid-split", choices=keys.SPLITS, default=None,
                   help="grid: samples from this split only (default: any split)")
    p.add_argument("--max-classes", type=int, default=32, help="grid: classes shown")
    p.add_argument("--json", action="store_true", help="print the inspection as JSON")


def _run_inspect(args) -> int:
    from ray_ingest.tools.inspect import format_inspection, inspect_output, to_dict, write_grid

    insp = inspect_output(args.data, verify=args.verify, threads=args.threads)
    print(json.dumps(to_dict(insp), indent=2) if args.json else format_inspection(insp),
          flush=True)
    if args.grid:
        classes, images = write_grid(args.data, args.grid, per_class=args.per_class,
                                     split=args.grid_split, max_classes=args.max_classes)
        print(f"grid: {images} images of {classes} classes -> {args.grid}",
              file=sys.stderr if args.json else sys.stdout, flush=True)
    return 0


# ---- synth ---------------------------------------------------------------------------------


def _add_synth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="output folder of class folders of JPEGs (path or URI)")
    p.add_argument("--num-images", type=int, default=2000, help="images to draw")
    p.add_argument("--classes", dest="num_classes", type=int, default=10,
                   help="number of classes (kinds of shapes)")
    p.add_argument("--size", default="320x240", help="WxH")
    p.add_argument("--seed", type=int, default=0, help="the same seed draws the same images")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality")


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
    p.add_argument("--workdir", default="demo-data",
                   help="folder of the demo's images, shards and runs")
    p.add_argument("--num-images", type=int, default=3000, help="synthetic images to draw")
    p.add_argument("--classes", type=int, default=10, help="number of classes")
    p.add_argument("--epochs", type=int, default=6, help="training epochs")
    p.add_argument("--framework", choices=("tf", "torch"), default="tf",
                   help="TensorFlow/Keras or PyTorch")


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
    p.add_argument("--split", default=d.split, help="split of the shards to read")
    p.add_argument("--images", type=int, default=d.images, help="images timed per run")
    p.add_argument("--warmup", type=int, default=d.warmup, help="images skipped before timing")
    p.add_argument("--repeats", type=int, default=d.repeats,
                   help="timed rounds (every row once per round; the report gives the median)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="batch size of Ray rows")
    p.add_argument("--rows", type=lambda s: [r.strip() for r in s.split(",") if r.strip()],
                   help="comma-separated row names (default: all this machine can run)")
    p.add_argument("--peers", action="store_true",
                   help="add the rows of the loaders users pick instead: NVIDIA DALI's CPU "
                        "pipeline, MosaicML Streaming and the torch DataLoader (each skipped "
                        "with one line when its package is missing: pip install "
                        "'ray-ingest[bench-peers]')")
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
    from ray_ingest.train.config import DECODE_MODES, FRAMEWORKS, MODELS, TrainConfig

    d = TrainConfig(data="")
    p.add_argument("data", help="a conversion output (path or URI)")
    p.add_argument("--framework", choices=FRAMEWORKS, default=d.framework,
                   help="TensorFlow/Keras (MultiWorkerMirroredStrategy) or PyTorch (DDP)")
    p.add_argument("--model", choices=MODELS, default=d.model, help="model architecture")
    p.add_argument("--epochs", type=int, default=d.epochs, help="passes over the train split")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch size")
    p.add_argument("--num-workers", type=int, default=d.num_workers,
                   help="Ray Train workers (data-parallel replicas)")
    p.add_argument("--use-gpu", action=argparse.BooleanOptionalAction, default=None,
                   help="default: use GPUs when the cluster has one per worker")
    p.add_argument("--cpus-per-worker", type=float, default=None,
                   help="default: chosen from the cluster")
    p.add_argument("--storage-path", default=d.storage_path,
                   help="folder or URI of the runs (checkpoints, TensorBoard logs)")
    p.add_argument("--name", default=d.name, help="run name (folder under --storage-path)")
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    p.add_argument("--metrics-out", help="write the final metrics to this JSON file")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="seed of the shuffling, the augmentation and the initial weights")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help="AdamW's weight decay")
    p.add_argument("--image-size", type=int, default=None,
                   help="training resolution (default: the stored size; whole-image shards: "
                        "224)")
    p.add_argument("--no-augment", dest="augment", action="store_false",
                   help="train on the stored images as they are (default: random resized crop, "
                        "flip and colour jitter)")
    p.add_argument("--crop-scale", type=float, default=d.crop_scale,
                   help="random resized crop: smallest area fraction (default: 0.6 of a "
                        "fixed-size stored image; 0.08 of a whole image, cropped while "
                        "decoding)")
    p.add_argument("--crop-ratio", type=float, default=d.crop_ratio,
                   help="random resized crop: largest aspect-ratio change (default: 1.1; "
                        "4/3 on whole-image shards)")
    p.add_argument("--max-failures", type=int, default=d.max_failures,
                   help="worker-group restarts allowed (-1: unlimited)")
    p.add_argument("--prefetch-batches", type=int, default=d.prefetch_batches,
                   help="batches each worker's stream prepares ahead of the step")
    p.add_argument("--shuffle-buffer", type=int, default=d.shuffle_buffer,
                   help="rows of Ray Data's local shuffle buffer (0: off)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=d.precision,
                   help="auto: bf16 on an accelerator, fp32 on CPUs")
    p.add_argument("--synthetic-data", action="store_true",
                   help="train on one batch kept on the device: the step's upper bound")
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="steps per epoch (default: one pass over each worker's part of the "
                        "train split)")
    p.add_argument("--decode", choices=DECODE_MODES, default=d.decode,
                   help="where JPEG records are decoded: in the read tasks (workers), in threads "
                        "of each training worker (consumer), on its GPU (gpu), or chosen from "
                        "the cluster (auto)")
    p.add_argument("--decode-threads", type=int, default=None,
                   help="consumer decode threads per training worker (default: its share of "
                        "the node's cores)")
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


def _run_evaluate(args) -> int:
    from ray_ingest.train.evaluate import evaluate

    r = evaluate(args.data, args.model, split=args.split, batch_size=args.batch_size,
                 out=getattr(args, "out", None))
    print(f"evaluate: {r.model} ({r.framework}) on {r.data}, split {r.split}: {r.images} "
          f"images, accuracy {r.accuracy:.3f}")
    print(r.table())
    print(f"wrote {r.png_path}\n      {r.json_path}", flush=True)
    return 0


# ---- adopt ---------------------------------------------------------------------------------


def _add_adopt_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="new folder for the adopted dataset (shards linked or copied)")
    p.add_argument("--train", nargs="+", required=True, metavar="FILE",
                   help="TFRecord files of the train split, in order")
    p.add_argument("--val", nargs="+", default=[], metavar="FILE",
                   help="TFRecord files of the val split")
    p.add_argument("--class-names", type=lambda s: [c.strip() for c in s.split(",")],
                   help="comma-separated names of labels 0, 1, ... (default: each label's "
                        "image/class/text, else its number)")


def _run_adopt(args) -> int:
    from ray_ingest.format.adopt import adopt_tfrecords

    splits = {keys.SPLITS[0]: args.train, **({keys.SPLITS[1]: args.val} if args.val else {})}
    m = adopt_tfrecords(args.out, splits, class_names=args.class_names)
    counts = ", ".join(f"{s} {m.num_records(s)}" for s in m.splits)
    print(f"adopt: {counts} records of {m.encoding} {m.height}x{m.width}, "
          f"{len(m.class_names)} classes -> {m.root}", flush=True)
    return 0


# ---- main ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from ray_ingest import __version__

    parser = argparse.ArgumentParser(
        prog="ray-ingest",
        description="Ray-based ingestion and training for image models.",
        parents=[_verbose_parent()],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB",
                                parser_class=_FlagParser)
    _add_synth_arguments(_parser(sub, "synth", "draw a learnable synthetic dataset of JPEGs",
                                 _run_synth))
    add_convert_arguments(_parser(sub, "convert", "convert images to TFRecord shards on Ray Data",
                                  _run_convert))
    _add_inspect_arguments(_parser(sub, "inspect", "what a conversion output holds: summary, "
                                   "images per class, rejects; --verify, --grid", _run_inspect))
    add_bench_arguments(_parser(sub, "bench", "throughput: the tf.data study next to the Ray "
                                "variants", _run_bench))
    _add_adopt_arguments(_parser(sub, "adopt", "make TFRecord files written elsewhere (e.g. by "
                                 "TensorFlow) a dataset the reader streams: checks every "
                                 "record, writes the .idx files and a manifest", _run_adopt))
    add_train_arguments(_parser(sub, "train", "train on Ray Train (TensorFlow/Keras or PyTorch)",
                                _run_train))
    add_evaluate_arguments(_parser(sub, "evaluate", "evaluate a saved model on a split: accuracy "
                                   "per class and a confusion matrix", _run_evaluate))
    _add_demo_arguments(_parser(sub, "demo", "run the main job end to end on synthetic data",
                                _run_demo))
    return parser


class ConsoleFormatter(logging.Formatter):
    """Our lines read like the rest of our output (``warning: ...``); other libraries' lines
    keep their level and logger name, and with ``-v`` every line gets its time."""

    def __init__(self, verbose: bool = False):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s" if verbose
                         else "%(levelname)s %(name)s: %(message)s")
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        if self.verbose or not record.name.startswith("ray_ingest"):
            return super().format(record)
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message}"
        return message


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", False)
    from ray_ingest import quiet

    quiet.configure(verbose=verbose)
    # Quiet: other libraries' warnings and errors, and ray-ingest's own lines from INFO up.
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(ConsoleFormatter(verbose))
    logging.getLogger("ray_ingest").setLevel(logging.DEBUG if verbose else logging.INFO)
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
    except KeyboardInterrupt as e:  # Ctrl-C: what was committed stays (train: its pointers)
        if not ray_was_up and _ray_is_up():
            sys.modules["ray"].shutdown()
        said = f"; {e}" if str(e) else ""
        print(f"ray-ingest {args.verb}: interrupted{said}", file=sys.stderr, flush=True)
        return 130


def _ray_is_up() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


if __name__ == "__main__":
    sys.exit(main())
