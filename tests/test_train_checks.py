"""What ``train`` refuses before Ray starts (numbers out of range, an unwritable
``--metrics-out``, a resume onto another model or other data, a run too large for the node's
memory) and what it reports on data without a validation split. No Ray needed."""

from __future__ import annotations

import json
import logging
import shlex
from types import SimpleNamespace

import pytest

from ray_ingest.cli import build_parser, config_from_args, main
from ray_ingest.errors import CheckpointError, ConfigError
from ray_ingest.train import checkpoint, console, memory, metrics, resume
from ray_ingest.train.config import TrainConfig


@pytest.mark.parametrize("args, rule", [
    (["--lr", "nan"], "--lr must be a finite number, got nan"),
    (["--lr", "inf"], "--lr must be a finite number, got inf"),
    (["--weight-decay", "nan"], "--weight-decay must be a finite number"),
    (["--weight-decay", "-1"], "--weight-decay must be >= 0"),
    (["--crop-ratio", "nan"], "--crop-ratio must be a finite number"),
    (["--crop-ratio", "inf"], "--crop-ratio must be a finite number"),
    (["--crop-scale", "nan"], "--crop-scale must be a finite number"),
    (["--stall-timeout", "nan"], "--stall-timeout must be a finite number"),
    (["--prefetch-batches", "-1"], "--prefetch-batches must be >= 0, got -1"),
    (["--shuffle-buffer", "-5"], "--shuffle-buffer must be >= 0 rows"),
    (["--steps-per-epoch", "0"], "--steps-per-epoch must be >= 1"),
    (["--steps-per-epoch", "-1"], "--steps-per-epoch must be >= 1"),
    (["--cpus-per-worker", "0"], "--cpus-per-worker must be positive"),
    (["--cpus-per-worker", "-1"], "--cpus-per-worker must be positive"),
    (["--cpus-per-worker", "nan"], "--cpus-per-worker must be a finite number"),
])
def test_numbers_out_of_range_are_refused_in_one_line_before_ray(args, rule, tmp_path, capsys,
                                                                   no_ray):
    assert main(["train", str(tmp_path / "data"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ray-ingest train: error: " + rule), err


def test_metrics_out_in_a_missing_folder_is_refused_before_ray(tmp_path, capsys, no_ray):
    target = tmp_path / "no-such-folder" / "m.json"
    assert main(["train", str(tmp_path / "data"), "--metrics-out", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ray-ingest train: error: --metrics-out {target}: the folder "
                   f"{target.parent} does not exist"]
    assert main(["train", str(tmp_path / "data"), "--metrics-out", str(tmp_path)]) == 2
    assert "a folder; name a file" in capsys.readouterr().err


def test_every_option_of_the_resume_command_is_an_option_of_the_verb():
    """The printed ``resume:`` command parses back, whatever fields differ from the defaults,
    also a run name with spaces."""
    cfg = TrainConfig(data="/d/my shards", name="run 1", weight_decay=0.05, shuffle_buffer=64,
                      prefetch_batches=2, decode="workers", decode_threads=3, crop_ratio=1.3,
                      cpus_per_worker=0.5, steps_per_epoch=4, skip_corrupt=True, resume=True,
                      order="stream", sample_log="/d/samples.jsonl")
    words = shlex.split(cfg.command_line())
    assert config_from_args(TrainConfig, build_parser().parse_args(words[1:])) == cfg
    planned = TrainConfig(data="/d/x", checkpoint_every_steps=50, checkpoint_every_minutes=2.5)
    words = shlex.split(planned.command_line())
    assert config_from_args(TrainConfig, build_parser().parse_args(words[1:])) == planned


# ---- resume ----------------------------------------------------------------------------------


def _manifest(names=("circle", "square", "star"), size=32, encoding="jpeg", val=10):
    """A manifest's fields that a resume compares (``size`` None: whole-image shards)."""
    return SimpleNamespace(class_names=list(names), height=size, width=size, encoding=encoding,
                           variable_size=size is None,
                           num_records=lambda split: val if split == "val" else 100)


def _meta(**kw):
    cfg = TrainConfig(data="/data/a", framework="torch", model="small_cnn")
    meta = checkpoint.checkpoint_meta(cfg, _manifest(), {"epoch": 2, "val_accuracy": 0.5,
                                                        "loss": 1.0})
    meta.update(kw)
    return meta


def _resume(**kw):
    base = dict(data="/data/b", framework="torch", model="small_cnn", epochs=5, resume=True,
                name="exp")
    base.update(kw)
    return TrainConfig(**base)


def test_a_resume_of_the_same_model_on_the_same_data_passes():
    resume.check(_meta(), _resume(batch_size=64, lr=0.01, epochs=9), _manifest(), "/runs/exp")
    resume.check(_meta(), _resume(image_size=32), _manifest(), "/runs/exp")


def test_a_resume_on_whole_image_shards_compares_the_training_size():
    whole = _manifest(size=None)
    cfg = TrainConfig(data="/data/a", framework="torch", model="small_cnn")
    meta = checkpoint.checkpoint_meta(cfg, whole, {"epoch": 2, "val_accuracy": 0.5, "loss": 1.0})
    assert meta["image_size"] == 224 and meta["stored_size"] == [None, None]
    resume.check(meta, _resume(), whole, "/runs/exp")  # the default size: the same run
    with pytest.raises(CheckpointError, match="trained at 224 px, this command at 160 px"):
        resume.check(meta, _resume(image_size=160), whole, "/runs/exp")


@pytest.mark.parametrize("change, manifest, said", [
    ({"framework": "tf"}, _manifest(), "--framework: the run trained torch, this command tf"),
    ({"model": "resnet18"}, _manifest(), "--model: the run trained small_cnn, this command "
                                         "resnet18"),
    ({"image_size": 48}, _manifest(), "--image-size: the run trained at 32 px, this command "
                                      "at 48 px"),
])
def test_a_resume_with_another_model_is_refused_and_the_hint_drops_the_bad_flag(
        change, manifest, said):
    with pytest.raises(CheckpointError) as info:
        resume.check(_meta(), _resume(**change), manifest, "/runs/exp")
    message = str(info.value)
    assert message.startswith("/runs/exp: --resume cannot continue this run: ") and said in message
    assert "\n" not in message
    hint = shlex.split(message.split("resume with: ", 1)[1])
    fixed = config_from_args(TrainConfig, build_parser().parse_args(hint[1:]))
    assert (fixed.framework, fixed.model, fixed.image_size or 32) == ("torch", "small_cnn", 32)
    assert fixed.resume and fixed.epochs == 5


@pytest.mark.parametrize("manifest, said", [
    (_manifest(names=("square", "circle", "star")),
     "the same 3 classes in another order (class id 0 is 'circle' in the run, 'square' in this "
     "data"),
    (_manifest(names=("circle", "square", "triangle")),
     "class id 2 is 'star' in the run, 'triangle' in this data"),
    (_manifest(names=("circle", "square")), "the run has 3 classes, this data 2"),
    (_manifest(size=64), "stored size: the run's data holds 32x32 images, this data 64x64"),
    (_manifest(size=None), "stored size: the run's data holds 32x32 images, this data whole "
                           "images (each its own size)"),
    (_manifest(encoding="raw"), "encoding: the run's data stores jpeg records, this data raw"),
    (_manifest(val=0), "validation split: the run's data had one, this data has none"),
])
def test_a_resume_onto_other_data_is_refused_naming_what_differs(manifest, said):
    with pytest.raises(CheckpointError) as info:
        resume.check(_meta(), _resume(image_size=32), manifest, "/runs/exp")
    message = str(info.value)
    assert said in message, message
    assert message.endswith("resume it on the data it was trained on (/data/a), or start a "
                            "new run (--name)")


# ---- no validation split ----------------------------------------------------------------------


def _sums(val_count, loss=2.0):
    # val loss, val correct, val count, loss, correct, images, wait, step, steps, restarts, first
    return [0.0, 0.0, val_count, loss * 64, 16.0, 64.0, 0.1, 1.0, 2.0, 0.0, 0.05]


def test_without_a_validation_split_there_are_no_validation_figures():
    m = metrics.epoch_metrics(0, _sums(0), 1.0)
    assert m["val_loss"] is None and m["val_accuracy"] is None and m["val_images"] == 0
    row = metrics.table_row(m, 3).split()
    assert row[:5] == ["1/3", "2.0000", "0.250", metrics.MISSING, metrics.MISSING]
    json.dumps(m)  # None is null in the history file
    validated = metrics.epoch_metrics(0, [3.0, 2.0, 4.0, *_sums(0)[3:]], 1.0)
    assert validated["val_loss"] == 0.75 and validated["val_accuracy"] == 0.5


def _checkpoint(tmp_path, epoch, loss, val_accuracy=None):
    folder = tmp_path / f"checkpoint_{epoch}"
    folder.mkdir()
    (folder / "model.pt2").write_bytes(b"")
    meta = {"epoch": epoch, "model_file": "model.pt2",
            "metrics": {"epoch": epoch, "loss": loss, "val_accuracy": val_accuracy}}
    (folder / "meta.json").write_text(json.dumps(meta))


def test_without_a_validation_split_the_best_checkpoint_has_the_lowest_training_loss(tmp_path):
    for epoch, loss in ((1, 1.5), (2, 0.9), (3, 1.1)):
        _checkpoint(tmp_path, epoch, loss)
    found = checkpoint.find_checkpoints(str(tmp_path))
    assert (found["best"]["epoch"], found["latest"]["epoch"]) == (2, 3)
    assert checkpoint.score_order(False) == ("loss", "min")
    assert checkpoint.score_order(True) == ("val_accuracy", "max")


def test_the_summary_says_there_was_no_validation_split_and_quotes_its_hints():
    best = {"epoch": 2, "val_accuracy": None, "loss": 0.9, "checkpoint": "/r/run 1/c2",
            "model_path": "/r/run 1/c2/model.pt2"}
    final = {"epochs": 3, "wall_seconds": 9.0, "restarts": 0, "val_accuracy": None,
             "loss": 1.1, "best": best, "latest": dict(best, epoch=3, checkpoint="/r/run 1/c3"),
             "history": "/r/run 1/history.jsonl", "tensorboard": "/r/run 1/tensorboard",
             "resume_command": "ray-ingest train '/d/my data' --resume", "data": "/d/my data",
             "run_dir": "/r/run 1"}
    lines = console.summary(final)
    assert "no validation split" in lines[0] and "lowest training loss" in lines[0]
    assert lines[1].startswith("best:    epoch 2, loss 0.9000")
    evaluate = [line for line in lines if line.startswith("evaluate: ")][0]
    assert shlex.split(evaluate.split(": ", 1)[1]) == [
        "ray-ingest", "evaluate", "/d/my data", "--model", "/r/run 1", "--split", "train"]
    assert "tensorboard --logdir '/r/run 1/tensorboard'" in "\n".join(lines)


# ---- memory ----------------------------------------------------------------------------------


def test_a_run_too_large_for_the_node_is_refused_with_the_figures():
    cfg = TrainConfig(data="x", batch_size=1024)
    est = memory.estimate(cfg, 224, 224, decode_threads=2, workers_on_node=1)
    assert est.feed == 1024 * 224 * 224 * 3 * (4 + 2 + 2)
    with pytest.raises(ConfigError) as info:
        memory.check(est, node_total=24e9, node_available=20e9)
    message = str(info.value)
    assert f"about {est.total / 1e9:.1f} GB" in message and "the node has 24.0 GB" in message
    small = memory.estimate(TrainConfig(data="x", batch_size=64), 32, 32, 2, 1)
    memory.check(small, node_total=24e9, node_available=20e9)


def test_a_run_near_the_free_memory_gets_one_warning(caplog):
    cfg = TrainConfig(data="x", batch_size=128)
    est = memory.estimate(cfg, 224, 224, decode_threads=2, workers_on_node=1)
    with caplog.at_level(logging.WARNING, logger="ray_ingest"):
        memory.check(est, node_total=64e9, node_available=est.total)
    (record,) = caplog.records
    assert "free of 64.0 GB" in record.getMessage()
