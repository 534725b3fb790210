"""Training on Ray Train (CPU): it learns, with 1 and 2 workers, and resumes from checkpoints."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from helpers import own_lines

from ray_ingest.errors import ConfigError, RecordCorruptError, RunExistsError, TrainingStalledError
from ray_ingest.format.manifest import read_manifest
from ray_ingest.train import TrainConfig, train

pytestmark = [pytest.mark.usefixtures("ray_session"), pytest.mark.slow]

CHANCE = 1 / 5
KEYS = {"val_accuracy", "val_loss", "images_per_second", "data_wait_share", "epochs", "restarts"}


def _staged_checkpoints():
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "ray-ingest-ckpt-*")))


def _run_outputs(run: Path):
    """``(best.json, latest.json, history rows)`` of a run folder."""
    best, latest = (json.loads((run / f"{k}.json").read_text()) for k in ("best", "latest"))
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    return best, latest, history


def _check_portable_best_model(data, run: Path, framework: str, tmp_path):
    """The run keeps its best and latest checkpoints only, and the best model, loaded from its
    file as a user would (``keras.models.load_model``, ``torch.export.load``), scores the run's
    own validation accuracy of that epoch."""
    from ray_ingest.train.checkpoint import MODEL_FILES, OPTIMIZER_FILES
    from ray_ingest.train.evaluate import evaluate

    best, latest, history = _run_outputs(run)
    kept = {p.name for p in run.glob("checkpoint_*") if p.is_dir()}
    assert kept == {Path(best["checkpoint"]).name, Path(latest["checkpoint"]).name}
    for name in kept:
        assert {MODEL_FILES[framework], OPTIMIZER_FILES[framework], "meta.json"} <= set(
            os.listdir(run / name))
    assert latest["epoch"] == history[-1]["epoch"]
    assert best["metrics"]["val_accuracy"] == max(h["val_accuracy"] for h in history)
    report = evaluate(str(data), str(run), out=str(tmp_path / "eval"))
    assert report.model == best["model_path"] and report.framework == framework
    assert report.images == best["metrics"]["val_images"]
    assert abs(report.accuracy - best["metrics"]["val_accuracy"]) <= 1 / report.images + 1e-9
    return best, latest, history


def _rows(lines):
    """The epoch column of the driver's epoch table."""
    return [line.split()[0] for line in lines if re.match(r"\s*\d+/\d+\s", line)]


def _cfg(data, tmp_path, **kw):
    base = dict(data=str(data), storage_path=str(tmp_path / "runs"), name="run", epochs=10,
                batch_size=32, seed=0, metrics_out=str(tmp_path / "metrics.json"))
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.tf
def test_tf_one_worker_learns(learnable, tmp_path):
    pytest.importorskip("tensorflow")
    staged = _staged_checkpoints()
    final = train(_cfg(learnable, tmp_path, num_workers=1, decode="workers"),
                  progress=lambda s: None)
    assert final["decode"] == "workers"
    assert _staged_checkpoints() <= staged  # local staging folders are removed after upload
    best, latest, history = _check_portable_best_model(learnable, tmp_path / "runs" / "run",
                                                       "tf", tmp_path)
    assert [h["epoch"] for h in history] == list(range(1, 11)) and latest["epoch"] == 10
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["best"]["epoch"] == best["epoch"]
    assert written["best"]["model_path"] == best["model_path"]
    assert KEYS <= set(written) and written["epochs"] == 10 and written["restarts"] == 0
    assert final["val_images"] > 350  # all of the validation split, not a part
    assert final["val_accuracy"] >= 2 * CHANCE, final  # a misaligned pipeline stays at chance
    assert 0 <= final["data_wait_share"] <= 1 and final["images_per_second"] > 0
    assert (tmp_path / "runs" / "run" / "tensorboard").is_dir()


