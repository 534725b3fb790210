"""The throughput study: a tiny run writes its three files with every row this machine can run."""

from __future__ import annotations

import json

import pytest

from ray_ingest.bench import BenchConfig, format_table, run_bench
from ray_ingest.bench.rows import (
    ALL_ROWS,
    LIMIT,
    OURS_CONSUMER,
    OURS_ITER,
    OURS_TRAIN_CONSUMER,
    RAY_STOCK,
    available_rows,
)
from ray_ingest.bench.tfdata import BATCHED_ROW
from ray_ingest.errors import ConfigError

pytestmark = pytest.mark.usefixtures("ray_session")


def test_bench_job_writes_its_three_files(converted, tmp_path):
    out = tmp_path / "bench"
    # One row of each kind (a Ray Train row is a fit per run: one of those is enough here).
    rows = [r for r in available_rows("jpeg") if r in (
        LIMIT, BATCHED_ROW, RAY_STOCK, OURS_ITER, OURS_CONSUMER, OURS_TRAIN_CONSUMER)]
    cfg = BenchConfig(data=str(converted["jpeg"]), images=48, warmup=8, repeats=1,
                      batch_size=16, out=str(out), rows=rows)
    report = run_bench(cfg, show_progress=False)
    names = [r["name"] for r in report["rows"]]
    assert names == rows and LIMIT in names and OURS_TRAIN_CONSUMER in names
    for r in report["rows"]:
        assert r["images_per_second"] > 0 and r["cpu_seconds"] >= 0
        if r["too_short"]:
            assert r["x_limit"] is None and r["name"] not in report["ratios"]
    assert json.loads((out / "report.json").read_text())["rows"]
    assert "| variant | images/s" in (out / "report.md").read_text()
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"
    table = format_table(report)
    assert "ray-ingest iter_batches" in table


def test_bench_config_is_checked():
    with pytest.raises(ConfigError, match="unknown rows"):
        BenchConfig(data="x", rows=["tf.data Plain", "nope"])
    with pytest.raises(ConfigError, match="images must be >= 1"):
        BenchConfig(data="x", images=0)
    assert LIMIT not in available_rows("raw")


def test_a_run_too_short_to_mean_anything_is_marked_and_never_compared():
    from types import SimpleNamespace

    from ray_ingest.bench.report import MIN_WINDOW_SECONDS, Row, make_report

    m = SimpleNamespace(root="/d", encoding="jpeg", height=224, width=224, channels=3)
    cfg = SimpleNamespace(split="train", images=1000, warmup=100, repeats=2, batch_size=256)
    long_enough = 2 * MIN_WINDOW_SECONDS
    # the limit timed 10x the images in a long enough window: its rate scaled to 1000 images
    # is a short time, but what it measured was not
    rows = [Row(LIMIT, "limit", 1000, [long_enough / 10] * 2, 0.2, 10_000.0,
                windows_seconds=[long_enough] * 2),
            Row(OURS_ITER, "ray", 1000, [2 * long_enough, 2 * long_enough], 2.0, 10_000.0),
            # 1000 images "in" a millisecond: batches that were buffered before the clock
            Row(OURS_CONSUMER, "ray", 1000, [0.001, 0.001], 0.0, 10_000.0)]
    report = make_report(cfg, m, rows)
    by_name = {r["name"]: r for r in report["rows"]}
    assert by_name[OURS_CONSUMER]["too_short"] and by_name[OURS_CONSUMER]["x_limit"] is None
    assert OURS_CONSUMER not in report["ratios"]
    assert not by_name[LIMIT]["too_short"]
    assert report["ratios"][OURS_ITER]["limit"] == pytest.approx(0.05)
    assert by_name[OURS_ITER]["x_limit"] == pytest.approx(0.05)
    table = format_table(report)
    assert "1000000*" in table and "too short" in table
    assert "best streaming tf.data row (none ran: no ratio)" in table  # no tf.data row ran


def test_decode_limit_row_decodes_what_it_counts(converted):
    from ray_ingest.bench.limit import DecodeLimit
    from ray_ingest.format.records import iter_records

    encoded = [r.encoded for r in iter_records(str(converted["jpeg"]), "train")]
    pool = DecodeLimit(encoded[:20], processes=2)
    try:
        t = pool.run(warmup=4, images=50, min_seconds=0.3)
    finally:
        pool.close()
    # whole passes of 50 images, as many as fill the minimum window
    assert t.images >= 50 and t.images % 50 == 0 and t.seconds >= 0.3 and t.cpu_seconds > 0


def test_every_row_can_be_named_on_the_command_line():
    from ray_ingest.cli import build_parser

    args = build_parser().parse_args(["bench", "d", "--rows", ",".join(ALL_ROWS)])
    assert args.rows == list(ALL_ROWS)


def test_thread_cpu_counts_each_thread_group():
    import threading
    import time

    from ray_ingest.bench.threads import cpu_by_group, thread_cpu

    stop = threading.Event()

    def spin():
        while not stop.is_set():
            sum(range(1000))

    threads = [threading.Thread(target=spin, name=f"spinner_{i}") for i in range(2)]
    before = thread_cpu()
    for t in threads:
        t.start()
    time.sleep(0.6)
    groups = cpu_by_group(before, thread_cpu())
    stop.set()
    for t in threads:
        t.join()
    # both spinners in one group (their numbers dropped), which used CPU; the caller apart
    assert "spinner" in groups and groups["spinner"] > 0.05 and "caller" in groups
    assert list(groups) == sorted(groups, key=lambda g: -groups[g])


def test_the_worker_process_cpu_is_reported_per_image_and_thread_group():
    from types import SimpleNamespace

    from ray_ingest.bench.report import Row, make_report

    m = SimpleNamespace(root="/d", encoding="jpeg", height=224, width=224, channels=3)
    cfg = SimpleNamespace(split="train", images=1000, warmup=100, repeats=1, batch_size=256)
    rows = [Row(OURS_TRAIN_CONSUMER, "ray", 1000, [1.0], 2.0, 10_000.0,
                process_cpu_seconds=0.2,
                thread_cpu_seconds={"ray-ingest-decode": 0.15, "caller": 0.01})]
    report = make_report(cfg, m, rows)
    assert report["rows"][0]["process_cpu_us_per_image"] == pytest.approx(200)
    assert ("the worker process used 200 us of CPU an image (ray-ingest-decode 150, caller 10)"
            in format_table(report))
