"""Jobs on a real Ray cluster: ``ray start --head`` on loopback, ``ray job submit`` of the convert,
train and throughput jobs, their status and outputs; and the cluster launcher config."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from helpers import make_synth_tree

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_cluster_yaml_passes_rays_own_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = yaml.safe_load((REPO / "cluster.yaml").read_text())
    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)  # Ray's JSON schema and its own checks
    types = prepared["available_node_types"]
    assert set(types) == {"head", "cpu", "gpu"} and prepared["head_node_type"] == "head"
    assert types["head"]["resources"] == {"CPU": 0}
    assert types["cpu"]["max_workers"] > types["cpu"]["min_workers"] == 0  # autoscaling
    assert "g5" in types["gpu"]["node_config"]["InstanceType"]
    assert any("tf-gpu" in c for c in types["gpu"]["worker_setup_commands"])
    # The dashboard and job server stay on loopback; only SSH is open, and not to everyone.
    head_start = " ".join(prepared["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "0.0.0.0" not in head_start
    perms = cfg["provider"]["security_group"]["IpPermissions"]
    assert [(p["FromPort"], p["ToPort"]) for p in perms] == [(22, 22)]
    assert all(r["CidrIp"] != "0.0.0.0/0" for p in perms for r in p["IpRanges"])


def _free_ports(n: int):
    """``n`` distinct free loopback ports (held open together while chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _pids_with(marker: str):
    """Live processes whose command line holds ``marker``, and their children. Zombies are
    left out: they have exited (``ray start`` leaves its daemons to whichever process adopts
    orphans here, which may reap them late)."""
    import psutil

    def alive(p):
        try:
            return p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    found = set()
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in (p.info["cmdline"] or [])):
                found.add(p)
                found.update(p.children(recursive=True))
        except psutil.Error:
            pass
    return {p for p in found if alive(p)}


class LocalHead:
    """``ray start --head`` on loopback with its own ports and temp dir; stopped by stopping
    exactly the processes it started (``ray stop`` would stop every Ray on the machine)."""

    def __init__(self, tmp: Path):
        self.temp_dir = f"/tmp/ri-{uuid.uuid4().hex[:8]}"  # short: it holds unix sockets
        # Every port of its own: the defaults (client server 10001, agent 52365, ...) would
        # collide with the test session's embedded Ray instance.
        (self.port, self.dashboard_port, self.client_port, self.agent_http, self.agent_grpc,
         self.env_agent, self.metrics) = _free_ports(7)
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self.env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                    "RAY_ADDRESS": self.address, "RAY_USAGE_STATS_ENABLED": "0",
                    # Ray 2.60 guards clusters with a token (~/.ray/auth_token, made if missing).
                    "RAY_AUTH_MODE": "token"}
        self.env.pop("RAY_JOB_ID", None)

    def start(self) -> None:
        cmd = [str(BIN / "ray"), "start", "--head", f"--port={self.port}",
               "--node-ip-address=127.0.0.1", "--num-cpus=2", "--include-dashboard=true",
               "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
               f"--ray-client-server-port={self.client_port}",
               f"--dashboard-agent-listen-port={self.agent_http}",
               f"--dashboard-agent-grpc-port={self.agent_grpc}",
               f"--runtime-env-agent-port={self.env_agent}", f"--metrics-export-port={self.metrics}",
               f"--temp-dir={self.temp_dir}", "--disable-usage-stats"]
        subprocess.run(cmd, check=True, env=self.env, capture_output=True, timeout=180)

    def stop(self) -> None:
        import psutil

        procs = _pids_with(self.temp_dir)
        for p in procs:
            try:
                p.send_signal(signal.SIGTERM)
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(list(procs), timeout=15)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass

    def submit(self, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
        cmd = [str(BIN / "ray"), "job", "submit", "--address", self.address,
               "--working-dir", str(REPO), "--", "python", *args]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout,
                              cwd=str(REPO))


def _job_status(head: LocalHead, out: str) -> str:
    """``ray job status`` of the job a ``ray job submit`` output names."""
    job_id = out.split("Job '", 1)[1].split("'", 1)[0]
    r = subprocess.run([str(BIN / "ray"), "job", "status", "--address", head.address, job_id],
                       env=head.env, capture_output=True, text=True, timeout=120)
    text = r.stdout + r.stderr
    for word, status in (("succeeded", "SUCCEEDED"), ("failed", "FAILED"),
                         ("stopped", "STOPPED"), ("running", "RUNNING"), ("pending", "PENDING")):
        if f"Job '{job_id}' {word}" in text or f"'{job_id}': {status}" in text:
            return status
    raise AssertionError(text)


@pytest.mark.slow
def test_ray_job_submit_convert_train_throughput(tmp_path):
    src, shards, runs = tmp_path / "src", tmp_path / "shards", tmp_path / "runs"
    make_synth_tree(src, 600, 4, 48, 40, seed=0)
    head = LocalHead(tmp_path)
    head.start()
    try:
        r = head.submit("jobs/convert.py", str(src), str(shards), "--size", "32")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "600 images in, 600 written" in r.stdout
        assert _job_status(head, r.stdout) == "SUCCEEDED"
        manifest = json.loads((shards / "manifest.json").read_text())
        assert manifest["num_written"] == 600

        r = head.submit("jobs/train.py", str(shards), "--epochs", "2", "--batch-size", "32",
                        "--num-workers", "2", "--storage-path", str(runs), "--name", "job",
                        "--metrics-out", str(tmp_path / "m.json"))
        assert r.returncode == 0, r.stdout + r.stderr
        assert _job_status(head, r.stdout) == "SUCCEEDED"
        metrics = json.loads((tmp_path / "m.json").read_text())
        assert metrics["epochs"] == 2 and metrics["num_workers"] == 2
        assert re.search(r"^\s*2/2\s", r.stdout, re.M), r.stdout  # the driver's epoch table

        r = head.submit("jobs/throughput.py", str(shards), "--rows", "ray-ingest iter_batches",
                        "--images", "64", "--warmup", "16", "--repeats", "1", "--batch-size",
                        "16", "--out", str(tmp_path / "bench"))
        assert r.returncode == 0, r.stdout + r.stderr
        assert (tmp_path / "bench" / "report.json").exists()

        r = head.submit("jobs/convert.py", str(src), str(shards))  # exists: refused
        assert "--overwrite" in r.stdout + r.stderr
        assert _job_status(head, r.stdout) == "FAILED"
    finally:
        head.stop()
    assert not _pids_with(head.temp_dir)
