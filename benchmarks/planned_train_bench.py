"""The planned feed against the ``streaming_split`` feed inside a Ray Train worker, on the
same shards, in one run.

    python benchmarks/planned_train_bench.py SHARDS --images 6000 --rounds 3 \\
        --json benchmarks/results/planned_train.json

For each decode placement (``workers``: JPEG decoded in the read tasks; ``consumer``: in the
training worker's threads), two rows built from the very :class:`~ray_ingest.train.plan.RunPlan`
a ``ray-ingest train`` run makes: ``--order planned`` (the worker's own planned feed, in
windows of one Ray Data execution each) and ``--order stream`` (the driver's shuffled read split by
``streaming_split``). Each row is a short Ray Train fit whose one worker times ``--images``
images after ``--warmup``, epoch after epoch as training reads them
(:func:`~ray_ingest.bench.train_row.plan_feed_run`); rounds interleave the rows, and the ratio
is the median of the per-round planned / stream ratios (the hosts are shared: ratios, not
absolute rates). Each round's line also gives the CPU of the node, of the training worker
process and of its decode threads, in cores. Writes a terminal table, ``--json`` and a
Markdown table beside it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DECODES = ("workers", "consumer")
ORDERS = ("planned", "stream")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data")
    p.add_argument("--images", type=int, default=6000)
    p.add_argument("--warmup", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--decodes", default=",".join(DECODES),
                   help="the decode placements to measure, comma-separated")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)

    from ray_ingest.bench.report import write_json_markdown
    from ray_ingest.bench.train_row import plan_feed_run
    from ray_ingest.format.manifest import read_manifest
    from ray_ingest.runtime import ensure_ray
    from ray_ingest.train import TrainConfig
    from ray_ingest.train.plan import RunPlan

    decodes = [d for d in a.decodes.split(",") if d]
    unknown = sorted(set(decodes) - set(DECODES))
    if unknown:
        p.error(f"--decodes: {', '.join(unknown)} not among {', '.join(DECODES)}")
    manifest = read_manifest(a.data)
    ensure_ray()
    runs = {}
    for decode in decodes:
        for order in ORDERS:
            cfg = TrainConfig(data=a.data, decode=decode, order=order,
                              batch_size=a.batch_size, seed=a.seed)
            runs[(order, decode)] = plan_feed_run(RunPlan.of(cfg, manifest))
    rates = {key: [] for key in runs}
    cpu = {key: [] for key in runs}
    for r in range(a.rounds):
        for key, run in runs.items():
            t = run(a.warmup, a.images)
            rates[key].append(t.images / t.seconds)
            decode_threads = (t.threads or {}).get("ray-ingest-decode", 0.0) / t.seconds
            cpu[key].append((t.cpu_seconds / t.seconds, t.process_cpu_seconds / t.seconds,
                             decode_threads))
            print(f"round {r + 1}: --order {key[0]:<8} decode {key[1]:<9} "
                  f"{rates[key][-1]:8.0f} images/s, node CPU {cpu[key][-1][0]:.2f} cores, "
                  f"training worker {cpu[key][-1][1]:.2f} (its decode threads "
                  f"{decode_threads:.2f})", flush=True)

    report = {"data": a.data, "records": manifest.num_records("train"),
              "batch_size": a.batch_size, "images": a.images, "rounds": a.rounds, "rows": {}}
    lines = ["| decode | --order planned, images/s | --order stream, images/s | planned / stream |",
             "|---|---:|---:|---:|"]
    print(f"\n{'decode':<10} {'planned':>10} {'stream':>10} {'planned/stream':>15}")
    for decode in decodes:
        planned, streamed = rates[("planned", decode)], rates[("stream", decode)]
        ratio = statistics.median(x / y for x, y in zip(planned, streamed))
        row = {"planned": statistics.median(planned), "stream": statistics.median(streamed),
               "ratio": ratio, "planned_rounds": planned, "stream_rounds": streamed,
               "planned_cpu_cores": cpu[("planned", decode)],
               "stream_cpu_cores": cpu[("stream", decode)]}
        report["rows"][decode] = row
        print(f"{decode:<10} {row['planned']:10.0f} {row['stream']:10.0f} {ratio:15.2f}")
        lines.append(f"| {decode} | {row['planned']:,.0f} | {row['stream']:,.0f} | "
                     f"**{ratio:.2f}** |")
    if a.json:
        write_json_markdown(a.json, report, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