@pytest.mark.tf
def test_tf_two_workers_learn_and_resume(learnable, tmp_path):
    pytest.importorskip("tensorflow")
    from ray_ingest.cli import build_parser, config_from_args

    val_total = read_manifest(str(learnable)).num_records("val")
    lines = []
    first = train(_cfg(learnable, tmp_path, num_workers=2, epochs=4), progress=lines.append)
    assert first["epochs"] == 4 and first["val_images"] == val_total  # split, all of it
    # The driver's own lines: a start line, the table (one header, a row per epoch, in
    # order), the summary. Nothing else, and few.
    assert _rows(lines) == ["1/4", "2/4", "3/4", "4/4"], lines
    assert sum(line.split()[:2] == ["epoch", "loss"] for line in lines) == 1
    assert len(lines) <= 4 + 9, lines
    text = "\n".join(lines)
    assert f"tensorboard --logdir {tmp_path / 'runs' / 'run' / 'tensorboard'}" in text
    assert first["best"]["model_path"] in text and first["resume_command"] in text
    with pytest.raises(RunExistsError, match="--resume"):
        train(_cfg(learnable, tmp_path, num_workers=2), progress=lambda s: None)
    # The printed command resumes the run (here, with more epochs).
    words = shlex.split(first["resume_command"])
    words[words.index("--epochs") + 1] = "10"
    lines.clear()
    final = train(config_from_args(TrainConfig, build_parser().parse_args(words[1:])),
                  progress=lines.append)
    assert final["epochs"] == 10 and final["restarts"] == 0
    assert _rows(lines) == [f"{e}/10" for e in range(5, 11)], lines
    assert any(line.startswith("resuming ") and line.endswith(" from its last checkpoint")
               for line in lines), lines
    _, _, history = _run_outputs(tmp_path / "runs" / "run")
    assert [h["epoch"] for h in history] == list(range(1, 11))
    with pytest.raises(RunExistsError, match="already finished 10 epochs"):
        train(_cfg(learnable, tmp_path, num_workers=2, resume=True), progress=lambda s: None)
    assert final["val_accuracy"] >= 2 * CHANCE, final
    with pytest.raises(RunExistsError, match="no run"):
        train(_cfg(learnable, tmp_path, name="other", resume=True), progress=lambda s: None)


def test_config_errors_name_the_value(tmp_path):
    with pytest.raises(ValueError, match="divide evenly"):
        TrainConfig(data="x", batch_size=63, num_workers=2)
    with pytest.raises(ValueError, match="model"):
        TrainConfig(data="x", model="vgg")
    with pytest.raises(ValueError, match="crop_scale"):
        TrainConfig(data="x", crop_scale=0)
    assert TrainConfig(data="x").resolved_precision(accelerator=True) == "bf16"
    assert TrainConfig(data="x").resolved_precision(accelerator=False) == "fp32"
    assert TrainConfig(data="x", precision="fp32").resolved_precision(accelerator=True) == "fp32"


@pytest.mark.torch
def test_torch_one_worker_learns_and_resumes(learnable, tmp_path):
    pytest.importorskip("torch")
    first = train(_cfg(learnable, tmp_path, framework="torch", num_workers=1, epochs=5,
                       decode="workers"), progress=lambda s: None)
    assert first["epochs"] == 5
    final = train(_cfg(learnable, tmp_path, framework="torch", num_workers=1, resume=True),
                  progress=lambda s: None)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert KEYS <= set(written) and written["epochs"] == 10 and written["framework"] == "torch"
    assert final["val_accuracy"] >= 2 * CHANCE, final
    _check_portable_best_model(learnable, tmp_path / "runs" / "run", "torch", tmp_path)


@pytest.mark.torch
@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_synthetic_data_mode_runs(learnable, tmp_path, framework):
    pytest.importorskip("torch" if framework == "torch" else "tensorflow")
    final = train(_cfg(learnable, tmp_path, framework=framework, num_workers=1, epochs=1,
                       synthetic_data=True, steps_per_epoch=5), progress=lambda s: None)
    assert final["synthetic_data"] and final["epochs"] == 1 and final["images_per_second"] > 0
    assert final["data_wait_share"] < 0.05  # the batch lives on the device


