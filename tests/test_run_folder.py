"""A training run's folder and what the driver prints about it: the history file, TensorBoard logs
that reach a URI run folder, the epoch table that follows the history, the summary, the command
that resumes the run. No Ray needed."""

from __future__ import annotations

import json
import shlex
import uuid

import pytest

from ray_ingest import fs
from ray_ingest.train import console, rundir
from ray_ingest.train.config import TrainConfig


def _metrics(epoch, val_accuracy=0.5, restarts=0):
    return {"epoch": epoch, "loss": 1.0 / epoch, "accuracy": 0.4, "val_loss": 0.9,
            "val_accuracy": val_accuracy, "images_per_second": 812.4, "data_wait_share": 0.012,
            "epoch_seconds": 3.25, "restarts": restarts}


def test_history_holds_one_line_per_epoch_and_an_epoch_trained_again_replaces_its_line():
    storage = f"memory://history-{uuid.uuid4().hex[:8]}/runs"  # an object store: no appends
    h = rundir.History(storage, "r")
    for e in (1, 2, 3):
        h.append(_metrics(e))
    path = rundir.history_path(storage, "r")
    assert [r["epoch"] for r in rundir.read_history(path)] == [1, 2, 3]
    # A resume (or a restart) from the checkpoint of epoch 1 trains epoch 2 again.
    h2 = rundir.History(storage, "r")
    h2.append(_metrics(2, val_accuracy=0.9))
    rows = rundir.read_history(path)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["val_accuracy"] == 0.9
    assert all("time" in r for r in rows)
    assert rundir.read_history(fs.join(storage, "other", rundir.HISTORY_FILE)) == []


def test_tensorboard_logs_reach_a_uri_run_folder_after_each_epoch(tmp_path):
    pytest.importorskip("tensorboardX")
    tf = pytest.importorskip("tensorflow")
    storage = f"memory://tb-{uuid.uuid4().hex[:8]}/runs"
    tb = rundir.TensorBoard(storage, "r", enabled=True)
    assert tb.logdir == f"{storage}/r/tensorboard"
    tb.write(_metrics(1, val_accuracy=0.25))
    files = fs.list_dir(tb.logdir)
    assert len(files) == 1 and files[0].startswith("events.out.tfevents")
    tb.write(_metrics(2, val_accuracy=0.75))
    tb.close()
    # Read back with TensorFlow's own reader: both epochs are there.
    local = tmp_path / "events"
    local.write_bytes(fs.read_bytes(fs.join(tb.logdir, files[0])))
    seen = {}
    for event in tf.compat.v1.train.summary_iterator(str(local)):
        for v in event.summary.value:
            if v.tag == "val_accuracy":
                seen[event.step] = round(v.simple_value, 3)
    assert seen == {1: 0.25, 2: 0.75}


def test_tensorboard_logs_of_a_local_run_are_written_in_place(tmp_path):
    pytest.importorskip("tensorboardX")
    tb = rundir.TensorBoard(str(tmp_path / "runs"), "r", enabled=True)
    tb.write(_metrics(1))
    tb.close()
    assert list((tmp_path / "runs" / "r" / "tensorboard").glob("events.out.tfevents*"))
    off = rundir.TensorBoard(str(tmp_path / "runs"), "q", enabled=False)
    off.write(_metrics(1))
    assert not (tmp_path / "runs" / "q").exists()


def test_the_epoch_table_prints_each_new_epoch_once_in_order(tmp_path):
    storage = str(tmp_path / "runs")
    h = rundir.History(storage, "r")
    h.append(_metrics(1))  # from before a resume: not printed again
    lines = []
    table = console.EpochTable(rundir.history_path(storage, "r"), 4, lines.append)
    table.poll()
    assert lines == []
    h.append(_metrics(2))
    h.append(_metrics(3))
    table.poll()
    table.poll()
    assert len(lines) == 3 and lines[0].split()[:3] == ["epoch", "loss", "acc"]
    assert [line.split()[0] for line in lines[1:]] == ["2/4", "3/4"]
    assert lines[1].split()[1:] == ["0.5000", "0.400", "0.9000", "0.500", "812", "1.2%",
                                    "3.2", "s"]
    h.append(_metrics(3, restarts=1))  # epoch 3 trained again after a restart
    with table:  # the thread, then a last look on exit
        h.append(_metrics(4, restarts=1))
    assert [line.split()[0] for line in lines[1:]] == ["2/4", "3/4", "3/4", "4/4"]
    assert lines[-1].endswith("(after 1 restart)")


def test_the_summary_says_where_the_models_and_logs_are_and_how_to_go_on():
    def entry(epoch, acc, name):
        return {"epoch": epoch, "val_accuracy": acc, "checkpoint": f"/runs/r/{name}",
                "model_path": f"/runs/r/{name}/model.keras"}

    final = {"epochs": 3, "wall_seconds": 42.0, "restarts": 0, "val_accuracy": 0.8,
             "best": entry(2, 0.9, "checkpoint_b"), "latest": entry(3, 0.8, "checkpoint_c"),
             "history": "/runs/r/history.jsonl", "tensorboard": "/runs/r/tensorboard",
             "resume_command": "ray-ingest train /d --epochs 3 --resume", "data": "/d",
             "run_dir": "/runs/r"}
    text = "\n".join(console.summary(final))
    assert "epoch 2, val acc 0.900" in text and "/runs/r/checkpoint_b/model.keras" in text
    assert "epoch 3" in text and "/runs/r/checkpoint_c/model.keras" in text
    assert "tensorboard --logdir /runs/r/tensorboard" in text
    assert "ray-ingest train /d --epochs 3 --resume" in text
    assert "ray-ingest evaluate /d --model /runs/r" in text
    final["latest"] = final["best"]
    lines = console.summary(final)
    assert sum("model.keras" in line for line in lines) == 1 and "also the latest" in lines[1]


def test_the_resume_command_parses_back_into_the_same_configuration():
    from ray_ingest.cli import build_parser, config_from_args

    cfg = TrainConfig(data="/data/shards 64", framework="torch", model="resnet18", epochs=7,
                      batch_size=64, num_workers=2, use_gpu=False, storage_path="s3://b/runs",
                      name="exp-1", lr=0.01, augment=False, crop_scale=0.5, image_size=48,
                      max_failures=-1, synthetic_data=True, stall_timeout=0.0, resume=True,
                      metrics_out="/tmp/m.json")
    command = cfg.command_line()
    words = shlex.split(command)
    assert words[:2] == ["ray-ingest", "train"] and "--resume" in words
    args = build_parser().parse_args(words[1:])
    assert config_from_args(TrainConfig, args) == cfg
    plain = TrainConfig(data="/d", resume=True)
    words = shlex.split(plain.command_line())
    assert words == ["ray-ingest", "train", "/d", "--epochs", "5", "--storage-path", "runs",
                     "--name", "ray-ingest-train", "--resume"]
    assert config_from_args(TrainConfig, build_parser().parse_args(words[1:])) == plain
