"""The pieces of a resumable run that need no Ray: augmentation draws per (seed, epoch,
sample), the options a planned or stream order refuses, when a checkpoint inside an epoch is
due, which checkpoint folder a run goes on from, what a resume inside an epoch refuses, and
the sample log's lines."""

from __future__ import annotations

import json
import os
import shlex

import numpy as np
import pytest

from ray_ingest.cli import build_parser, config_from_args, main
from ray_ingest.errors import CheckpointError, ConfigError
from ray_ingest.train import checkpoint, resume, rundir
from ray_ingest.train.config import TrainConfig
from ray_ingest.train.plan import step_uniforms

from test_train_checks import _manifest as _small_manifest, _resume


# ---- augmentation draws ------------------------------------------------------------------


@pytest.mark.parametrize("world", [2, 4, 8])
def test_a_samples_draws_do_not_depend_on_the_rank_or_world_that_trains_it(world):
    cfg = TrainConfig(data="x", batch_size=64, seed=5)
    whole = step_uniforms(cfg, 0, 3, 7, 64)
    n = 64 // world
    parts = np.concatenate([step_uniforms(cfg, r, 3, 7, n) for r in range(world)])
    assert whole.shape == (64, 8) and whole.dtype == np.float32
    np.testing.assert_array_equal(parts, whole)


def test_draws_differ_by_step_epoch_and_seed_and_lie_in_the_unit_interval():
    cfg = TrainConfig(data="x", batch_size=32, seed=5)
    base = step_uniforms(cfg, 0, 0, 0, 32)
    assert base.min() >= 0.0 and base.max() < 1.0
    others = [step_uniforms(cfg, 0, 0, 1, 32), step_uniforms(cfg, 0, 1, 0, 32),
              step_uniforms(TrainConfig(data="x", batch_size=32, seed=6), 0, 0, 0, 32)]
    for other in others:
        assert not np.allclose(other, base)
    # The draws of a sample are independent of one another and roughly uniform.
    many = np.concatenate([step_uniforms(cfg, 0, 0, k, 32) for k in range(200)])
    assert abs(float(many.mean()) - 0.5) < 0.01
    assert abs(float(np.corrcoef(many[:, 0], many[:, 1])[0, 1])) < 0.03


# ---- the order's options -----------------------------------------------------------------