def _val_rows_per_rank(cfg, world):
    from ray_ingest.format.manifest import read_manifest
    from ray_ingest.train.plan import RunPlan

    plan = RunPlan.of(dataclasses.replace(cfg, decode="workers"), read_manifest(cfg.data))
    return [plan.val_dataset(rank, world).count() for rank in range(world)]


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_two_workers_with_uneven_validation_parts_finish(learnable, tmp_path, framework):
    """Each rank validates its own part of the split, and the parts can differ in batch count,
    down to none at all (here: the split is one read task, so rank 1 gets nothing). That once
    deadlocked torch: DDP's first forward under no_grad broadcasts buffers, a collective that
    the rank without batches never joined."""
    pytest.importorskip("torch" if framework == "torch" else "tensorflow")
    cfg = _cfg(learnable, tmp_path, framework=framework, num_workers=2, epochs=2,
               batch_size=1024, stall_timeout=120)
    rows = _val_rows_per_rank(cfg, 2)
    assert rows[0] > 0 and rows[1] == 0, rows  # the case under test
    final = train(cfg, progress=lambda s: None)
    assert final["epochs"] == 2
    assert final["val_images"] == sum(rows) == read_manifest(str(learnable)).num_records("val")


def test_a_stalled_run_fails_naming_the_rank_and_where_it_waits(learnable, tmp_path):
    """A real stall: a training worker that takes every CPU of the cluster leaves none for the
    read tasks, so its first batch never comes. The watchdog stops the run."""
    pytest.importorskip("torch")
    cfg = _cfg(learnable, tmp_path, framework="torch", num_workers=1, epochs=1,
               cpus_per_worker=2, stall_timeout=15)
    with pytest.raises(TrainingStalledError) as info:
        train(cfg, progress=lambda s: None)
    message = str(info.value)
    assert "rank 0" in message and "--stall-timeout 15" in message
    assert "waits in:" in message and "__next__" in message, message
    dumps = list((tmp_path / "runs" / "run" / "_stalls").glob("*-rank0.txt"))
    assert len(dumps) == 1 and "all threads" in dumps[0].read_text()


@pytest.mark.parametrize("framework", ["tf", "torch"])
def test_every_listed_model_is_built_by_both_frameworks(framework):
    import numpy as np

    from ray_ingest.train.config import MODELS
    if framework == "torch":
        torch = pytest.importorskip("torch")
        from ray_ingest.train.models_torch import build_model

        for name in MODELS:
            out = build_model(name, 3).eval()(torch.zeros(2, 3, 32, 32))
            assert tuple(out.shape) == (2, 3), name
    else:
        pytest.importorskip("tensorflow")
        from ray_ingest.train.models_tf import build_model

        for name in MODELS:
            out = build_model(name, 3, 32)(np.zeros((2, 32, 32, 3), np.float32))
            assert tuple(out.shape) == (2, 3), name


def test_an_unknown_model_or_a_negative_stall_timeout_is_refused_at_once():
    with pytest.raises(ConfigError, match="model must be one of"):
        TrainConfig(data="x", framework="tf", model="resnet1")
    with pytest.raises(ConfigError, match="stall_timeout"):
        TrainConfig(data="x", stall_timeout=-1)


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_consumer_decode_learns(learnable, tmp_path, framework):
    """Records travel encoded and the training worker decodes them (what ``auto`` picks on one
    node): it learns to the same bar as decode in the read tasks."""
    pytest.importorskip("torch" if framework == "torch" else "tensorflow")
    final = train(_cfg(learnable, tmp_path, framework=framework, num_workers=1, epochs=8,
                       decode="auto"), progress=lambda s: None)
    assert final["decode"] == "consumer" and "one node" in final["decode_reason"]
    assert final["val_images"] == read_manifest(str(learnable)).num_records("val")
    assert final["val_accuracy"] >= 2 * CHANCE, final


