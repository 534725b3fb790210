"""Quiet output: the command line's logs hold ray-ingest's lines and progress, not Ray's, Ray
Data's, Ray Train's or TensorFlow's INFO lines and banners; ``-v`` brings those back. The
settings reach the workers through the job's runtime environment."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

import pytest

from helpers import NOISE, own_lines, run_cli
from ray_ingest import quiet


def _lines(out: str):
    """What the user reads beside the lines no documented switch turns off."""
    return own_lines(out)


# ---- the mechanisms ------------------------------------------------------------------------


def test_quiet_uses_no_library_internals():
    """Only switches the libraries document: no private Ray modules, no rewriting of other
    libraries' messages, no diverted file descriptors."""
    import inspect

    src = inspect.getsource(quiet)
    for banned in ("_private", "_internal", "import re\n", "os.dup", "meta_path",
                   "print_to_stdstream"):
        assert banned not in src, banned


def test_ray_data_console_keeps_warnings_and_leaves_out_our_own_errors():
    from ray_ingest.errors import ConversionError

    handler = logging.StreamHandler()
    handler.setLevel(logging.INFO)
    log = logging.getLogger("ray.data")
    log.addHandler(handler)
    try:
        quiet.quiet_ray_data_console()
        quiet.quiet_ray_data_console()  # twice: still one filter
        assert handler.level == logging.ERROR
        assert sum(isinstance(f, quiet.OurErrorFilter) for f in handler.filters) == 1

        def passes(error):
            exc_info = (type(error), error, None) if error else None
            rec = logging.LogRecord("ray.data.x", logging.ERROR, __file__, 1, "task failed",
                                    None, exc_info)
            return bool(handler.filter(rec))

        assert not passes(ConversionError("/out: disk full"))
        # Wrapped the way Ray hands a task's error back.
        wrapped = RuntimeError("task failed")
        wrapped.__cause__ = ConversionError("/out: disk full")
        assert not passes(wrapped)
        assert passes(RuntimeError("a Ray error of Ray's own"))
        assert passes(None)
    finally:
        log.removeHandler(handler)


def test_runtime_env_quiets_workers_and_leaves_values_already_set_alone(monkeypatch):
    monkeypatch.setattr(quiet, "_verbose", False)
    for k in quiet.QUIET_ENV:
        monkeypatch.delenv(k, raising=False)
    env = quiet.runtime_env()
    assert env["worker_process_setup_hook"] == quiet.WORKER_SETUP_HOOK
    assert env["env_vars"] == quiet.QUIET_ENV
    # The user's own value (or a job submission's, which Ray sets in the driver) is not
    # repeated: Ray refuses a driver runtime environment that repeats a submission's keys.
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    assert "TF_CPP_MIN_LOG_LEVEL" not in quiet.runtime_env()["env_vars"]
    monkeypatch.setattr(quiet, "_verbose", True)
    assert quiet.runtime_env() == {}
    assert quiet.train_log_level() == "INFO"
    assert quiet.ray_log_level() == logging.INFO


def test_a_quiet_worker_holds_back_info_keeps_ours_and_knows_its_cluster(ray_session):
    """The setup hook (the session's workers run it, as the CLI's do), seen in a real worker."""
    ray = ray_session

    @ray.remote
    def look():
        import logging
        import os

        return {"root": logging.getLogger().level,
                "ours": logging.getLogger("ray_ingest").getEffectiveLevel(),
                "tensorflow": logging.getLogger("tensorflow").level,
                "tf_cpp": os.environ.get("TF_CPP_MIN_LOG_LEVEL"),
                "address": os.environ.get("RAY_ADDRESS")}

    seen = ray.get(look.remote())
    assert seen["root"] == logging.WARNING
    assert seen["ours"] == logging.INFO
    assert seen["tensorflow"] == logging.WARNING
    # The session's own value (conftest) wins over the quiet default, as a user's does.
    assert seen["tf_cpp"] == os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert seen["address"] == ray.get_runtime_context().gcs_address


