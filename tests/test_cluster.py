"""Jobs on a real Ray cluster: the README's cluster block run as printed (on loopback ports and a
temp dir of its own), its outputs and its quiet logs, a failing job's status; and the cluster
launcher config."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from helpers import NOISE, fresh_env, make_synth_tree

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
    """Ports and a temp dir of its own for a ``ray start --head`` on loopback, and a stop that
    stops exactly the processes started with that temp dir (``ray stop`` would stop every Ray
    on the machine)."""

    def __init__(self):
        self.temp_dir = f"/tmp/ri-{uuid.uuid4().hex[:8]}"  # short: it holds unix sockets
        # Every port of its own: the defaults (client server 10001, agent 52365, ...) would
        # collide with the test session's embedded Ray instance.
        (self.port, self.dashboard_port, self.client_port, self.agent_http, self.agent_grpc,
         self.env_agent, self.metrics) = _free_ports(7)
        self.address = f"http://127.0.0.1:{self.dashboard_port}"

    def start_flags(self) -> str:
        return " ".join([
            f"--port={self.port}", "--node-ip-address=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={self.client_port}",
            f"--dashboard-agent-listen-port={self.agent_http}",
            f"--dashboard-agent-grpc-port={self.agent_grpc}",
            f"--runtime-env-agent-port={self.env_agent}", f"--metrics-export-port={self.metrics}",
            f"--temp-dir={self.temp_dir}", "--disable-usage-stats"])

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


README_ADDRESS = "http://127.0.0.1:8265"


def readme_cluster_block() -> str:
    """The first fenced block of README.md's "Jobs on a Ray cluster" section, as printed."""
    section = (REPO / "README.md").read_text().split("## Jobs on a Ray cluster", 1)[1]
    return section.split("```", 2)[1].strip("\n")


def shell_commands(block: str):
    """The block's commands, continuation lines joined."""
    return [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip()]


def on_test_ports(commands, head: LocalHead):
    """The commands on the head's own ports and temp dir; ``ray stop`` left out (it would stop
    every Ray on the machine: the test stops the processes it started instead)."""
    assert commands[-1] == "ray stop", commands
    starts = [i for i, c in enumerate(commands) if c.startswith("ray start --head")]
    assert len(starts) == 1, commands
    out = []
    for c in commands[:-1]:
        if c.startswith("ray start --head"):
            c = f"{c} {head.start_flags()}"
        out.append(c.replace(README_ADDRESS, head.address))
    assert sum(head.address in c for c in out) == sum(README_ADDRESS in c for c in commands)
    return out


def _project(tmp: Path) -> Path:
    """A checkout with ``make demo``'s images: the package, the jobs, .gitignore, and a small
    ``demo-data/images``."""
    proj = tmp / "proj"
    for name in ("ray_ingest", "jobs"):
        shutil.copytree(REPO / name, proj / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".gitignore", proj / ".gitignore")
    make_synth_tree(proj / "demo-data" / "images", 300, 4, 48, 40, seed=0)
    return proj


def _job_status(address: str, env, out: str) -> str:
    """``ray job status`` of the job a ``ray job submit`` output names."""
    job_id = out.split("Job '", 1)[1].split("'", 1)[0]
    r = subprocess.run([str(BIN / "ray"), "job", "status", "--address", address, job_id],
                       env=env, capture_output=True, text=True, timeout=120)
    text = r.stdout + r.stderr
    for word, status in (("succeeded", "SUCCEEDED"), ("failed", "FAILED"),
                         ("stopped", "STOPPED"), ("running", "RUNNING"), ("pending", "PENDING")):
        if f"Job '{job_id}' {word}" in text or f"'{job_id}': {status}" in text:
            return status
    raise AssertionError(text)


def test_readme_cluster_block_parses_into_the_commands_the_test_runs():
    head = LocalHead()
    commands = on_test_ports(shell_commands(readme_cluster_block()), head)
    assert commands[0] == "export RAY_AUTH_MODE=token"
    submits = [c for c in commands if c.startswith("ray job submit")]
    assert [c.split(" -- ", 1)[1].split()[1] for c in submits] == [
        "jobs/convert.py", "jobs/train.py", "jobs/throughput.py"]
    assert all(f"--address {head.address} " in c for c in submits)


@pytest.mark.slow
@pytest.mark.timeout(2400)  # over the block's own 1500 s and the failing job's 600 s
def test_readme_cluster_block_runs_as_printed(tmp_path):
    proj = _project(tmp_path)
    head = LocalHead()
    commands = on_test_ports(shell_commands(readme_cluster_block()), head)
    script = tmp_path / "readme-cluster.sh"
    script.write_text("set -euo pipefail\n" + "\n".join(commands) + "\n")
    env = fresh_env()
    try:
        r = subprocess.run(["bash", str(script)], cwd=proj, env=env, capture_output=True,
                           text=True, timeout=1500)
        out = r.stdout + r.stderr
        (tmp_path / "readme-cluster.log").write_text(out)
        assert r.returncode == 0, out[-6000:]
        manifest = json.loads((proj / "demo-data" / "shards-64" / "manifest.json").read_text())
        assert manifest["num_written"] == 300 and manifest["height"] == 64
        assert "300 images in, 300 written" in out
        assert re.search(r"^\s*3/3\s", out, re.M) and "done: 3 epochs" in out, out[-3000:]
        assert list((proj / "runs").iterdir())
        assert json.loads((proj / "bench-report" / "report.json").read_text())["rows"]
        # Quiet on a cluster too: the jobs join it through RAY_ADDRESS.
        assert not NOISE.search(out), NOISE.search(out)

        # A job that ends in a user error fails as a job, with the error's one line.
        env = {**env, "RAY_AUTH_MODE": "token"}  # what the block exported
        again = subprocess.run(
            [str(BIN / "ray"), "job", "submit", "--address", head.address, "--working-dir", ".",
             "--", "python", "jobs/convert.py", str(proj / "demo-data" / "images"),
             str(proj / "demo-data" / "shards-64")],
            cwd=proj, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode != 0 and "--overwrite" in again.stdout + again.stderr
        assert _job_status(head.address, env, again.stdout) == "FAILED"
    finally:
        head.stop()
    assert not _pids_with(head.temp_dir)
