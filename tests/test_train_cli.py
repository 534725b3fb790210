"""``ray-ingest train`` and ``evaluate`` from the command line, as a user meets them: Ctrl-C,
a resume onto another model, data without a validation split, a run name with a space, a
corrupt record, a run too large for the node's memory."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import fresh_env, own_lines, run_cli
from ray_ingest.errors import ConfigError
from ray_ingest.train.config import TrainConfig

pytestmark = [pytest.mark.usefixtures("ray_session"), pytest.mark.slow]

RAY_INGEST = str(Path(sys.executable).parent / "ray-ingest")


@pytest.fixture(scope="module")
def no_val(synth_tree, tmp_path_factory):
    """The synthetic tree converted with ``--val-fraction 0``: no validation split."""
    from ray_ingest.convert import convert

    out = tmp_path_factory.mktemp("no-val")
    convert(str(synth_tree), str(out), size=32, val_fraction=0.0, overwrite=True)
    return out


def _wait_for_checkpoint(run: Path, proc: subprocess.Popen, timeout: float = 400) -> None:
    deadline = time.time() + timeout
    while not list(run.glob("checkpoint_*/meta.json")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no checkpoint in time"
        time.sleep(0.5)


@pytest.mark.torch
def test_ctrl_c_writes_the_pointers_and_prints_the_resume_command(no_val, tmp_path):
    """SIGINT to the driver after its first checkpoint, on data without a validation split and
    a run name with a space: one line and exit 130, best.json/latest.json written, a resume
    command that parses back; the epoch table has no validation figures; resuming with
    another framework is refused in one line; the run evaluates on its train split."""
    pytest.importorskip("torch")
    runs, name = tmp_path / "runs", "run 1"
    proc = subprocess.Popen(
        [RAY_INGEST, "train", str(no_val), "--framework", "torch", "--epochs", "200",
         "--batch-size", "16", "--steps-per-epoch", "2", "--storage-path", str(runs),
         "--name", name], env=fresh_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        _wait_for_checkpoint(runs / name, proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out[-2000:] + err[-3000:]
    assert len(own_lines(err)) == 1, err
    assert re.fullmatch(r"ray-ingest train: interrupted; --resume goes on at the start of epoch \d+",
                        own_lines(err)[0]), err
    rows = [line.split() for line in out.splitlines() if re.match(r"\s*\d+/200\s", line)]
    assert rows and all(r[3] == r[4] == "\u2014" for r in rows), out
    best, latest = (json.loads((runs / name / f"{k}.json").read_text()) for k in ("best", "latest"))
    assert best["metrics"]["val_accuracy"] is None and latest["epoch"] >= best["epoch"] >= 1
    (resume_line,) = [line for line in out.splitlines() if line.startswith("resume: ")]
    words = shlex.split(resume_line[len("resume: "):])
    from ray_ingest.cli import build_parser, config_from_args

    cfg = config_from_args(TrainConfig, build_parser().parse_args(words[1:]))
    assert cfg.resume and cfg.name == name and cfg.storage_path == str(runs)
    words[words.index("--framework") + 1] = "tf"
    r = run_cli(*words[1:])
    assert r.returncode == 2, r.stdout[-3000:]
    (line,) = r.stdout.strip().splitlines()
    assert line.startswith(f"ray-ingest train: error: {runs / name}: --resume cannot continue "
                           "this run: --framework: the run trained torch, this command tf")
    hint = shlex.split(line.split("resume with: ", 1)[1])
    assert hint[hint.index("--framework") + 1] == "torch"
    r = run_cli("evaluate", str(no_val), "--model", str(runs / name), "--split", "train",
                "--out", str(tmp_path / "eval"))
    assert r.returncode == 0, r.stdout[-3000:]


def _flip_a_byte(data: Path, dst: Path, split: str) -> Path:
    from ray_ingest.format.framing import scan_records
    from ray_ingest.format.manifest import read_manifest

    shutil.copytree(data, dst)
    shard = dst / read_manifest(str(dst)).shards(split)[0].file
    raw = bytearray(shard.read_bytes())
    views, _ = scan_records(bytes(raw))
    raw[len(views[0]) + 16 + 40] ^= 0xFF
    shard.write_bytes(bytes(raw))
    return shard


@pytest.mark.torch
def test_evaluate_on_a_corrupt_record_prints_one_line(converted, tmp_path):
    torch = pytest.importorskip("torch")
    from ray_ingest.augment import AugmentConfig
    from ray_ingest.format.manifest import read_manifest
    from ray_ingest.train.models_torch import build_model, export_model

    data = converted["raw"]
    shard = _flip_a_byte(data, tmp_path / "data", "val")
    model = tmp_path / "model.pt2"
    torch.manual_seed(0)
    n = len(read_manifest(str(data)).class_names)
    export_model(build_model("small_cnn", n), "small_cnn", n, AugmentConfig(size=32), str(model))
    r = subprocess.run([RAY_INGEST, "evaluate", str(tmp_path / "data"), "--model", str(model),
                        "--out", str(tmp_path / "eval")], env=fresh_env(), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 2, r.stderr[-3000:]
    lines = own_lines(r.stderr)
    assert len(lines) == 1, r.stderr[-4000:]
    assert lines[0].startswith(f"ray-ingest evaluate: error: {shard}: corrupt TFRecord at byte "
                               "offset ")


def test_a_run_larger_than_the_node_is_refused_before_it_starts(monkeypatch):
    """The driver's check with 224-px images and a batch of 1024 (which once grew a worker
    until Ray's OOM killer ended the run), on a node of 24 GB."""
    import psutil

    from ray_ingest.train import driver

    monkeypatch.setattr(psutil, "virtual_memory",
                        lambda: SimpleNamespace(total=24e9, available=20e9))
    manifest = SimpleNamespace(height=224, width=224, variable_size=False)
    cfg = TrainConfig(data="x", batch_size=1024, decode="consumer", decode_threads=2)
    with pytest.raises(ConfigError, match=r"the run needs about \d+\.\d GB of memory on one "
                                          r"node .* the node has 24\.0 GB"):
        driver.check_memory(cfg, manifest)
    driver.check_memory(TrainConfig(data="x", batch_size=64, decode="consumer"),
                        SimpleNamespace(height=32, width=32, variable_size=False))
    # whole-image shards: the batch is the training size (224 by default), not a stored one
    whole = SimpleNamespace(height=None, width=None, variable_size=True)
    with pytest.raises(ConfigError, match="the run needs about"):
        driver.check_memory(cfg, whole)
    driver.check_memory(TrainConfig(data="x", batch_size=64, decode="consumer",
                                    image_size=32), whole)
