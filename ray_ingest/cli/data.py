"""The verbs that make and look at datasets: ``synth``, ``convert``, ``inspect``, ``adopt``."""

from __future__ import annotations

import argparse
import json
import sys

from ray_ingest.cli.console import shut_down_ray
from ray_ingest.cli.generate import add_config_arguments, config_from_args
from ray_ingest.format import keys


# ---- synth ---------------------------------------------------------------------------------


def add_synth_arguments(p: argparse.ArgumentParser) -> None:
    from ray_ingest.tools.synth import SynthSpec

    add_config_arguments(p, SynthSpec)
    p.add_argument("--size", default="320x240", help="WxH")


def synth_spec(args: argparse.Namespace):
    """The :class:`~ray_ingest.tools.synth.SynthSpec` of ``synth``'s arguments."""
    from ray_ingest.tools.synth import SynthSpec, parse_size

    w, h = parse_size(args.size)
    return config_from_args(SynthSpec, args, width=w, height=h)


def run_synth(args) -> int:
    import time

    from ray_ingest.tools.synth import synthesize

    spec = synth_spec(args)
    t = time.time()
    n = synthesize(spec)
    print(f"synth: {n} images of {spec.num_classes} classes ({spec.width}x{spec.height}) in "
          f"{time.time() - t:.1f} s -> {args.out}", flush=True)
    return 0


# ---- convert -------------------------------------------------------------------------------


def add_convert_arguments(p: argparse.ArgumentParser) -> None:
    from ray_ingest.convert import ConvertOptions

    p.add_argument("src", help="class-folder tree, a .csv/.jsonl list of path,label, or a Parquet "
                               "file or folder (path or URI)")
    p.add_argument("out", help="output folder (path or URI)")
    add_config_arguments(p, ConvertOptions)
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


def run_convert(args) -> int:
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
        shut_down_ray()  # so that no line of Ray's logs comes after ours
        print(f"ray-ingest convert: interrupted; nothing committed, {args.out} holds what it "
              "held before", file=sys.stderr, flush=True)
        return 130
    _print_report(report, args)
    return 0


def _print_report(report, args) -> None:
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


# ---- inspect -------------------------------------------------------------------------------


def add_inspect_arguments(p: argparse.ArgumentParser) -> None:
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


def run_inspect(args) -> int:
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


# ---- adopt ---------------------------------------------------------------------------------


def add_adopt_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="new folder for the adopted dataset (shards linked or copied)")
    p.add_argument("--train", nargs="+", required=True, metavar="FILE",
                   help="TFRecord files of the train split, in order")
    p.add_argument("--val", nargs="+", default=[], metavar="FILE",
                   help="TFRecord files of the val split")
    p.add_argument("--class-names", type=lambda s: [c.strip() for c in s.split(",")],
                   help="comma-separated names of labels 0, 1, ... (default: each label's "
                        "image/class/text, else its number)")


def run_adopt(args) -> int:
    from ray_ingest.format.adopt import adopt_tfrecords

    splits = {keys.SPLITS[0]: args.train, **({keys.SPLITS[1]: args.val} if args.val else {})}
    m = adopt_tfrecords(args.out, splits, class_names=args.class_names)
    counts = ", ".join(f"{s} {m.num_records(s)}" for s in m.splits)
    print(f"adopt: {counts} records of {m.encoding} {m.height}x{m.width}, "
          f"{len(m.class_names)} classes -> {m.root}", flush=True)
    return 0


#: Verb: (its help, the function adding its arguments, the function running it).
VERBS = {
    "synth": ("draw a learnable synthetic dataset of JPEGs", add_synth_arguments, run_synth),
    "convert": ("convert images to TFRecord shards on Ray Data", add_convert_arguments,
                run_convert),
    "inspect": ("what a conversion output holds: summary, images per class, rejects; "
                "--verify, --grid", add_inspect_arguments, run_inspect),
    "adopt": ("make TFRecord files written elsewhere (e.g. by TensorFlow) a dataset the reader "
              "streams: checks every record, writes the .idx files and a manifest",
              add_adopt_arguments, run_adopt),
}
