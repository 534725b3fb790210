"""The throughput job: the classic tf.data study and the Ray variants, side by side, in one run.

Every row streams decoded ``uint8[H, W, 3]`` images with their labels out of the same shards of a
conversion output, for a fixed number of images after a warm-up, several times; the report gives
the median images/s with its spread, MB/s of shard bytes, wall and CPU time (this process plus
the Ray processes it drives), and ratios to the Plain row and to the best streaming tf.data row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional

from ray_ingest.bench.measure import measure_round_robin
from ray_ingest.bench.report import Row, make_report, write_report
from ray_ingest.bench.rows import ALL_ROWS, ROWS, Context, available_rows
from ray_ingest.errors import ConfigError
from ray_ingest.format.manifest import read_manifest


@dataclass
class BenchConfig:
    data: str
    split: str = "train"
    images: int = 4000
    warmup: int = 500
    repeats: int = 5
    batch_size: int = 256
    rows: Optional[List[str]] = None  # None: all that can run here
    out: Optional[str] = None

    def __post_init__(self):
        for name in ("images", "repeats", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ConfigError(f"warmup must be >= 0, got {self.warmup}")
        unknown = sorted(set(self.rows or ()) - set(ALL_ROWS))
        if unknown:
            raise ConfigError(f"unknown rows {unknown}; rows are: {', '.join(ALL_ROWS)}")


def run_bench(cfg: BenchConfig, show_progress: bool = True) -> Dict:
    from ray_ingest.runtime import ensure_ray

    m = read_manifest(cfg.data)
    if m.variable_size:
        raise ConfigError(f"{cfg.data}: whole-image shards (resize_mode 'keep'): the study "
                          "streams fixed-size images; the random-resized-crop feed of whole "
                          "images is measured by benchmarks/crop_bench.py")
    shards = m.shards(cfg.split)
    n_split = m.num_records(cfg.split)
    bytes_per_image = sum(s.num_bytes for s in shards) / max(1, n_split)
    # Enough passes over the split for the warm-up plus the timed images.
    passes = math.ceil((cfg.warmup + cfg.images + cfg.batch_size) / max(1, n_split)) + 1
    ctx = Context(m, cfg.split, passes, cfg.batch_size, cfg.warmup)
    possible = available_rows(m.encoding)
    impossible = [r for r in (cfg.rows or ()) if r not in possible]
    if impossible:
        raise ConfigError(f"rows {impossible} cannot run here on {m.encoding} records (they "
                          "need JPEG records, TensorFlow or a GPU decoder)")
    ensure_ray()
    variants = [ROWS[name](ctx) for name in (cfg.rows or possible)]
    measure_round_robin(variants, cfg.images, cfg.repeats, show_progress)
    results = [Row(v.name, v.group, cfg.images, v.runs, v.cpu_seconds, bytes_per_image, v.note,
                   v.windows)
               for v in variants]
    report = make_report(cfg, m, results)
    if cfg.out:
        write_report(report, cfg.out)
    return report
