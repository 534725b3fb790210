"""One writer per conversion output: the lock, its stale cases, and two conversions at once."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import fresh_env, own_lines, stored_filenames
from ray_ingest.convert import ConvertOptions, convert
from ray_ingest.convert.sink import TFRecordDatasink
from ray_ingest.errors import ConversionError, SourceError
from ray_ingest.format import manifest as mf
from ray_ingest.format.lock import LockInfo, OutputLock, ensure_owner, read_lock

HERE = Path(__file__).resolve().parent


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _plant(out: Path, **fields) -> LockInfo:
    now = time.time()
    info = LockInfo(**{"host": socket.gethostname(), "pid": os.getpid(), "run_id": "planted",
                       "started": now, "refreshed": now, "lease_s": 60.0, **fields})
    out.mkdir(parents=True, exist_ok=True)
    (out / mf.LOCK_NAME).write_bytes(info.to_bytes())
    return info


def test_second_writer_fails_naming_the_holder_and_release_cleans_up(tmp_path):
    out = tmp_path / "out"
    with OutputLock(str(out), "first") as lock:
        held = json.loads((out / mf.LOCK_NAME).read_text())
        assert (held["host"], held["pid"], held["run_id"]) == (socket.gethostname(), os.getpid(),
                                                               "first")
        with pytest.raises(ConversionError) as e:
            OutputLock(str(out), "second").acquire()
        msg = str(e.value)
        assert f"host {socket.gethostname()}, pid {os.getpid()}, run first, started " in msg
        assert "is being written by another conversion" in msg
        ensure_owner(str(out), "first")
        assert lock.run_id == "first"
    # Released; OUT was created for the lock and holds nothing else, so it is gone too.
    assert not out.exists()
    out.mkdir()
    with OutputLock(str(out)):
        (out / "kept.txt").write_text("x")
    assert sorted(os.listdir(out)) == ["kept.txt"]


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    out = tmp_path / "out"
    _plant(out, pid=_dead_pid())
    with caplog.at_level(logging.WARNING, logger="ray_ingest"):
        with OutputLock(str(out), "mine"):
            assert read_lock(str(out)).run_id == "mine"
    assert "taking over the lock" in caplog.text and "is gone" in caplog.text


def test_expired_lease_is_taken_over_and_a_live_one_is_not(tmp_path, caplog):
    out = tmp_path / "out"
    _plant(out, host="another-host", pid=1, refreshed=time.time() - 3600)
    with caplog.at_level(logging.WARNING, logger="ray_ingest"):
        with OutputLock(str(out), "mine"):
            pass
    assert "not refreshed for 3600 s, over its lease of 60 s" in caplog.text
    _plant(out, host="another-host", pid=1, started=0.0)
    with pytest.raises(ConversionError, match=r"host another-host, pid 1, run planted, "
                                              r"started 1970-01-01 00:00:00 UTC"):
        OutputLock(str(out), "mine").acquire()
    assert read_lock(str(out)).run_id == "planted"  # a refused run leaves the lock alone


def test_the_holder_refreshes_its_lease(tmp_path):
    out = tmp_path / "out"
    with OutputLock(str(out), "mine", lease_s=0.4):
        first = read_lock(str(out)).refreshed
        deadline = time.time() + 60
        while read_lock(str(out)).refreshed == first and time.time() < deadline:
            time.sleep(0.05)
        assert read_lock(str(out)).refreshed > first


def test_a_holder_that_lost_its_lock_refuses_to_commit(tmp_path):
    out = tmp_path / "out"
    lock = OutputLock(str(out), "mine")
    lock.acquire()
    try:
        _plant(out, host="another-host", run_id="usurper")  # taken over while we were frozen
        with pytest.raises(ConversionError, match=r"run mine\) lost its lock, now held by host "
                                                  r"another-host.*not committing"):
            ensure_owner(str(out), "mine")
    finally:
        lock.release()
    assert read_lock(str(out)).run_id == "usurper"  # not ours to remove


def test_object_store_lock_is_written_then_confirmed(tmp_path):
    out = "memory://lock-test/out"
    with OutputLock(out, "first", settle_s=0.01):
        assert read_lock(out).run_id == "first"
        with pytest.raises(ConversionError, match="run first"):
            OutputLock(out, "second", settle_s=0.01).acquire()
    assert read_lock(out) is None


def test_out_that_is_a_file_is_one_line_exit_2(tmp_path, capsys):
    from ray_ingest.cli import main

    out = tmp_path / "out"
    out.write_text("not a folder")
    with pytest.raises(ConversionError, match="exists and is not a directory"):
        OutputLock(str(out)).acquire()
    assert main(["convert", str(tmp_path), str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"ray-ingest convert: error: {out}: exists and is not a directory\n"
    assert out.read_text() == "not a folder"


def test_failed_listing_leaves_no_output_folder_and_no_lock(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(SourceError):
        convert(str(tmp_path / "missing"), str(out))
    assert not out.exists()


def test_ctrl_c_releases_the_lock(tmp_path, monkeypatch):
    from ray_ingest.convert import pipeline

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(pipeline, "list_source", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert(str(tmp_path), str(out))
    assert os.listdir(out) == []


# ---- two conversions into one OUT ------------------------------------------------------------

_HOLDING = threading.Event()
_GO = threading.Event()


class _HeldSink(TFRecordDatasink):
    """Holds the conversion (lock taken, staging about to be made) until ``_GO`` is set."""

    def on_write_start(self, schema=None) -> None:
        _HOLDING.set()
        _GO.wait(600)
        super().on_write_start(schema)


def _ray_env(ray_session):
    return {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address,
            "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.slow
def test_a_second_convert_process_fails_while_this_one_runs(ray_session, synth_tree, tmp_path):
    out = tmp_path / "out"
    _HOLDING.clear()
    _GO.clear()
    result = {}

    def first():
        try:
            result["report"] = convert(str(synth_tree), str(out),
                                       ConvertOptions(size=16, encoding="raw", val_fraction=0.2),
                                       datasink_cls=_HeldSink)
        except BaseException as e:  # noqa: BLE001 - re-raised by the test below
            result["error"] = e

    t = threading.Thread(target=first)
    t.start()
    try:
        assert _HOLDING.wait(300), result
        r = subprocess.run([sys.executable, "-m", "ray_ingest.cli", "convert", str(synth_tree),
                            str(out), "--overwrite"], capture_output=True, text=True,
                           timeout=300, env=_ray_env(ray_session))
    finally:
        _GO.set()
        t.join(600)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ray-ingest convert: error: {out} is being written by another "
                           f"conversion (host {socket.gethostname()}, pid {os.getpid()}, run ")
    assert "error" not in result, result.get("error")
    assert result["report"].num_written == 160
    assert sorted(stored_filenames(out)) == sorted(
        str(p.relative_to(synth_tree)) for p in synth_tree.rglob("*.jpg"))
    assert not (out / mf.LOCK_NAME).exists()


@pytest.mark.slow
def test_this_convert_fails_while_another_process_runs(ray_session, synth_tree, tmp_path):
    out, go = tmp_path / "out", tmp_path / "go"
    proc = subprocess.Popen([sys.executable, str(HERE / "fault_scenarios.py"), "held-convert",
                             str(synth_tree), str(out), str(go)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_ray_env(ray_session))
    try:
        assert proc.stdout.readline().strip() == "HOLDING", proc.stderr.read()[-3000:]
        with pytest.raises(ConversionError) as e:
            convert(str(synth_tree), str(out), size=16, overwrite=True)
        assert f"pid {proc.pid}, run " in str(e.value)
    finally:
        go.write_text("go")
        stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout[-2000:] + stderr[-3000:]
    assert '"num_written": 160' in stdout  # its staging survived the second attempt
    assert len(stored_filenames(out)) == 160
    assert not (out / mf.LOCK_NAME).exists()


def test_convert_takes_over_a_dead_run_and_clears_its_staging(synth_tree, tmp_path, caplog,
                                                              ray_session):
    out = tmp_path / "out"
    _plant(out, pid=_dead_pid())
    staging = out / f"{mf.STAGING_PREFIX}deadbeef"
    staging.mkdir()
    (staging / "train-t000000-x-0000.tfrecord").write_bytes(b"half")
    with caplog.at_level(logging.WARNING, logger="ray_ingest"):
        report = convert(str(synth_tree), str(out), size=16, encoding="raw")
    assert report.num_written == 160 and not staging.exists()
    assert "taking over the lock" in caplog.text
    assert not (out / mf.LOCK_NAME).exists()
    assert not [n for n in os.listdir(out) if n.startswith(("_", "."))]


def test_without_hard_links_the_lock_is_created_exclusively(tmp_path, monkeypatch):
    import errno

    def no_links(a, b):
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    out = tmp_path / "out"
    with OutputLock(str(out), "first"):
        assert read_lock(str(out)).run_id == "first"
        with pytest.raises(ConversionError, match="run first"):
            OutputLock(str(out), "second").acquire()
    assert not out.exists()


@pytest.mark.slow
def test_ctrl_c_of_the_command_is_one_line_exit_130_and_cleans_up(synth_tree, tmp_path):
    """SIGINT to a ``ray-ingest convert`` process while it writes shards (one input is a FIFO
    nobody writes to, so the run cannot end first)."""
    fifo = tmp_path / "stuck.jpg"
    os.mkfifo(fifo)
    names = sorted(p.relative_to(synth_tree).as_posix() for p in synth_tree.rglob("*.jpg"))
    rows = [(synth_tree / n, n.split("/")[0]) for n in names] + [(fifo, names[0].split("/")[0])]
    (tmp_path / "list.csv").write_text("".join(f"{p},{c}\n" for p, c in rows))
    out = tmp_path / "out"
    cli = Path(sys.executable).parent / "ray-ingest"
    proc = subprocess.Popen([str(cli), "convert", str(tmp_path / "list.csv"), str(out),
                             "--size", "16", "--shard-size-mb", "0.01"], env=fresh_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 300
        while not list(out.glob(f"{mf.STAGING_PREFIX}*/*.tfrecord")):  # writing shards
            assert time.time() < deadline and proc.poll() is None, proc.poll()
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        text, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
        try:  # a reader still waiting on the FIFO, if any
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    lines = [x for x in own_lines(text) if not x.startswith("convert: ")]
    assert proc.returncode == 130, text[-3000:]
    assert lines == [f"ray-ingest convert: interrupted; nothing committed, {out} holds what it "
                     "held before"], text[-3000:]
    assert not out.exists()  # no staging, no lock, and the OUT it made went too
