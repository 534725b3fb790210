"""Shared fixtures: one local Ray instance per test session, small synthetic datasets."""

from __future__ import annotations

import os

import pytest

from helpers import make_synth_tree

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
# Object storage in tests is a local S3 server (test_s3.py): fake credentials and no instance
# metadata lookups, in this process and in every Ray worker started from it, so that nothing
# ever reaches a real cloud account.
os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                  AWS_EC2_METADATA_DISABLED="true")
for _var in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
    os.environ.pop(_var, None)


@pytest.fixture(scope="session")
def ray_session():
    """The one Ray instance of the test session (2 CPUs, no dashboard)."""
    import ray

    if not ray.is_initialized():
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        from ray_ingest.runtime import worker_soft_limit

        # address="local": a new instance even when a `ray start` cluster runs on this machine
        # (ray.init() would join that one).
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False,
                 # The setup hook tells each worker its cluster, as the CLI does: Ray Train's
                 # placement-group cleaner would otherwise guess among the Ray instances of a
                 # shared machine.
                 runtime_env={"env_vars": {"PYTHONPATH": path},
                              "worker_process_setup_hook": "ray_ingest.quiet.setup_worker"},
                 _system_config={"num_workers_soft_limit": worker_soft_limit(2)})
    yield ray
    # Left running for the rest of the session; pytest's exit stops it.


@pytest.fixture(scope="session")
def synth_tree(tmp_path_factory):
    """160 synthetic JPEGs (8 classes, 96x72), drawn serially (no Ray needed)."""
    return make_synth_tree(tmp_path_factory.mktemp("synth"), 160, 8, 96, 72, seed=3)


@pytest.fixture(scope="session")
def converted(ray_session, synth_tree, tmp_path_factory):
    """The synthetic tree converted twice: ``{"raw": path, "jpeg": path}`` (32x32, small shards)."""
    from ray_ingest.convert import convert

    out = {}
    for enc in ("raw", "jpeg"):
        path = tmp_path_factory.mktemp(f"conv-{enc}")
        convert(str(synth_tree), str(path), size=32, encoding=enc, val_fraction=0.2,
                shard_size_mb=0.04 if enc == "raw" else 0.01, overwrite=True)
        out[enc] = path
    return out


@pytest.fixture(scope="session")
def learnable(ray_session, tmp_path_factory):
    """A small learnable dataset: 2000 synthetic images of 5 classes, stored at 32x32."""
    from ray_ingest.convert import convert

    src = make_synth_tree(tmp_path_factory.mktemp("learn-src"), 2000, 5, 64, 48, seed=11,
                          parallel=True)
    out = tmp_path_factory.mktemp("learn-shards")
    convert(str(src), str(out), size=32, val_fraction=0.2, overwrite=True)
    return out


@pytest.fixture
def no_ray(monkeypatch):
    """Fails the test if anything starts or joins Ray."""
    import ray

    import ray_ingest.runtime

    def refuse(*a, **k):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(ray_ingest.runtime, "ensure_ray", refuse)
