"""Soak: convert, then stream several epochs, while a background loop SIGKILLs a random Ray
worker every few seconds; then convert and stream once more while a whole worker node (its
raylet, object store and every worker) is taken down mid-phase and added back after it. Count
every image in and out. Must end with zero lost and zero duplicated records (exit status 1
otherwise).

    python benchmarks/soak.py [--images 20000] [--epochs 3] [--kill-every 1.5] [--json benchmarks/results/soak.json]

Runs on a local multi-node cluster (``ray.cluster_utils.Cluster``: 3 raylets on this machine)
so that kills hit real worker processes of several nodes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))  # the fault-injection helpers (tests/chaos.py)

TITLES = ("ray::MapBatches", "ray::Write", "ray::ReadTFRecordShards")


def counted(phase, expected, names, seconds, kills=0, nodes_lost=0):
    """A row of the table: what went in, what came out, lost and duplicated."""
    c = Counter(names)
    return {"phase": phase, "images_in": len(expected), "images_out": len(names),
            "lost": len(set(expected) - set(c)),
            "duplicated": sum(v - 1 for v in c.values() if v > 1),
            "kills": kills, "nodes_lost": nodes_lost, "seconds": round(seconds, 1)}


def with_a_node_lost(cluster, titles, seed, work):
    """Runs ``work()`` while a worker node that runs a process of ``titles`` is taken down;
    adds a node back after it. ``(work's result, the removal or None, work's seconds)``."""
    from chaos import remove_node_running

    removed = []
    t = threading.Thread(target=lambda: removed.append(
        remove_node_running(cluster, titles, random.Random(seed), timeout=60)), daemon=True)
    t.start()
    started = time.time()
    result = work()
    seconds = time.time() - started
    t.join()
    if removed[0] is not None:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
    return result, removed[0], seconds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--kill-every", type=float, default=1.5, help="seconds between kills")
    ap.add_argument("--step-ms", type=float, default=50.0,
                    help="the consumer's work per 256-image batch (a training step stand-in)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="soak.json")
    args = ap.parse_args(argv)

    import ray
    from ray.cluster_utils import Cluster

    from ray_ingest.convert import ConvertOptions, convert
    from ray_ingest.format.records import iter_records
    from ray_ingest.read import read_records
    from chaos import Killer
    from ray_ingest.tools.synth import SynthSpec, synthesize

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, logging_level="ERROR")
    work = tempfile.mkdtemp(prefix="soak-")
    src, out = f"{work}/src", f"{work}/shards"
    t = time.time()
    synthesize(SynthSpec(out=src, num_images=args.images, num_classes=10, width=64, height=48,
                         seed=args.seed))
    print(f"synthesized {args.images} images in {time.time() - t:.0f} s", flush=True)
    inputs = {os.path.relpath(os.path.join(d, f), src) for d, _, fs in os.walk(src) for f in fs}
    killer = Killer(TITLES, args.kill_every, args.seed)
    rows = []

    killer.start("convert")
    t = time.time()
    report = convert(src, out, ConvertOptions(size=32, encoding="jpeg", shard_size_mb=2,
                                              val_fraction=0.0))
    killer.stop()
    names = [r.filename for r in iter_records(out, "train")]
    rows.append(counted("convert", inputs, names, time.time() - t, killer.count("convert")))
    print(report.summary_line(), flush=True)

    expected = set(names)
    ds = read_records(out, "train", shuffle_files=True, shuffle_records=True, with_filename=True)

    def stream(dataset=ds):
        seen = []
        for b in dataset.iter_batches(batch_size=256, batch_format="numpy"):
            seen.extend(b["filename"].tolist())
            time.sleep(args.step_ms / 1000.0)
        return seen

    for epoch in range(args.epochs):
        phase = f"stream epoch {epoch + 1}"
        killer.start(phase)
        t = time.time()
        seen = stream()
        killer.stop()
        rows.append(counted(phase, expected, seen, time.time() - t, killer.count(phase)))
        print(rows[-1], flush=True)

    # A whole node lost mid-phase: its tasks and the blocks in its object store go with it.
    lost_nodes = []

    def convert_once():
        return convert(src, f"{work}/shards-node", ConvertOptions(
            size=32, encoding="jpeg", shard_size_mb=2, val_fraction=0.0))

    _, removed, seconds = with_a_node_lost(cluster, ("ray::MapBatches", "ray::Write"),
                                           args.seed, convert_once)
    lost_nodes += [removed] if removed else []
    names = [r.filename for r in iter_records(f"{work}/shards-node", "train")]
    rows.append(counted("convert, node lost", inputs, names, seconds,
                        nodes_lost=int(removed is not None)))
    print(rows[-1], flush=True)
    # Many small read tasks, as a large split has: some run on the node when it goes, and
    # blocks it made wait in its object store for the consumer.
    small_tasks = read_records(out, "train", shuffle_files=True, shuffle_records=True,
                               with_filename=True, records_per_task=512)
    seen, removed, seconds = with_a_node_lost(cluster, ("ray::ReadTFRecordShards",), args.seed,
                                              lambda: stream(small_tasks))
    lost_nodes += [removed] if removed else []
    rows.append(counted("stream, node lost", expected, seen, seconds,
                        nodes_lost=int(removed is not None)))
    print(rows[-1], flush=True)

    print()
    print(f"{'phase':<20}{'images in':>10}{'images out':>11}{'lost':>6}{'dup':>6}{'kills':>7}"
          f"{'nodes lost':>11}{'s':>7}")
    for r in rows:
        print(f"{r['phase']:<20}{r['images_in']:>10}{r['images_out']:>11}{r['lost']:>6}"
              f"{r['duplicated']:>6}{r['kills']:>7}{r['nodes_lost']:>11}{r['seconds']:>7}")
    ok = all(r["lost"] == 0 and r["duplicated"] == 0 for r in rows) and len(lost_nodes) == 2
    total_kills = len(killer.kills)
    print(f"\n{'PASS' if ok else 'FAIL'}: {total_kills} workers killed, {len(lost_nodes)} of 2 "
          f"nodes lost as planned; {sum(r['lost'] for r in rows)} lost, "
          f"{sum(r['duplicated'] for r in rows)} duplicated")
    with open(args.json, "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%d %H:%M"), "images": args.images,
                   "kill_every_s": args.kill_every, "rows": rows, "kills": killer.kills,
                   "nodes_lost": lost_nodes, "pass": ok}, f, indent=2)
    ray.shutdown()
    cluster.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
