"""The planned read beside today's shuffled read, on the same shards, in one process.

    python benchmarks/planned_bench.py SHARDS --images 8000 --rounds 3

Rows, each timed over ``--images`` images after a warm-up, rounds interleaved, median:
``read_records(shuffle_files=True, shuffle_records=True)`` + ``iter_images`` (today's feed
outside Ray Train) and ``PlannedFeed`` (the epoch plan: every batch drawn from a window of
the whole split), each with JPEG decoding in the read tasks and in the consumer. The ratio
is planned over today's, per decode mode.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _time(batches, images: int, warmup: int) -> float:
    it = iter(batches)
    seen = 0
    while seen < warmup:
        seen += len(next(it)["label"])
    t, seen = time.perf_counter(), 0
    while seen < images:
        seen += len(next(it)["label"])
    return seen / (time.perf_counter() - t)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data")
    p.add_argument("--images", type=int, default=8000)
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)

    from ray_ingest.format.manifest import read_manifest
    from ray_ingest.read import iter_images, read_records
    from ray_ingest.read.planned import PlannedFeed

    n = read_manifest(a.data).num_records("train")
    epochs = -(-(a.images + a.warmup) // max(1, n - a.batch_size)) + 1

    def today(decode):
        ds = read_records(a.data, shuffle_files=True, shuffle_records=True, seed=1,
                          decode=decode, repeat=epochs)
        return iter_images(ds, batch_size=a.batch_size, drop_last=True)

    def planned(decode):
        return iter(PlannedFeed(a.data, batch_size=a.batch_size, epochs=epochs, seed=1,
                                decode=decode))

    rows = {(name, decode): [] for name in ("today", "planned")
            for decode in ("workers", "consumer")}
    for _ in range(a.rounds):
        for (name, decode) in rows:
            make = today if name == "today" else planned
            rows[(name, decode)].append(_time(make(decode), a.images, a.warmup))
    report = {}
    print(f"{'row':<44} images/s")
    for (name, decode), rates in rows.items():
        label = (f"read_records shuffled, decode {decode}" if name == "today"
                 else f"PlannedFeed, decode {decode}")
        report[label] = statistics.median(rates)
        print(f"{label:<44} {report[label]:8.0f}")
    for decode in ("workers", "consumer"):
        ratio = statistics.median(
            p / t for p, t in zip(rows[("planned", decode)], rows[("today", decode)]))
        report[f"planned / today, decode {decode}"] = ratio
        print(f"planned / today, decode {decode}: {ratio:.2f} (median of per-round ratios)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
