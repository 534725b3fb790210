"""Object storage for real: convert to, read from, inspect and train with ``s3://`` paths against
an S3 API server on loopback (moto's server mode), configured the standard way
(``AWS_ENDPOINT_URL``) after the session's Ray instance started: the setting must reach the
Ray tasks and training workers through ray-ingest itself."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from helpers import stored
from ray_ingest import fs
from ray_ingest.cli import main
from ray_ingest.format import manifest as mf

pytestmark = pytest.mark.usefixtures("ray_session")

BUCKET = "bucket"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """An S3 API server on a loopback port, with one bucket; ``AWS_ENDPOINT_URL`` points at it."""
    pytest.importorskip("moto", reason="moto[server] is not installed (the test extra has it)")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the S3 test server did not start on port {port}")
                time.sleep(0.2)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AWS_ENDPOINT_URL", endpoint)
            mp.setenv("AWS_REGION", "us-east-1")
            import pyarrow.fs as pafs

            pafs.S3FileSystem(endpoint_override=endpoint, region="us-east-1",
                              allow_bucket_creation=True).create_dir(BUCKET)
            yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_storage_settings_travel_without_credentials(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    env = fs.task_runtime_env()["env_vars"]
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
    assert "AWS_SECRET_ACCESS_KEY" not in env and "AWS_ACCESS_KEY_ID" not in env
    first = fs.resolve("s3://b/x")[0]
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:10")
    assert fs.resolve("s3://b/x")[0] is not first  # not a filesystem of the old endpoint
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert "AWS_ENDPOINT_URL" not in (fs.task_runtime_env() or {}).get("env_vars", {})


@pytest.fixture(scope="module")
def s3_shards(s3_endpoint, synth_tree):
    from ray_ingest.convert import convert

    uri = f"s3://{BUCKET}/shards"
    convert(str(synth_tree), uri, size=32, val_fraction=0.2, shard_size_mb=0.01, overwrite=True)
    return uri


def test_convert_to_s3_and_read_back(s3_shards, converted, capsys):
    m = mf.read_manifest(s3_shards)
    names = set(fs.list_dir(s3_shards))
    assert mf.MANIFEST_NAME in names and not any(n.startswith(mf.STAGING_PREFIX) for n in names)
    local_m = mf.read_manifest(str(converted["jpeg"]))
    for split in m.splits:
        assert m.class_counts(split) == local_m.class_counts(split)
        want = sorted((r.filename, r.label, r.encoded) for r in stored(converted["jpeg"],
                                                                        split)[1])
        got = sorted((r.filename, r.label, r.encoded) for r in stored(s3_shards, split)[1])
        assert got == want

    import ray_ingest

    ds = ray_ingest.read_records(s3_shards, "train", shuffle_files=True, seed=0)
    labels = []
    for batch in ds.iter_batches(batch_size=64, batch_format="numpy"):
        assert batch["image"].shape[1:] == (32, 32, 3)
        labels.extend(batch["label"].tolist())
    assert sorted(labels) == sorted(r.label for r in stored(converted["jpeg"], "train")[1])

    assert main(["inspect", s3_shards, "--verify"]) == 0
    assert "verify: OK" in capsys.readouterr().out


def test_convert_from_parquet_on_s3(s3_endpoint, s3_shards, tmp_path):
    """A Parquet source on S3, read by Ray Data's reader with our settings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from helpers import jpeg_bytes, random_rgb

    table = pa.table({"image": [jpeg_bytes(random_rgb(20, 20, seed=i)) for i in range(6)],
                      "label": ["a", "b", "a", "b", "a", "b"]})
    s3, root = fs.resolve(f"s3://{BUCKET}/parquet/part-0.parquet")
    pq.write_table(table, root, filesystem=s3)
    out = f"s3://{BUCKET}/from-parquet"
    assert main(["convert", f"s3://{BUCKET}/parquet", out, "--size", "16",
                 "--val-fraction", "0"]) == 0
    m, records = stored(out, "train")
    assert m.class_names == ["a", "b"] and len(records) == 6


@pytest.mark.slow
@pytest.mark.tf
def test_train_one_epoch_with_checkpoints_on_s3(s3_shards):
    pytest.importorskip("tensorflow")
    from ray_ingest.train import TrainConfig, train

    runs = f"s3://{BUCKET}/runs"
    metrics = train(TrainConfig(data=s3_shards, epochs=1, num_workers=1, batch_size=32,
                                image_size=32, storage_path=runs, name="s3-run",
                                stall_timeout=0), progress=lambda line: None)
    assert metrics["epochs"] == 1
    assert metrics["checkpoint"].startswith(f"{runs}/s3-run/")
    s3, root = fs.resolve(f"{runs}/s3-run")
    import pyarrow.fs as pafs

    files = [i.path for i in s3.get_file_info(pafs.FileSelector(root, recursive=True))
             if i.type == pafs.FileType.File]
    checkpoint = metrics["checkpoint"].split("://", 1)[1]
    assert any(p.startswith(checkpoint + "/") for p in files), files
    assert any("/_attempts/" in p for p in files)  # written by the worker through fs.py
