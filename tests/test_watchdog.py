"""The stall watchdog on its own (threads, no Ray): it fires only when progress stops, dumps
where the training thread waits, wakes the other ranks, and the driver's summary names them."""

from __future__ import annotations

import threading
import time

from ray_ingest.train.watchdog import StallWatchdog, stall_summary


def _stuck_in_a_collective(event: threading.Event) -> None:
    event.wait()  # stands for a collective that never returns


def _run_rank(run, rank, timeout, ticks, exits, stop_event):
    """A training thread: ticks ``ticks`` times, then blocks."""
    wd = StallWatchdog(run, "att", rank, timeout, poll=0.05, exit_fn=exits.append)
    wd.grace = 0.5
    wd.start()
    for _ in range(ticks):
        wd.tick("training step")
        time.sleep(0.02)
    _stuck_in_a_collective(stop_event)
    wd.stop()


def test_a_ticking_loop_is_left_alone(tmp_path):
    exits = []
    wd = StallWatchdog(str(tmp_path), "att", 0, 0.3, poll=0.05, exit_fn=exits.append).start()
    for _ in range(30):
        wd.tick("training step")
        time.sleep(0.02)
    wd.stop()
    assert not exits and not wd.fired and stall_summary(str(tmp_path), "att", 0.3) is None


def test_a_stall_dumps_every_rank_and_the_summary_names_them(tmp_path):
    exits, release = [], threading.Event()
    # Rank 0 stalls first; rank 1 a little later but before its own time-out would fire:
    # the flag rank 0 leaves makes it dump at once.
    threads = [threading.Thread(target=_run_rank, args=(str(tmp_path), r, t, n, exits, release))
               for r, t, n in ((0, 0.5, 3), (1, 30.0, 10))]
    for t in threads:
        t.start()
    deadline = time.time() + 20
    while len(exits) < 2 and time.time() < deadline:
        time.sleep(0.05)
    release.set()
    for t in threads:
        t.join()
    assert exits == [75, 75]
    summary = stall_summary(str(tmp_path), "att", 0.5)
    assert "rank 0: no training progress" in summary and "rank 1:" in summary
    assert "_stuck_in_a_collective" in summary  # where the training thread waits
    dump = (tmp_path / "_stalls" / "att-rank0.txt").read_text()
    assert "all threads (faulthandler)" in dump and "test_watchdog.py" in dump


def test_a_flag_from_an_earlier_worker_group_is_ignored(tmp_path):
    (tmp_path / "_stalls").mkdir()
    (tmp_path / "_stalls" / "att.stalled").write_text(repr(time.time() - 3600))
    exits = []
    wd = StallWatchdog(str(tmp_path), "att", 1, 30.0, poll=0.05, exit_fn=exits.append).start()
    time.sleep(0.5)  # idle, but well inside its own time-out
    wd.stop()
    assert not exits and not wd.fired


def test_zero_turns_it_off(tmp_path):
    """Time-out 0: a loop that never ticks is never stopped, and another rank's stall flag
    does not reach it either."""
    (tmp_path / "_stalls").mkdir()
    (tmp_path / "_stalls" / "att.stalled").write_text(repr(time.time()))
    exits = []
    wd = StallWatchdog(str(tmp_path), "att", 0, 0, poll=0.05, exit_fn=exits.append)
    wd.grace = 0.0
    wd.start()
    time.sleep(0.6)  # no tick at all, over ten polls
    wd.stop()
    assert not exits and not wd.fired
    assert not (tmp_path / "_stalls" / "att-rank0.txt").exists()
