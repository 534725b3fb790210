"""Shuffle quality on shards written in class order: how evenly each global batch mixes labels.

    python benchmarks/shuffle_bench.py --classes 100 --per-class 300 --out benchmarks/results/shuffle

A shard set is written in class order (every record of class 0, then class 1, ...; shards of
about ``--shard-records`` records each hold one or two classes), as a conversion with
``shuffle=False`` of a class-sorted source leaves it, by the plain-loop writer
(``ray_ingest.ShardSetWriter``) so that the order is exact. Then, for a few epochs, the label
sequence each method trains is cut into global batches of ``--batch-size`` and compared with
the split's label mix: the mean total-variation distance (0: every batch mirrors the split)
and the mean chi-square statistic over batches. Methods:

* a uniform random permutation of all records (the floor a shuffle aims at);
* the epoch plan (``ray_ingest.read.order.EpochOrder``) at several piece and window sizes;
* today's reader: ``read_records(shuffle_files=True, shuffle_records=True)`` streamed in one
  consumer, and the same with Ray Data's ``local_shuffle_buffer_size=10000``.

``quality`` is the uniform permutation's mean distance over the method's (1.00: as good as
uniform). Ratios, not absolute values, are comparable across datasets.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Dict, List, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_class_sorted(out: str, classes: int, per_class: int, shard_records: int) -> None:
    """``classes * per_class`` 8x8 raw records in class order."""
    from ray_ingest import ShardSetWriter

    record_bytes = 8 * 8 * 3 + 200  # pixels and the Example's other features, about
    with ShardSetWriter(out=out, class_names=[f"c{c:03d}" for c in range(classes)],
                        encoding="raw", size=8, overwrite=True,
                        max_shard_bytes=max(10_000, shard_records * record_bytes)) as w:
        pixels = np.zeros((8, 8, 3), np.uint8)
        for c in range(classes):
            pixels[...] = c % 256
            for i in range(per_class):
                w.write_image(pixels.tobytes(), label=c, filename=f"c{c:03d}/{i:05d}.raw")


def labels_by_id(root: str, split: str = "train") -> np.ndarray:
    """Every record's label, by global id (shards in manifest order)."""
    from ray_ingest.format.records import iter_records

    return np.array([r.label for r in iter_records(root, split)], np.int64)


def batch_mix(labels: Sequence[int], batch_size: int, want: np.ndarray) -> Dict[str, float]:
    """Mean total-variation distance and chi-square statistic of each whole batch's label mix
    against ``want`` (the split's)."""
    labels = np.asarray(labels, np.int64)
    steps = len(labels) // batch_size
    batches = labels[:steps * batch_size].reshape(steps, batch_size)
    k = len(want)
    counts = np.stack([np.bincount(b, minlength=k) for b in batches])
    tv = 0.5 * np.abs(counts / batch_size - want).sum(axis=1)
    expected = want * batch_size
    seen = expected > 0
    chi2 = ((counts[:, seen] - expected[seen]) ** 2 / expected[seen]).sum(axis=1)
    return {"tv": float(tv.mean()), "chi2": float(chi2.mean()), "batches": steps}


def reader_labels(root: str, seed: int, batch_size: int, buffer: int = 0) -> List[int]:
    from ray_ingest.read import read_records

    ds = read_records(root, shuffle_files=True, shuffle_records=True, seed=seed)
    out: List[int] = []
    kwargs = {"local_shuffle_buffer_size": buffer, "local_shuffle_seed": seed} if buffer else {}
    for b in ds.iter_batches(batch_size=batch_size, batch_format="numpy", **kwargs):
        out.extend(b["label"].tolist())
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--per-class", type=int, default=300)
    p.add_argument("--shard-records", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--plans", default="64x64,16x256,8x512,4x1024,1x4096",
                   help="piece_records x window_pieces of each plan row")
    p.add_argument("--no-reader", action="store_true", help="leave out today's reader rows "
                   "(they start Ray)")
    p.add_argument("--out", default=None, help="folder for shuffle.json and shuffle.md")
    a = p.parse_args(argv)

    from ray_ingest.read.order import EpochOrder
    from ray_ingest.format.manifest import read_manifest

    work = tempfile.mkdtemp(prefix="shuffle-bench-")
    root = os.path.join(work, "sorted")
    t0 = time.time()
    write_class_sorted(root, a.classes, a.per_class, a.shard_records)
    m = read_manifest(root)
    labels = labels_by_id(root)
    want = np.bincount(labels, minlength=a.classes) / len(labels)
    print(f"shuffle: {len(labels):,} records of {a.classes} classes in class order, "
          f"{len(m.shards('train'))} shards, batch {a.batch_size}, {a.epochs} epochs "
          f"({time.time() - t0:.1f} s to write)")

    rows: Dict[str, List[Dict[str, float]]] = {}

    def add(name: str, seq) -> None:
        rows.setdefault(name, []).append(batch_mix(seq, a.batch_size, want))

    for epoch in range(a.epochs):
        rng = np.random.default_rng([1234, epoch])
        add("uniform random permutation", labels[rng.permutation(len(labels))])
        add("in class order (no shuffle)", labels)
        for spec in a.plans.split(","):
            piece, window = (int(x) for x in spec.split("x"))
            order = EpochOrder.of(m, "train", 1234, epoch, piece_records=piece,
                                  window_pieces=window).order()
            add(f"epoch plan: pieces of {piece}, windows of {window} pieces "
                f"({piece * window:,} records)", labels[order])
        if not a.no_reader:
            add("read_records shuffle_files + shuffle_records",
                reader_labels(root, 1234 + epoch, a.batch_size))
            add("  + local_shuffle_buffer_size=10000",
                reader_labels(root, 1234 + epoch, a.batch_size, buffer=10_000))

    floor = float(np.mean([r["tv"] for r in rows["uniform random permutation"]]))
    table = []
    for name, runs in rows.items():
        tv = float(np.mean([r["tv"] for r in runs]))
        chi2 = float(np.mean([r["chi2"] for r in runs]))
        table.append({"method": name, "mean_tv": tv, "mean_chi2": chi2,
                      "quality": floor / tv if tv else float("inf")})
    width = max(len(r["method"]) for r in table)
    print(f"\n{'method':<{width}}  mean TV  mean chi2  quality")
    print("-" * (width + 30))
    for r in table:
        print(f"{r['method']:<{width}}  {r['mean_tv']:7.3f}  {r['mean_chi2']:9.1f}  "
              f"{r['quality']:7.2f}")
    print("\nquality: the uniform permutation's mean total-variation distance over the "
          "method's (1.00: as good as uniform)")
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        report = {"records": int(len(labels)), "classes": a.classes,
                  "shards": len(m.shards("train")), "batch_size": a.batch_size,
                  "epochs": a.epochs, "rows": table,
                  "date": time.strftime("%Y-%m-%d %H:%M")}
        with open(os.path.join(a.out, "shuffle.json"), "w") as f:
            json.dump(report, f, indent=1)
        with open(os.path.join(a.out, "shuffle.md"), "w") as f:
            f.write("| method | mean TV | mean chi-square | quality |\n|---|---:|---:|---:|\n")
            for r in table:
                f.write(f"| {r['method'].strip()} | {r['mean_tv']:.3f} | {r['mean_chi2']:.1f} "
                        f"| {r['quality']:.2f} |\n")
        print(f"wrote {a.out}/shuffle.json, shuffle.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