def test_gpu_decode_without_a_gpu_is_refused_clearly(learnable, tmp_path):
    with pytest.raises(ConfigError, match="--decode gpu needs GPU training workers"):
        train(_cfg(learnable, tmp_path, decode="gpu", use_gpu=False), progress=lambda s: None)
    with pytest.raises(ConfigError, match="decode must be one of"):
        TrainConfig(data="x", decode="fpga")
def _damage(data, dst, count: int):
    """A copy of ``data`` whose first train shard has a flipped byte in records 1..count; the
    shard, and the byte offset of record 1."""
    from ray_ingest.format.framing import scan_records

    shutil.copytree(data, dst)
    m = read_manifest(str(dst))
    shard = dst / m.shards("train")[0].file
    raw = bytearray(shard.read_bytes())
    views, _ = scan_records(bytes(raw))
    starts = [0]
    for v in views:
        starts.append(starts[-1] + len(v) + 16)
    for k in range(1, count + 1):
        raw[starts[k] + 40] ^= 0xFF
    shard.write_bytes(bytes(raw))
    return shard, starts[1]


@pytest.mark.torch
def test_a_corrupt_shard_stops_training_with_the_workers_error(learnable, tmp_path):
    """Not Ray Train's WorkerGroupError: the worker's own error, which it keeps as the cause."""
    pytest.importorskip("torch")
    from ray.train import WorkerGroupError

    shard, offset = _damage(learnable, tmp_path / "data", 1)
    with pytest.raises(RecordCorruptError) as info:
        train(_cfg(tmp_path / "data", tmp_path, framework="torch", epochs=1),
              progress=lambda s: None)
    assert type(info.value) is RecordCorruptError
    assert (info.value.path, info.value.offset) == (str(shard), offset)
    assert str(info.value) == f"{shard}: corrupt TFRecord at byte offset {offset}: data CRC mismatch"
    assert isinstance(info.value.__cause__, WorkerGroupError)


@pytest.mark.torch
def test_skip_corrupt_training_skips_the_records_and_reports_them(learnable, tmp_path):
    pytest.importorskip("torch")
    batch = 32
    train_records = read_manifest(str(learnable)).num_records("train")
    # One more damaged record than an epoch leaves over: the stream ends a step early.
    count = train_records % batch + 1
    shard, offset = _damage(learnable, tmp_path / "data", count)
    lines = []
    final = train(_cfg(tmp_path / "data", tmp_path, framework="torch", epochs=2,
                       batch_size=batch, skip_corrupt=True, order="stream"),
                  progress=lines.append)
    assert final["epochs"] == 2
    assert final["skipped_records"]["records"] == count  # every epoch skips them; counted once
    (r,) = final["skipped_records"]["ranges"]
    assert (r["path"], r["first"], r["last"], r["offset"]) == (str(shard), 1, count, offset)
    assert json.loads((tmp_path / "metrics.json").read_text())["skipped_records"]["records"] == count
    noun = "record" if count == 1 else "records"
    assert lines[-1].startswith(f"train: {count} corrupt {noun} skipped: {shard}: records 1..{count} ")


@pytest.mark.torch
def test_cli_last_line_names_the_shard_and_offset(learnable, tmp_path):
    pytest.importorskip("torch")
    shard, offset = _damage(learnable, tmp_path / "data", 1)
    cmd = [str(Path(sys.executable).parent / "ray-ingest"), "train", str(tmp_path / "data"),
           "--framework", "torch", "--epochs", "1", "--batch-size", "32",
           "--storage-path", str(tmp_path / "runs")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-3000:]
    # Our line alone: none of Ray's echoes of the error (the read task's, the split
    # coordinator's, the training worker's tracebacks), which -v shows.
    assert own_lines(r.stderr) == [
        f"ray-ingest train: error: {shard}: corrupt TFRecord at byte offset {offset}: data CRC "
        "mismatch"], r.stderr[-3000:]
