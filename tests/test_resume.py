"""Exact resumption of ``ray-ingest train`` in the planned order, in both frameworks.

An uninterrupted 2-worker run is the reference. Against it: a run whose training worker is
SIGKILLed mid-epoch (``max_failures=1``: Ray Train restarts the group from the last checkpoint
inside the epoch, with 2 workers), and a run whose driver is SIGKILLed mid-epoch, continued by
``ray-ingest train --resume`` with 1 worker. Each run writes ``--sample-log``; the global
batch of a step is its ranks' ``ids`` in rank order. Checked: the same global batches step by
step, each epoch's records at most once and as many as its steps hold, a replay no longer than
the checkpoint interval, and the same loss curve where the world size is the same.
"""

from __future__ import annotations

import json
import random
import shlex
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from chaos import kill, kill_tree, ray_workers
from helpers import make_synth_tree

pytestmark = pytest.mark.slow

BATCH = 32
EVERY = 4  # --checkpoint-every-steps
EPOCHS = 2
FRAMEWORKS = [pytest.param("torch"), pytest.param("tf", marks=pytest.mark.tf)]


@pytest.fixture(scope="module")
def small(ray_session, tmp_path_factory):
    """800 synthetic images of 5 classes at 32x32: 20 steps of 32 an epoch."""
    from ray_ingest.convert import convert

    src = make_synth_tree(tmp_path_factory.mktemp("resume-src"), 800, 5, 48, 40, seed=3,
                          parallel=True)
    out = tmp_path_factory.mktemp("resume-shards")
    convert(str(src), str(out), size=32, val_fraction=0.2, overwrite=True,
            shard_size_mb=0.02)
    return out


