"""Quiet output: the command line's logs hold ray-ingest's lines and progress, not Ray's, Ray
Data's, Ray Train's or TensorFlow's INFO lines and banners; ``-v`` brings those back. The
settings reach the workers through the job's runtime environment."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import types

import pytest

from helpers import NOISE, run_cli
from ray_ingest import quiet


def _lines(out: str):
    return [line for line in out.splitlines() if line.strip()]


# ---- the mechanisms, in this process -------------------------------------------------------


def test_load_banners_are_dropped_and_warnings_kept(tmp_path):
    script = (
        "import os\n"
        "from ray_ingest.quiet import _drop_load_banners\n"
        "with _drop_load_banners():\n"
        "    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are "
        "written to STDERR\\n')\n"
        "    os.write(2, b'I0000 00:00:1795637895.331405    5649 port.cc:153] oneDNN custom "
        "operations are on.\\n')\n"
        "    os.write(2, b'W0000 00:00:1795637895.331405    5649 x.cc:1] a warning that matters\\n')\n"
        "    os.write(2, b'E0000 00:00:1795637895.331405    5649 x.cc:2] an error\\n')\n"
        "os.write(2, b'after\\n')\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [
        "W0000 00:00:1795637895.331405    5649 x.cc:1] a warning that matters",
        "E0000 00:00:1795637895.331405    5649 x.cc:2] an error",
        "after",
    ]


def test_import_watch_runs_code_around_and_after_a_first_import(tmp_path, monkeypatch):
    (tmp_path / "ri_watched_mod.py").write_text("import sys\nsys.stderr.write('')\nVALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []
    watch = quiet._ImportWatch.install()
    watch.after("ri_watched_mod", lambda: seen.append(sys.modules["ri_watched_mod"].VALUE))
    import ri_watched_mod  # noqa: F401

    assert seen == [1]
    # The module keeps its own loader.
    assert type(ri_watched_mod.__loader__).__name__ == "SourceFileLoader"
    # A module imported already gets its code at once.
    watch.after("ri_watched_mod", lambda: seen.append("again"))
    assert seen == [1, "again"]
    monkeypatch.delitem(sys.modules, "ri_watched_mod")


def test_ray_data_console_keeps_warnings_and_drops_advice():
    handler = logging.StreamHandler()
    handler.setLevel(logging.INFO)
    log = logging.getLogger("ray.data")
    log.addHandler(handler)
    try:
        quiet._quiet_ray_data_console()
        assert handler.level == logging.WARNING

        def passes(msg):
            rec = logging.LogRecord("ray.data", logging.WARNING, __file__, 1, msg, None, None)
            return handler.filter(rec)

        assert not passes("Progress bars disabled. To enable, set ...")
        assert not passes("Warning: The Ray cluster currently does not have any available "
                          "CPUs. The Dataset job will hang unless more CPUs are freed up.")
        assert passes("Failed to read shard x; retrying")
    finally:
        log.removeHandler(handler)


def test_worker_log_filter_drops_ray_internal_notes_only():
    printed = []
    f = quiet._LineFilter(printed.append)
    note = ("[2026-11-25 20:19:17,450 E 7907 8060] core_worker.cc:2465: Actor with class name: "
            "'PreemptionWatcher' and ID: 'e2d8' has constructor arguments in the object store "
            "and max_restarts > 0. If the arguments ...")
    f({"lines": [note], "pid": 1})
    assert printed == []
    f({"lines": [note, "epoch 1/3: loss 1.2"], "pid": 1})
    assert printed == [{"lines": ["epoch 1/3: loss 1.2"], "pid": 1}]


def test_the_raylets_worker_pool_advice_is_left_out_but_not_its_errors(monkeypatch):
    import ray._private.worker as ray_worker

    printed = []
    monkeypatch.setattr(ray_worker, "print_to_stdstream",
                        lambda data, ignore_prefix: printed.append((data, ignore_prefix)))
    quiet.filter_worker_logs()
    advice = ("WARNING: 8 PYTHON worker processes have been started on node: eb44 with "
              "address: 192.0.2.2, which is 4x the maximum expected startup concurrency (2).")
    ray_worker.print_to_stdstream({"lines": [advice], "pid": "raylet"}, ignore_prefix=False)
    assert printed == []
    oom = "Task was killed due to the node running low on memory."
    ray_worker.print_to_stdstream({"lines": [oom], "pid": "raylet"}, ignore_prefix=False)
    assert printed == [({"lines": [oom], "pid": "raylet"}, False)]


def test_runtime_env_quiets_workers_and_leaves_the_submissions_keys_alone(monkeypatch):
    monkeypatch.setattr(quiet, "_verbose", False)
    for k in quiet.QUIET_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    env = quiet.runtime_env()
    assert env["worker_process_setup_hook"] == quiet.WORKER_SETUP_HOOK
    assert env["env_vars"] == quiet.QUIET_ENV
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # the user's own value travels
    assert quiet.runtime_env()["env_vars"]["TF_CPP_MIN_LOG_LEVEL"] == "0"
    # Inside `ray job submit --runtime-env-json ...`: Ray refuses to merge repeated keys.
    submitted = {"runtime_env": {"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "0"},
                                 "worker_process_setup_hook": "mine.setup"}}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(submitted))
    env = quiet.runtime_env()
    assert "worker_process_setup_hook" not in env
    assert "TF_CPP_MIN_LOG_LEVEL" not in env["env_vars"]
    monkeypatch.setattr(quiet, "_verbose", True)
    assert quiet.runtime_env() == {}
    assert quiet.train_log_level() == "INFO"


def test_worker_setup_hook_names_the_cluster_to_the_workers_own_processes(monkeypatch):
    """What the hook sets beside the quieting (which the log tests below check in real
    workers): RAY_ADDRESS, by which Ray's State API in the worker finds this cluster rather
    than guessing among the Ray instances on the node."""
    monkeypatch.setattr(quiet, "_PROCESS_QUIET", False)
    monkeypatch.setattr(quiet, "quiet_this_process", lambda: None)
    monkeypatch.setenv("RAY_ADDRESS", "")
    monkeypatch.delenv("RAY_ADDRESS")  # and removed again afterwards
    fake_ray = types.SimpleNamespace(get_runtime_context=lambda: types.SimpleNamespace(
        gcs_address="127.0.0.1:6390"))
    monkeypatch.setitem(sys.modules, "ray", fake_ray)
    quiet.setup_worker()
    assert os.environ["RAY_ADDRESS"] == "127.0.0.1:6390"


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

    assert start_line(0, 0, 0, False) == ""
    assert start_line(0, 0, 3, True) == "resumed from the checkpoint of epoch 3"
    line = start_line(1, 2, 3, True)
    assert line.startswith("restart 1 (--max-failures 2)") and "epoch 4" in line
    assert "--max-failures unlimited" in start_line(2, -1, 0, False)
