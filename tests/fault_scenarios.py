"""Fault-injection scenarios, each run in a process of its own (``python fault_scenarios.py
NAME ARGS...``) because each needs a Ray cluster of its own; prints one JSON line of findings.

* ``kill-convert-worker SRC OUT``: a 3-node ``ray.cluster_utils.Cluster`` on this machine,
  ``convert`` with a shard writer slowed so that writes take a while, and a thread that SIGKILLs
  a randomly chosen Ray worker that is writing shards (then one that is decoding).
* ``held-convert SRC OUT GO``: ``convert`` on the cluster of ``RAY_ADDRESS`` that, once it
  holds OUT's lock, waits for the file GO to appear before it writes (a second conversion
  tries OUT meanwhile).
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ray_ingest.convert.sink import TFRecordDatasink  # noqa: E402
from ray_ingest.tools.chaos import wait_and_kill_one  # noqa: E402


class SlowSink(TFRecordDatasink):
    """Writes like ours, but pauses between blocks so that a kill lands mid-shard."""

    def write(self, blocks, ctx):
        def slow(it):
            for b in it:
                yield b
                time.sleep(0.3)

        return super().write(slow(blocks), ctx)


def kill_convert_worker(src: str, out: str) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from ray_ingest.convert import ConvertOptions, convert

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, logging_level="ERROR")
    killed = []
    rng = random.Random(int(os.environ.get("FAULT_SEED", "0")))

    def killer():
        for title in ("ray::Write", "ray::MapBatches"):
            victim = wait_and_kill_one([title], rng)
            if victim:
                killed.append({"pid": victim["pid"], "title": title})

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    report = convert(src, out, ConvertOptions(size=32, encoding="raw", shard_size_mb=0.2,
                                              max_reject_fraction=0.1),
                     datasink_cls=SlowSink)
    t.join(timeout=5)
    ray.shutdown()
    cluster.shutdown()
    return {"killed": killed, "num_inputs": report.num_inputs, "num_written": report.num_written,
            "num_rejected": report.num_rejected}


class HeldSink(TFRecordDatasink):
    """Waits for the file ``GO`` (path in the environment) before writing anything."""

    def on_write_start(self, schema=None) -> None:
        go = os.environ["HELD_CONVERT_GO"]
        print("HOLDING", flush=True)
        while not os.path.exists(go):
            time.sleep(0.05)
        super().on_write_start(schema)


def held_convert(src: str, out: str, go: str) -> dict:
    import ray

    from ray_ingest.convert import ConvertOptions, convert

    os.environ["HELD_CONVERT_GO"] = go
    ray.init(address=os.environ["RAY_ADDRESS"], logging_level="ERROR")
    report = convert(src, out, ConvertOptions(size=16, encoding="raw"), datasink_cls=HeldSink)
    return {"pid": os.getpid(), "num_written": report.num_written}


if __name__ == "__main__":
    name, *args = sys.argv[1:]
    result = {"kill-convert-worker": kill_convert_worker,
              "held-convert": held_convert}[name](*args)
    print("RESULT " + json.dumps(result), flush=True)