def _lines(path: Path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def _global_batches(lines):
    """``{(epoch, step): {world: [ids of rank 0, then rank 1, ...]}}``; a step logged again
    (replayed after a restart) must have been the same batch."""
    seen = {}
    for x in lines:
        key = (x["epoch"], x["step"], x["world"], x["rank"])
        assert seen.setdefault(key, x["ids"]) == x["ids"], f"step {key} trained two batches"
    out = defaultdict(dict)
    for (e, k, w, r), ids in sorted(seen.items()):
        out[(e, k)].setdefault(w, []).extend(ids)
    # A step whose ranks did not all log it (its run was killed during it) is left out.
    for worlds in out.values():
        for w in [w for w, ids in worlds.items() if len(ids) != BATCH]:
            del worlds[w]
    return {key: worlds for key, worlds in out.items() if worlds}


def _losses(lines, world):
    return {(x["epoch"], x["step"], x["rank"]): x["loss"] for x in lines if x["world"] == world}


def _cfg(data, runs, name, framework, log, **kw):
    from ray_ingest.train import TrainConfig

    return TrainConfig(data=str(data), framework=framework, storage_path=str(runs), name=name,
                       epochs=EPOCHS, batch_size=BATCH, num_workers=2, seed=7,
                       checkpoint_every_steps=EVERY, sample_log=str(log),
                       stall_timeout=240, **kw)


def _wait_for_step(log: Path, step: int, proc=None, timeout: float = 300) -> None:
    """Until ``log`` shows step ``step`` of the first epoch (checkpoints inside it are made)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.exists() and any(x["epoch"] == 0 and x["step"] >= step
                                for x in _lines_safe(log)):
            return
        assert proc is None or proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    raise AssertionError(f"no step {step} in {log} after {timeout} s")


def _lines_safe(path: Path):
    out = []
    for x in path.read_text().splitlines():
        try:
            out.append(json.loads(x))
        except ValueError:  # a line being written
            pass
    return out


@pytest.fixture(scope="module")
def reference(small, tmp_path_factory):
    """The uninterrupted 2-worker run of each framework: its sample log and steps."""
    from ray_ingest.train import train

    out = {}

    def run(framework):
        if framework not in out:
            d = tmp_path_factory.mktemp(f"ref-{framework}")
            train(_cfg(small, d / "runs", "ref", framework, d / "samples.jsonl"),
                  progress=lambda s: None)
            out[framework] = _lines(d / "samples.jsonl")
        return out[framework]

    return run


def _check_exactly_once_per_epoch(batches, steps):
    for e in range(EPOCHS):
        ids = [i for k in range(steps) for i in batches[(e, k)][2]]
        counts = Counter(ids)
        assert len(ids) == steps * BATCH and max(counts.values()) == 1, \
            f"epoch {e}: {len(ids)} samples, repeated: {[i for i, c in counts.items() if c > 1][:3]}"


def _assert_same_batches(ref, got):
    assert set(got) == set(ref), (f"steps missing: {sorted(set(ref) - set(got))[:5]}, "
                                  f"extra: {sorted(set(got) - set(ref))[:5]}")
    for key, worlds in got.items():
        for world, ids in worlds.items():
            assert ids == ref[key][2], f"step {key} with {world} worker(s): another global batch"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_killed_worker_resumes_at_the_next_global_batch(framework, small, reference,
                                                          tmp_path):
    if framework == "tf":
        pytest.importorskip("tensorflow")
    from ray_ingest.train import train

    ref_lines = reference(framework)
    ref = _global_batches(ref_lines)
    steps = max(k for _, k in ref) + 1
    _check_exactly_once_per_epoch(ref, steps)
    log = tmp_path / "samples.jsonl"
    killed = []

    def killer():
        # After a checkpoint inside the first epoch (maybe before Ray Train, which polls the
        # workers every 2 s, has registered it: the restart finds it all the same). The
        # victim is chosen while the first steps run, so that the kill itself is immediate:
        # an epoch of this data takes a fraction of a second.
        _wait_for_step(log, 0)
        workers = ray_workers(["ray::RayTrainWorker"])
        _wait_for_step(log, EVERY + 2)
        if workers and kill(random.Random(0).choice(workers)[0]):
            killed.append(workers)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    final = train(_cfg(small, tmp_path / "runs", "killed", framework, log, max_failures=1),
                  progress=lambda s: None)
    t.join(timeout=30)
    assert killed, "no training worker was killed"
    assert final["restarts"] == 1, final
    lines = _lines(log)
    got = _global_batches(lines)
    _assert_same_batches(ref, got)
    # The restart (the second attempt's first step) went on from a checkpoint inside an
    # epoch (after a multiple of EVERY steps), not from the epoch's start.
    assert {x["attempt"] for x in lines} == {lines[0]["attempt"]}
    assert {(x["restart"], x["rank"]) for x in lines} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    resumed_at = next(((x["epoch"], x["step"]) for x in lines if x["restart"] == 1), None)
    assert resumed_at is not None, "the restarted run trained no step"
    assert resumed_at[1] > 0, resumed_at
    assert (resumed_at[0] * steps + resumed_at[1]) % EVERY == 0, resumed_at
    # The same world size: the same loss at every step, within floating-point noise.
    ref_loss, loss = _losses(ref_lines, 2), _losses(lines, 2)
    assert set(loss) == set(ref_loss)
    keys = sorted(ref_loss)
    np.testing.assert_allclose([loss[k] for k in keys], [ref_loss[k] for k in keys],
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_killed_driver_resumed_with_one_worker_trains_the_same_global_batches(
        framework, small, reference, tmp_path):
    if framework == "tf":
        pytest.importorskip("tensorflow")
    ref = _global_batches(reference(framework))
    log = tmp_path / "samples.jsonl"
    cfg = _cfg(small, tmp_path / "runs", "driver", framework, log)
    cli = str(Path(sys.executable).parent / "ray-ingest")
    words = shlex.split(cfg.command_line())[2:]
    proc = subprocess.Popen([cli, "train", *words], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_step(log, EVERY + 2, proc)
    finally:
        kill_tree(proc.pid)
    before = _lines_safe(log)
    assert max(x["step"] for x in before if x["epoch"] == 0) < max(k for _, k in ref), \
        "the first epoch ended before the driver was killed"
    from dataclasses import replace

    r = subprocess.run([cli, "train", *shlex.split(replace(cfg, num_workers=1, resume=True)
                        .command_line())[2:]], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "training goes on at epoch 1, step" in r.stdout, r.stdout[-2000:]
    lines = _lines_safe(log)
    got = _global_batches(lines)
    _assert_same_batches(ref, got)
    resumed = [x for x in lines if x["world"] == 1]
    first = min((x["epoch"], x["step"]) for x in resumed)
    assert first[0] == 0 and 0 < first[1] <= max(x["step"] for x in before) and \
        first[1] % EVERY == 0, first