# ---- the command line, as a user's log shows it --------------------------------------------


@pytest.mark.slow
def test_convert_log_is_short_and_holds_no_ray_or_tf_lines(synth_tree, tmp_path):
    r = run_cli("convert", str(synth_tree), str(tmp_path / "out"), "--size", "32")
    lines = _lines(r.stdout)
    assert r.returncode == 0, r.stdout
    assert len(lines) <= 15, r.stdout
    assert not [line for line in lines if NOISE.search(line)], r.stdout
    assert any(line.startswith("convert: 160 images in, 160 written") for line in lines)
    # One progress display, which ends with its count.
    assert any(line.startswith("convert: 160 images in ") and line.endswith("/s)")
               for line in lines), r.stdout


@pytest.mark.slow
def test_verbose_brings_back_rays_own_lines(synth_tree, tmp_path):
    r = run_cli("convert", "-v", str(synth_tree), str(tmp_path / "out"), "--size", "32")
    assert r.returncode == 0, r.stdout
    assert "Execution plan" in r.stdout or "Starting execution" in r.stdout, r.stdout


@pytest.mark.slow
def test_train_log_holds_epochs_and_no_ray_or_tf_lines(learnable, tmp_path):
    pytest.importorskip("tensorflow")
    r = run_cli("train", str(learnable), "--num-workers", "2", "--epochs", "3",
                "--batch-size", "64", "--steps-per-epoch", "4", "--image-size", "32",
                "--storage-path", str(tmp_path / "runs"), "--name", "quiet")
    lines = _lines(r.stdout)
    assert r.returncode == 0, r.stdout
    assert not [line for line in lines if NOISE.search(line)], r.stdout
    assert sum(bool(re.match(r"\s*[123]/3\s", line)) for line in lines) == 3, r.stdout
    assert len(lines) <= 30, r.stdout


def test_a_restart_is_announced_by_the_run_itself():
    from ray_ingest.train.loop import start_line

    assert start_line(0, 0, 0, 0, False) == ""
    assert start_line(0, 0, 3, 0, True) == "resumed from a checkpoint; training goes on at epoch 4"
    assert start_line(0, 0, 3, 5, True).endswith("at epoch 4, step 6")
    line = start_line(1, 2, 3, 0, True)
    assert line.startswith("restart 1 (--max-failures 2)") and "epoch 4" in line
    assert "--max-failures unlimited" in start_line(2, -1, 0, 0, False)


def test_the_quiet_defaults_this_process_set_still_reach_the_workers(monkeypatch):
    """Quieting the driver sets TF_CPP_MIN_LOG_LEVEL here first; the job's runtime
    environment still carries it (a joined cluster's workers do not inherit the driver's
    environment), while a value the user set stays out of it."""
    monkeypatch.setattr(quiet, "_verbose", False)
    monkeypatch.setattr(quiet, "_PROCESS_QUIET", False)
    monkeypatch.setattr(quiet, "_SET_HERE", set())
    monkeypatch.delenv("RAY_DATA_DISABLE_PROGRESS_BARS", raising=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # the user's
    quiet.quiet_this_process()
    env = quiet.runtime_env()["env_vars"]
    assert env == {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}


def test_a_submissions_own_setup_hook_makes_the_driver_join_without_ours(monkeypatch):
    import ray

    from ray_ingest import runtime

    calls = []

    def init(**kwargs):
        calls.append(kwargs)
        if "worker_process_setup_hook" in (kwargs.get("runtime_env") or {}):
            raise ValueError("Failed to merge the Job's runtime env")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(runtime, "_quiet_data_context", lambda verbose: None)
    monkeypatch.setattr(quiet, "_verbose", False)
    runtime.ensure_ray(address="127.0.0.1:6379")
    assert len(calls) == 2 and "worker_process_setup_hook" not in (calls[1]["runtime_env"] or {})
    # Without an address (the embedded instance) there is no submission: the error stands.
    calls.clear()
    with pytest.raises(ValueError):
        runtime.ensure_ray()
    assert len(calls) == 1
