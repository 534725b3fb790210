"""Reliability under faults: nothing lost and nothing twice when workers, whole nodes or the
driver die, training that survives a lost worker or node, and inputs that cannot escape OUT."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from helpers import make_synth_tree, stored_filenames
from ray_ingest.format import manifest as mf
from chaos import kill_tree, wait_and_kill_one

HERE = Path(__file__).resolve().parent


def _filenames(out: Path):
    return mf.read_manifest(str(out)), stored_filenames(out)


def _inputs(src: Path):
    return {str(p.relative_to(src)) for p in src.rglob("*") if p.is_file()}


def _assert_exactly_once(src: Path, out: Path, rejects=()):
    m, names = _filenames(out)
    dup = [n for n, c in Counter(names).items() if c > 1]
    assert not dup, f"duplicated: {dup[:5]}"
    assert set(names) == _inputs(src) - set(rejects), "lost or foreign records"
    assert m.data["num_written"] == len(names)
    listed = {f for sp in m.splits for s in m.shards(sp) for f in (s.file, s.index)}
    on_disk = {p.name for p in out.iterdir()} - {mf.MANIFEST_NAME, mf.REJECTS_NAME}
    assert on_disk == listed, f"leftovers: {sorted(on_disk - listed)[:5]}"


@pytest.fixture(scope="module")
def fault_src(tmp_path_factory):
    return make_synth_tree(tmp_path_factory.mktemp("fault-src"), 1500, 6, 48, 40, seed=5)


def _scenario(name, *args):
    r = subprocess.run([sys.executable, str(HERE / "fault_scenarios.py"), name,
                        *map(str, args)], capture_output=True, text=True, timeout=800)
    line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, r.stdout[-3000:] + r.stderr[-3000:]
    result = json.loads(line[len("RESULT "):])
    result["log_tail"] = r.stderr[-3000:]  # shown by a failing assertion on the result
    return result


@pytest.mark.slow
def test_killed_worker_during_conversion_loses_and_duplicates_nothing(fault_src, tmp_path):
    out = tmp_path / "out"
    result = _scenario("kill-convert-worker", fault_src, out)
    assert [k["title"] for k in result["killed"]] == ["ray::Write", "ray::MapBatches"], result
    assert result["num_written"] == result["num_inputs"] == 1500
    _assert_exactly_once(fault_src, out)


@pytest.mark.slow
def test_a_node_lost_during_conversion_loses_and_duplicates_nothing(fault_src, tmp_path):
    """A whole worker node (raylet, object store, every worker) goes while it writes shards:
    its tasks run again elsewhere and the commit still takes each input exactly once. Then,
    with the node back, a read that skips a damaged record reports it from every node."""
    out = tmp_path / "out"
    result = _scenario("remove-node-convert", fault_src, out)
    assert result["removed"] and "error" not in result, result
    assert result["num_written"] == result["num_inputs"] == 1500
    _assert_exactly_once(fault_src, out)
    skipped = result["skipped"]
    assert skipped["records"] == 1 and result["read_rows"] == mf.read_manifest(
        str(out)).num_records("train") - 1, result
    assert [(r["path"], r["first"]) for r in skipped["ranges"]] == [(result["damaged_shard"], 1)]


@pytest.mark.slow
@pytest.mark.torch
def test_training_continues_on_the_nodes_left_after_a_node_is_lost(learnable, tmp_path):
    """The node of a training worker goes mid-epoch; with max_failures the run restarts from
    its last checkpoint on the node left, which has room for the group and its reader."""
    pytest.importorskip("torch")
    result = _scenario("remove-node-train", learnable, tmp_path / "runs")
    assert result["removed"], result
    assert result["epochs"] == 3 and result["restarts"] == 1, result


@pytest.mark.slow
def test_killed_driver_leaves_no_manifest_and_a_rerun_starts_clean(fault_src, tmp_path):
    out = tmp_path / "out"
    cmd = [str(Path(sys.executable).parent / "ray-ingest"), "convert", str(fault_src), str(out),
           "--size", "48", "--encoding", "raw", "--shard-size-mb", "0.3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 240
        # Kill the driver (and the Ray it started) once shards are being staged.
        while time.time() < deadline:
            staging = [p for p in out.glob(mf.STAGING_PREFIX + "*") if any(p.iterdir())] \
                if out.exists() else []
            if staging or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the conversion finished before it could be killed"
    finally:
        kill_tree(proc.pid)
    assert not (out / mf.MANIFEST_NAME).exists()
    # The same command again: starts clean, commits exactly once.
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "1500 images in, 1500 written" in r.stdout
    _assert_exactly_once(fault_src, out)
    assert not list(out.glob(mf.STAGING_PREFIX + "*"))


@pytest.mark.slow
@pytest.mark.tf
def test_training_survives_a_killed_worker(ray_session, learnable, tmp_path):
    pytest.importorskip("tensorflow")
    from ray_ingest.train import TrainConfig, train

    runs = tmp_path / "runs"
    cfg = TrainConfig(data=str(learnable), storage_path=str(runs), name="ft", epochs=4,
                      batch_size=32, num_workers=2, max_failures=2)
    killed = []

    def killer():
        # After the second epoch, kill one training worker mid-epoch 3.
        deadline = time.time() + 600
        history = runs / "ft" / "history.jsonl"
        while time.time() < deadline and not killed:
            if history.exists() and len(history.read_text().splitlines()) >= 2:
                time.sleep(1.0)
                victim = wait_and_kill_one(["ray::RayTrainWorker"], random.Random(0), 5.0)
                if victim:
                    killed.append(victim)
            time.sleep(0.2)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    final = train(cfg, progress=lambda s: None)
    t.join(timeout=5)
    assert killed, "no training worker was killed"
    assert final["epochs"] == 4 and final["restarts"] == 1, final


def test_csv_labels_and_paths_cannot_write_outside_out(ray_session, tmp_path):
    import numpy as np

    from helpers import jpeg_bytes
    from ray_ingest.convert import convert

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rows = ["path,label"]
    evil = ["../../escape", "/etc/passwd", "a/../../b", "..", "x\\..\\y", "ok"]
    for i, label in enumerate(evil):
        (imgs / f"{i}.jpg").write_bytes(jpeg_bytes(np.full((20, 20, 3), i * 30, np.uint8)))
        rows.append(f"../imgs/{i}.jpg,{label}")
    rows.append("../outside.jpg,ok")  # a path outside the list's folder: read, never written
    (tmp_path / "outside.jpg").write_bytes(jpeg_bytes(np.zeros((20, 20, 3), np.uint8)))
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "list.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "deep" / "out"
    before = {p for p in tmp_path.rglob("*")}
    report = convert(str(tmp_path / "lists" / "list.csv"), str(out), size=16, val_fraction=0)
    assert report.num_written == 7
    created = {p for p in tmp_path.rglob("*")} - before
    assert all(out in p.parents or p == out or p in out.parents for p in created), created
    m, names = _filenames(out)
    assert sorted(m.class_names) == sorted(evil)  # labels are data in the manifest, not paths
