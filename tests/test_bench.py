"""The throughput study: a tiny run writes its three files with every row this machine can run."""

from __future__ import annotations

import json

import pytest

from ray_ingest.bench import BenchConfig, format_table, run_bench
from ray_ingest.bench.rows import ALL_ROWS, available_rows
from ray_ingest.errors import ConfigError

pytestmark = pytest.mark.usefixtures("ray_session")


def test_bench_job_writes_its_three_files(converted, tmp_path):
    out = tmp_path / "bench"
    cfg = BenchConfig(data=str(converted["jpeg"]), images=48, warmup=8, repeats=1,
                      batch_size=16, out=str(out))
    report = run_bench(cfg, show_progress=False)
    names = [r["name"] for r in report["rows"]]
    assert names == available_rows()
    for r in report["rows"]:
        assert r["images_per_second"] > 0 and r["cpu_seconds"] >= 0
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
    assert BenchConfig(data="x", rows=list(ALL_ROWS)).rows == list(ALL_ROWS)