@pytest.mark.parametrize("args, said", [
    (["--skip-corrupt"], "--skip-corrupt needs --order stream"),
    (["--shuffle-buffer", "64"], "--shuffle-buffer needs --order stream"),
    (["--order", "stream", "--checkpoint-every-steps", "10"],
     "--checkpoint-every-steps needs --order planned"),
    (["--order", "stream", "--checkpoint-every-minutes", "5"],
     "--checkpoint-every-minutes needs --order planned"),
    (["--checkpoint-every-steps", "0"], "--checkpoint-every-steps must be >= 1, got 0"),
    (["--checkpoint-every-minutes", "0"], "--checkpoint-every-minutes must be a positive number"),
    (["--checkpoint-every-minutes", "nan"], "--checkpoint-every-minutes must be a positive"),
    (["--sample-log", "s.jsonl", "--synthetic-data"], "--sample-log needs real data"),
    (["--sample-log", "s3://bucket/s.jsonl"], "--sample-log is a local file"),
])
def test_options_the_order_cannot_honour_are_refused_naming_the_flag(args, said, tmp_path,
                                                                      capsys, no_ray):
    assert main(["train", str(tmp_path / "data"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ray-ingest train: error: " + said), err


def test_an_unknown_order_is_refused_in_python_too():
    with pytest.raises(ConfigError, match="order must be one of"):
        TrainConfig(data="x", order="random")


def test_the_stream_order_still_takes_skip_corrupt_and_a_shuffle_buffer():
    cfg = TrainConfig(data="x", order="stream", skip_corrupt=True, shuffle_buffer=64)
    words = shlex.split(cfg.command_line())
    assert "--order" in words and config_from_args(
        TrainConfig, build_parser().parse_args(words[1:])) == cfg


# ---- when a checkpoint inside an epoch is due ----------------------------------------------


def _due_steps(schedule, epochs, steps):
    return [(e, k) for e in range(epochs) for k in range(steps) if schedule.due(e, k, steps)]


def test_every_n_steps_counts_global_steps_across_epochs_and_skips_an_epochs_last_step():
    s = checkpoint.Schedule(4, None, rank=0, all_reduce=None)
    # 10 steps an epoch: after global steps 4, 8, (12 = epoch 1 step 1), 16; 20 is an
    # epoch's last step, which the epoch's own checkpoint covers.
    assert _due_steps(s, 2, 10) == [(0, 3), (0, 7), (1, 1), (1, 5)]
    assert _due_steps(checkpoint.Schedule(None, None, 0, None), 2, 10) == []


def test_every_m_minutes_follows_rank_0s_clock_on_every_rank(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(checkpoint.time, "monotonic", lambda: clock[0])
    shared = []

    def all_reduce(values):  # rank 0's vote reaches rank 1 through the sum
        shared.append(float(values[0]))
        return np.asarray([sum(shared[-1:])])

    r0 = checkpoint.Schedule(None, 2.0, rank=0, all_reduce=all_reduce)
    assert not r0.due(0, 0, 100)
    clock[0] += 121
    assert r0.due(0, 1, 100)
    r0.reset()
    assert not r0.due(0, 2, 100)
    # Rank 1's own clock is not consulted: it follows the all-reduced vote.
    r1 = checkpoint.Schedule(None, 2.0, rank=1, all_reduce=lambda v: np.asarray([1.0]))
    assert r1.due(0, 5, 100)
    assert not r1.due(0, 99, 100)  # an epoch's last step: the epoch checkpoints


# ---- which checkpoint a run goes on from ---------------------------------------------------


def _write_checkpoint(run, name, epoch, step, *, cut=False):
    folder = os.path.join(run, name)
    os.makedirs(folder)
    with open(os.path.join(folder, "model.pt"), "wb") as f:
        f.write(b"x" * (50 if cut else 100))
    meta = {"epoch": epoch, "position": {"epoch": epoch, "step": step}, "model_file": "model.pt",
            "metrics": {"epoch": epoch}, "files": {"model.pt": 100}}
    with open(os.path.join(folder, checkpoint.META_FILE), "w") as f:
        json.dump(meta, f)
    return folder


class _Given:
    def __init__(self, path):
        self.path = path


def test_a_partly_copied_checkpoint_is_not_one(tmp_path):
    run = str(tmp_path)
    _write_checkpoint(run, "checkpoint_a", 0, 4)
    _write_checkpoint(run, "checkpoint_b", 0, 8, cut=True)  # its worker died mid-copy
    found = checkpoint.find_checkpoints(run)
    assert checkpoint.position_of(found["latest"]) == (0, 4)


def test_the_latest_is_the_furthest_position_and_a_later_unregistered_one_is_used(tmp_path):
    run = str(tmp_path)
    first = _write_checkpoint(run, "checkpoint_a", 1, 0)  # the end of epoch 0
    _write_checkpoint(run, "checkpoint_b", 1, 8)  # written, then the worker died
    assert checkpoint.position_of(checkpoint.find_checkpoints(run)["latest"]) == (1, 8)
    chosen, position = checkpoint.newest(_Given(first), run)
    assert os.path.basename(str(chosen.path).rstrip("/")) == "checkpoint_b"
    assert position == (1, 8)
    later = _Given(_write_checkpoint(run, "checkpoint_c", 1, 12))
    assert checkpoint.newest(later, run) == (later, None)  # the registered one is newest
    assert checkpoint.newest(None, str(tmp_path / "empty-run")) == (None, None)


def _sum_over(positions):
    """An all-reduce among workers that found ``positions`` (each worker's call sees all)."""
    def make(rank):
        def all_reduce(values):
            return np.sum([_vector(p) for p in positions], axis=0)
        return all_reduce
    return make


def _vector(p):
    e, k = p or (0, 0)
    return np.asarray([float(p is not None), e, k, e * e, k * k])


@pytest.mark.parametrize("positions, want", [
    ([(1, 8), (1, 8)], True),
    ([(1, 8), None], False),  # one worker did not see the later folder
    ([(1, 8), (1, 12)], False),
    ([(1, 8), (1, 12), (1, 10)], False),  # sums alone would agree for the middle one
    ([None, None], False),
])
def test_the_workers_go_on_from_a_later_folder_only_when_all_found_it(positions, want):
    make = _sum_over(positions)
    got = [checkpoint.agreed(p, len(positions), make(r)) for r, p in enumerate(positions)]
    assert got == [want] * len(positions)
    assert checkpoint.agreed((0, 4), 1, None) and not checkpoint.agreed(None, 1, None)


def test_unretained_checkpoint_folders_are_removed_and_nothing_else(tmp_path):
    run = str(tmp_path)
    for name in ("checkpoint_a", "checkpoint_b", "checkpoint_c"):
        _write_checkpoint(run, name, 0, 1)
    (tmp_path / "checkpoint_notes.txt").write_text("a file, not a checkpoint")
    (tmp_path / "history.jsonl").write_text("")
    gone = checkpoint.remove_unretained(run, [os.path.join(run, "checkpoint_b") + "/"])
    assert sorted(gone) == ["checkpoint_a", "checkpoint_c"]
    assert sorted(os.listdir(run)) == ["checkpoint_b", "checkpoint_notes.txt", "history.jsonl"]


# ---- a resume inside an epoch ---------------------------------------------------------------


def _manifest(val=10, train=10_000):
    """A resume's manifest fields, with ``train`` records (epochs of many steps)."""
    m = _small_manifest(val=val)
    m.num_records = lambda split: val if split == "val" else train
    return m


def _mid_epoch_meta():
    cfg = TrainConfig(data="/data/a", framework="torch", model="small_cnn", batch_size=64,
                      seed=3)
    return checkpoint.checkpoint_meta(cfg, _manifest(), {}, {"epoch": 1, "step": 12})


@pytest.mark.parametrize("change, said", [
    ({"batch_size": 128}, "--batch-size: the run's checkpoint inside epoch 2 has 64, this "
                          "command 128"),
    ({"seed": 4}, "--seed: the run's checkpoint inside epoch 2 has 3"),
    ({"order": "stream"}, "--order: the run's checkpoint inside epoch 2 has planned"),
])
def test_a_resume_inside_an_epoch_refuses_what_would_change_its_global_batches(change, said):
    with pytest.raises(CheckpointError) as info:
        resume.check(_mid_epoch_meta(), _resume(**{"batch_size": 64, "seed": 3, **change}),
                     _manifest(), "/runs/exp")
    message = str(info.value)
    assert said in message
    fixed = config_from_args(TrainConfig, build_parser().parse_args(
        shlex.split(message.split("resume with: ", 1)[1])[1:]))
    assert (fixed.batch_size, fixed.seed, fixed.order) == (64, 3, "planned")


def test_a_resume_inside_an_epoch_refuses_epochs_that_end_before_its_step():
    with pytest.raises(CheckpointError) as info:
        resume.check(_mid_epoch_meta(), _resume(batch_size=64, seed=3, steps_per_epoch=12),
                     _manifest(), "/runs/exp")
    message = str(info.value)
    assert "--steps-per-epoch: the run's checkpoint is after step 12 of epoch 2" in message
    assert "--steps-per-epoch" not in message.split("resume with: ", 1)[1]


def test_a_mid_epoch_checkpoint_of_data_without_validation_resumes_on_it():
    cfg = TrainConfig(data="/data/a", framework="torch", model="small_cnn", batch_size=64)
    meta = checkpoint.checkpoint_meta(cfg, _manifest(val=0), {}, {"epoch": 0, "step": 3})
    resume.check(meta, _resume(batch_size=64), _manifest(val=0), "/runs/exp")


def test_a_resume_inside_an_epoch_takes_another_worker_count():
    resume.check(_mid_epoch_meta(), _resume(batch_size=64, seed=3, num_workers=4),
                 _manifest(), "/runs/exp")


def test_at_an_epochs_end_the_batch_size_may_change():
    cfg = TrainConfig(data="/data/a", framework="torch", model="small_cnn", batch_size=64)
    meta = checkpoint.checkpoint_meta(cfg, _manifest(), {"epoch": 2, "val_accuracy": 0.5})
    resume.check(meta, _resume(batch_size=256, seed=9), _manifest(), "/runs/exp")


# ---- the sample log -------------------------------------------------------------------------


def test_the_sample_log_appends_one_json_line_per_rank_and_step(tmp_path):
    path = str(tmp_path / "logs" / "samples.jsonl")
    logs = [rundir.SampleLog(path, rank, 2, "a1", restart=1) for rank in range(2)]
    logs[0].write(0, 0, {"filename": np.array([b"a/1.jpg", b"a/2.jpg"], dtype=object)}, 1.5)
    logs[1].write(0, 0, {"filename": np.array(["b/1.jpg", "b/2.jpg"])}, 1.25)
    logs[0].write(0, 1, {"filename": np.array([b"c/1.jpg", b"c/2.jpg"], dtype=object)}, 1.0)
    for log in logs:
        log.close()
    lines = [json.loads(x) for x in open(path).read().splitlines()]
    assert lines == [
        {"epoch": 0, "step": 0, "rank": 0, "world": 2, "attempt": "a1", "restart": 1,
         "loss": 1.5,
         "ids": ["a/1.jpg", "a/2.jpg"]},
        {"epoch": 0, "step": 0, "rank": 1, "world": 2, "attempt": "a1", "restart": 1,
         "loss": 1.25,
         "ids": ["b/1.jpg", "b/2.jpg"]},
        {"epoch": 0, "step": 1, "rank": 0, "world": 2, "attempt": "a1", "restart": 1,
         "loss": 1.0,
         "ids": ["c/1.jpg", "c/2.jpg"]}]
