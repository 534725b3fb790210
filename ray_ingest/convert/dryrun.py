"""``ray-ingest convert --dry-run``: what a conversion would do, without Ray and without writing.

It lists the source as the conversion would (classes, inputs, the train/val split, the files
ignored and why), runs the conversion's own batch function on a few sampled inputs to measure
the size of a record, and from that estimates the shards; it also says whether OUT would be
refused. Nothing is written and Ray is not started.
"""

from __future__ import annotations

import math
import posixpath
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List

from ray_ingest import fs
from ray_ingest.convert.options import ConvertOptions
from ray_ingest.convert.pipeline import _input_table, convert_batch
from ray_ingest.convert.sink import COL_AS_IS, COL_RECORD, COL_REJECT
from ray_ingest.convert.sources import IMAGE_EXTENSIONS, LIST_EXTENSIONS, list_source
from ray_ingest.format import manifest as mf
from ray_ingest.format.framing import OVERHEAD
from ray_ingest.format.keys import SPLITS

#: Inputs converted to measure the size of a record.
SAMPLE = 16


@dataclass
class ConversionPlan:
    src: str
    out: str
    source_kind: str
    class_names: List[str]
    #: split -> images per class (in class-id order)
    counts: Dict[str, List[int]]
    #: reason -> files under SRC that would be ignored (reported in rejects.jsonl)
    ignored: Dict[str, List[str]]
    #: listed inputs whose extension is not an image's: most likely rejected as not-an-image
    odd_extensions: List[str]
    sampled: int
    sample_rejects: Counter = field(default_factory=Counter)
    record_bytes: float = 0.0  # mean over the sampled inputs that converted
    #: keep mode: sampled inputs whose own bytes would be stored as they are
    sample_as_is: int = 0
    shards: Dict[str, int] = field(default_factory=dict)
    out_refused: bool = False
    #: OUT exists and is not a folder: the conversion would be refused whatever the options
    out_not_a_folder: bool = False

    @property
    def num_inputs(self) -> int:
        return sum(sum(c) for c in self.counts.values())


def plan_conversion(src: str, out: str, options: ConvertOptions,
                    sample: int = SAMPLE) -> ConversionPlan:
    """The plan of ``convert(src, out, options)``; reads the listing and ``sample`` inputs."""
    src, out = fs.normalize(src), fs.normalize(out)
    listing = list_source(src, follow_links=options.follow_links,
                          num_classes=options.num_classes)
    ids = range(len(listing.class_names))
    counts = {split: [0 for _ in ids] for split in SPLITS}
    table = _input_table(listing.inputs, options.seed, options.val_fraction)
    for label, split in zip(table.column("label").to_pylist(),
                            table.column("split").to_pylist()):
        counts[split][label] += 1
    ignored: Dict[str, List[str]] = {}
    for x in listing.ignored:
        ignored.setdefault(x.reason, []).append(x.path)
    odd = [i.relpath for i in listing.inputs
           if posixpath.splitext(i.relpath)[1].lower() not in IMAGE_EXTENSIONS]
    plan = ConversionPlan(
        src=src, out=out,
        source_kind="list" if src.lower().endswith(LIST_EXTENSIONS) else "class folders",
        class_names=listing.class_names, counts=counts, ignored=ignored, odd_extensions=odd,
        sampled=min(sample, len(listing.inputs)),
        out_refused=fs.exists(fs.join(out, mf.MANIFEST_NAME)) and not options.overwrite,
        out_not_a_folder=fs.exists(out) and not fs.isdir(out))
    _measure_records(plan, table, options)
    return plan


