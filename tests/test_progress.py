"""The progress display: log lines at an interval with count, rate and time left; one last line."""

from __future__ import annotations

import io
import threading
import time

from ray_ingest.progress import Progress


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_log_mode_writes_lines_with_count_rate_and_time_left():
    s = io.StringIO()
    with Progress("convert", total=100, unit="images", stream=s, interval=0.0) as p:
        p.update(40)
    lines = s.getvalue().splitlines()
    assert lines[0].startswith("convert: 40/100 images (40%), ") and "left" in lines[0]
    assert lines[-1].startswith("convert: 40 images in ")
    assert "\r" not in s.getvalue()  # a log gets plain lines


def test_log_mode_throttles_to_the_interval():
    s = io.StringIO()
    p = Progress("read", total=None, stream=s, interval=3600)
    for _ in range(1000):
        p.update()
    p.close("read: done")
    assert s.getvalue().splitlines() == ["read: done"]


def test_terminal_mode_redraws_one_line():
    s = Tty()
    p = Progress("bench", total=10, unit="runs", stream=s, interval=0.0)
    p.update(5)
    p.close()
    assert "\r\x1b[2K" in s.getvalue() and "[############............]" in s.getvalue()
    assert s.getvalue().endswith("\n") and s.getvalue().count("\n") == 1


def test_updates_from_several_threads_are_all_counted():
    p = Progress("x", total=8000, stream=io.StringIO(), interval=0.0)
    threads = [threading.Thread(target=lambda: [p.update() for _ in range(2000)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert p.count == 8000


def test_disabled_writes_nothing():
    s = io.StringIO()
    with Progress("x", total=5, stream=s, interval=0.0, enabled=False) as p:
        p.update(5)
    assert s.getvalue() == ""


def test_slow_rates_keep_two_digits():
    s = io.StringIO()
    p = Progress("bench", total=10, unit="runs", stream=s, interval=3600)
    p.started -= 40.0  # 4 runs in 40 s
    p.count = 4
    assert "4/10 runs (40%), 0.1/s" in p.line()


def test_remote_progress_shows_what_ray_tasks_count(ray_session):
    import ray

    from ray_ingest.progress import RemoteProgress

    @ray.remote
    def work(counter, n):
        ray.get(counter.add.remote(n))
        return n

    s = io.StringIO()
    with RemoteProgress("convert", total=60, stream=s, interval=0.0, poll=0.05) as p:
        assert sum(ray.get([work.remote(p.counter, 20) for _ in range(3)])) == 60
        p._read(timeout=10.0)
        assert p.bar.count == 60  # read from the tasks' counts, before the block ends
    assert p.bar.count == 60
    assert s.getvalue().splitlines()[-1].startswith("convert: 60 images in ")
    # Retried tasks count twice: the display stops at the total.
    with RemoteProgress("convert", total=10, stream=io.StringIO(), poll=0.05) as p:
        ray.get(work.remote(p.counter, 15))
    assert p.bar.count == 10


def test_tasks_send_their_counts_at_most_once_a_second(ray_session):
    import ray

    from ray_ingest.progress import RemoteProgress, add_count

    @ray.remote(max_retries=0)
    def work(counter):
        for _ in range(10):  # one call now, nine counts held back
            add_count(counter, 1, every=1.0)
        first = ray.get(counter.get.remote())
        time.sleep(1.1)
        add_count(counter, 1, every=1.0)  # due: sends the ten it holds
        return first, ray.get(counter.get.remote())

    with RemoteProgress("convert", total=11, stream=io.StringIO(), poll=60) as p:
        assert ray.get(work.remote(p.counter)) == (1, 11)
    add_count(None, 5)  # a disabled display: nothing to count


def test_remote_progress_disabled_starts_nothing():
    from ray_ingest.progress import RemoteProgress

    s = io.StringIO()
    with RemoteProgress("convert", total=5, stream=s, enabled=False) as p:
        assert p.counter is None
    assert s.getvalue() == ""


def test_plural_counts_read_as_english():
    from ray_ingest.progress import plural

    assert plural(1, "worker") == "1 worker"
    assert plural(0, "shard") == "0 shards"
    assert plural(12000, "record") == "12,000 records"
