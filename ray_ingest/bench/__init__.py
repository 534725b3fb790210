"""The throughput study (``ray-ingest bench``), apart from the data path.

:mod:`measure` times rows (CPU accounting, idle wait, the one timed-stream helper),
:mod:`tfdata` holds the classic tf.data pipelines, :mod:`rows` the table of rows,
:mod:`train_row` the Ray Train row, :mod:`report` the table, JSON, Markdown and chart, and
:mod:`job` the run itself.
"""

from ray_ingest.bench.job import BenchConfig, run_bench
from ray_ingest.bench.report import format_table

__all__ = ["BenchConfig", "format_table", "run_bench"]