def _measure_records(plan: ConversionPlan, table, options: ConvertOptions) -> None:
    """Converts a random sample with the conversion's own batch function; sets the mean record
    size, the sample's rejects and the shard estimate."""
    rows = sorted(random.Random(options.seed).sample(range(table.num_rows), plan.sampled))
    out = convert_batch(table.take(rows), options.image_spec(), plan.class_names)
    sizes = [len(r) + OVERHEAD for r in out.column(COL_RECORD).to_pylist() if r is not None]
    plan.sample_rejects = Counter(r for r in out.column(COL_REJECT).to_pylist() if r)
    plan.sample_as_is = sum(bool(x) for x in out.column(COL_AS_IS).to_pylist())
    plan.record_bytes = sum(sizes) / len(sizes) if sizes else 0.0
    if not sizes:
        return
    # The shard writer gets about one shard's worth of rows per write task and writes each
    # split of them to files of its own, rolling at the size limit (a record larger than the
    # limit gets a file to itself).
    shard_bytes = options.shard_size_mb * 1e6
    per_shard = max(1, int(shard_bytes // plan.record_bytes))
    tasks = max(1, math.ceil(plan.num_inputs * plan.record_bytes / shard_bytes))
    for split in SPLITS:
        n = sum(plan.counts[split])
        plan.shards[split] = max(math.ceil(n / per_shard), min(tasks, n))


def _examples(paths: List[str], limit: int = 3) -> str:
    more = f", ... ({len(paths) - limit} more)" if len(paths) > limit else ""
    return ", ".join(paths[:limit]) + more


def _stored(options: ConvertOptions) -> str:
    """What each image is stored as, in words."""
    if not options.image_spec().keep:
        return f"{options.size}x{options.size}"
    limits = [f"{name} {value}" for name, value in (("max side", options.max_side),
                                                    ("short side", options.short_side))
              if value is not None]
    return "whole images (" + (", ".join(limits) or "no size limit") + ")"


def format_plan(plan: ConversionPlan, options: ConvertOptions) -> List[str]:
    """The plan as the lines ``convert --dry-run`` prints."""
    train, val = SPLITS
    lines = [f"convert --dry-run: {plan.src} ({plan.source_kind}) -> {plan.out}; "
             "nothing written, Ray not started",
             f"{len(plan.class_names)} classes, {plan.num_inputs:,} images"]
    if len(plan.class_names) == 1:
        lines.append(f"warning: one class only ({plan.class_names[0]!r}): a classifier learns "
                     "nothing from it")
    width = max([len(c) for c in plan.class_names] + [len("total")])
    lines.append(f"  {'class':<{width}}  {train:>8}  {val:>8}  {'total':>8}")
    for i, name in enumerate(plan.class_names):
        t, v = plan.counts[train][i], plan.counts[val][i]
        lines.append(f"  {name:<{width}}  {t:>8,}  {v:>8,}  {t + v:>8,}")
    nt, nv = sum(plan.counts[train]), sum(plan.counts[val])
    lines.append(f"  {'total':<{width}}  {nt:>8,}  {nv:>8,}  {nt + nv:>8,}")
    lines.append(f"splits: {train} {nt:,}, {val} {nv:,} (--val-fraction {options.val_fraction:g}, "
                 f"--seed {options.seed})")
    if plan.record_bytes:
        lines.append(
            f"shards: about {plan.shards[train]} {train} + {plan.shards[val]} {val} of up to "
            f"{options.shard_size_mb:g} MB, about {(nt + nv) * plan.record_bytes / 1e6:,.1f} MB "
            f"in all ({plan.record_bytes / 1e3:,.1f} KB per record at {_stored(options)} "
            f"{options.encoding}, measured on {plan.sampled} sampled inputs)")
        if options.image_spec().keep:
            converted = plan.sampled - sum(plan.sample_rejects.values())
            lines.append(f"whole images: {plan.sample_as_is} of the {converted} sampled inputs "
                         "converted would be stored byte for byte, the others re-encoded")
    else:
        lines.append(f"shards: unknown, none of the {plan.sampled} sampled inputs converted")
    if plan.sample_rejects:
        reasons = ", ".join(f"{k} x{v}" for k, v in sorted(plan.sample_rejects.items()))
        lines.append(f"sampled inputs rejected: {reasons} (of {plan.sampled}; --max-reject-"
                     f"fraction {options.max_reject_fraction:g})")
    n_ignored = sum(len(v) for v in plan.ignored.values())
    lines.append(f"ignored (not converted; listed in {mf.REJECTS_NAME}): {n_ignored}")
    for why, paths in sorted(plan.ignored.items()):
        lines.append(f"  {why} x{len(paths)}: {_examples(paths)}")
    if plan.odd_extensions:
        lines.append(f"listed inputs without an image extension (rejected unless they decode): "
                     f"{len(plan.odd_extensions)}: {_examples(plan.odd_extensions)}")
    if plan.out_not_a_folder:
        lines.append(f"{plan.out} exists and is not a directory: the conversion would be "
                     "refused")
    elif plan.out_refused:
        lines.append(f"{plan.out} already holds a finished conversion: the conversion would be "
                     "refused without --overwrite")
    return lines
