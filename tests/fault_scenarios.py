"""Fault-injection scenarios, each run in a process of its own (``python fault_scenarios.py
NAME ARGS...``) because each needs a Ray cluster of its own; prints one JSON line of findings.

* ``kill-convert-worker SRC OUT``: a 3-node ``ray.cluster_utils.Cluster`` on this machine,
  ``convert`` with a shard writer slowed so that writes take a while, and a thread that SIGKILLs
  a randomly chosen Ray worker that is writing shards (then one that is decoding).
* ``held-convert SRC OUT GO``: ``convert`` on the cluster of ``RAY_ADDRESS`` that, once it
  holds OUT's lock, waits for the file GO to appear before it writes (a second conversion
  tries OUT meanwhile).
* ``remove-node-convert SRC OUT``: the same cluster and conversion, and a whole worker node
  (raylet, object store, every worker) taken down while it writes shards; then the node comes
  back, a record of a copy of the output is damaged and read with ``skip_corrupt`` over the
  cluster.
* ``remove-node-train DATA RUNS``: a head that does no work and two worker nodes of 2 CPUs, a
  2-worker torch run with ``max_failures=2``, and the node of a training worker taken down
  during the second epoch.
"""

from __future__ import annotations

import glob
import json
import os
import random
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ray_ingest.convert.sink import TFRecordDatasink  # noqa: E402
from chaos import remove_node_running, wait_and_kill_one  # noqa: E402


class SlowSink(TFRecordDatasink):
    """Writes like ours, but pauses between blocks so that a kill lands mid-shard."""

    def write(self, blocks, ctx):
        def slow(it):
            for b in it:
                yield b
                time.sleep(0.3)

        return super().write(slow(blocks), ctx)


def _cluster(worker_cpus: int, head_cpus: int = 1):
    """A head node (this process's) and two worker nodes, on this machine."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": head_cpus})
    cluster.add_node(num_cpus=worker_cpus)
    cluster.add_node(num_cpus=worker_cpus)
    ray.init(address=cluster.address, logging_level="ERROR")
    return cluster


def _in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    return t, out


def kill_convert_worker(src: str, out: str) -> dict:
    import ray

    from ray_ingest.convert import ConvertOptions, convert

    cluster = _cluster(1)
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
def _damage_one_record(out: str) -> str:
    """Flips a data byte of record 1 of the first train shard; returns the shard's path."""
    from ray_ingest.format import manifest as mf
    from ray_ingest.format.framing import read_index

    m = mf.read_manifest(out)
    s = m.shards("train")[0]
    offset, _ = read_index(open(os.path.join(out, s.index)).read())[1]
    path = os.path.join(out, s.file)
    with open(path, "r+b") as f:
        f.seek(offset + 40)
        byte = f.read(1)
        f.seek(offset + 40)
        f.write(bytes([byte[0] ^ 0xFF]))
    return path


def remove_node_convert(src: str, out: str) -> dict:
    import ray

    from ray_ingest.convert import ConvertOptions, convert
    from ray_ingest.read import read_records, skip_report

    cluster = _cluster(1)
    rng = random.Random(int(os.environ.get("FAULT_SEED", "0")))
    t, removed = _in_thread(lambda: remove_node_running(cluster, ["ray::Write"], rng))
    try:
        report = convert(src, out, ConvertOptions(size=32, encoding="raw", shard_size_mb=0.2,
                                                  max_reject_fraction=0.1),
                         datasink_cls=SlowSink)
        result = {"num_inputs": report.num_inputs, "num_written": report.num_written}
    except Exception as e:  # noqa: BLE001 - a clean failure is a finding too
        result = {"error": f"{type(e).__name__}: {e}"}
    t.join(timeout=5)
    result["removed"] = removed[0] if removed else None
    if "error" not in result:
        cluster.add_node(num_cpus=1)  # back to 3 nodes: the reads run on all of them
        cluster.wait_for_nodes()
        damaged = out.rstrip("/") + "-damaged"
        shutil.copytree(out, damaged)
        shard = _damage_one_record(damaged)
        ds = read_records(damaged, skip_corrupt=True, records_per_task=50)
        result["read_rows"] = sum(len(b["label"]) for b in ds.iter_batches(batch_size=None))
        skipped = skip_report(ds)
        result["skipped"] = skipped.to_dict()
        result["damaged_shard"] = shard
    ray.shutdown()
    cluster.shutdown()
    return result


def remove_node_train(data: str, runs: str) -> dict:
    import ray

    from ray_ingest.train import TrainConfig, train

    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    # A head that does no work (as in cluster.yaml) and two nodes of 2 CPUs: the training
    # workers run on a worker node, and the node left must hold the restarted group and a CPU
    # for reading.
    cluster = _cluster(2, head_cpus=0)
    rng = random.Random(int(os.environ.get("FAULT_SEED", "0")))

    def remove_during_second_epoch():
        deadline = time.time() + 600
        while time.time() < deadline:
            if glob.glob(os.path.join(runs, "nl", "checkpoint_*")):
                time.sleep(0.5)  # into the second epoch's steps
                return remove_node_running(cluster, ["ray::RayTrainWorker"], rng, 60)
            time.sleep(0.1)
        return None

    t, removed = _in_thread(remove_during_second_epoch)
    final = train(TrainConfig(data=data, framework="torch", storage_path=runs, name="nl",
                              epochs=3, batch_size=32, num_workers=2, max_failures=2,
                              stall_timeout=120), progress=lambda line: None)
    t.join(timeout=5)
    ray.shutdown()
    cluster.shutdown()
    return {"removed": removed[0] if removed else None, "epochs": final["epochs"],
            "restarts": final["restarts"], "val_images": final["val_images"]}


if __name__ == "__main__":
    name, *args = sys.argv[1:]
    result = {"kill-convert-worker": kill_convert_worker,
              "held-convert": held_convert,
              "remove-node-convert": remove_node_convert,
              "remove-node-train": remove_node_train}[name](*args)
    print("RESULT " + json.dumps(result), flush=True)
