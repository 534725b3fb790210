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

from ray_ingest.bench import peers as peer_rows
from ray_ingest.bench.measure import measure_round_robin
from ray_ingest.bench.report import Row, make_report, write_report
from ray_ingest.bench.rows import ALL_ROWS, ROWS, Context, available_rows
from ray_ingest.errors import ConfigError, FieldName
from ray_ingest.flags import opt
from ray_ingest.format import keys
from ray_ingest.format.manifest import read_manifest


@dataclass
class BenchConfig:
    data: str = opt(help="a conversion output (path or URI)", positional=True)
    split: str = opt("train", help="split of the shards to read")
    images: int = opt(4000, help="images timed per run")
    warmup: int = opt(500, help="images skipped before timing")
    repeats: int = opt(5, help="timed rounds (every row once per round; the report gives the "
                               "median)")
    batch_size: int = opt(256, help="batch size of Ray rows")
    rows: Optional[List[str]] = opt(None, help=(  # None: all that can run here
        "comma-separated row names (default: all this machine can run)"))
    #: Add the peer loaders' rows (DALI, MosaicML Streaming, the torch DataLoader).
    peers: bool = opt(False, help=(
        "add the rows of the loaders users pick instead: NVIDIA DALI's CPU pipeline, MosaicML "
        "Streaming and the torch DataLoader (each skipped with one line when its package is "
        "missing: pip install 'ray-ingest[bench-peers]')"))
    #: The folder of report.json/.md/.png (None: no report files).
    out: Optional[str] = opt(None, cli_default="bench-report",
                             help="folder for report.json/.md/.png")

    def __post_init__(self):
        for name in ("images", "repeats", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(FieldName(name), f" must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ConfigError(FieldName("warmup"), f" must be >= 0, got {self.warmup}")
        known = ALL_ROWS + peer_rows.PEER_ROWS
        unknown = sorted(set(self.rows or ()) - set(known))
        if unknown:
            raise ConfigError(f"unknown rows {unknown}; rows are: {', '.join(known)}")

    def row_names(self, possible: List[str]) -> List[str]:
        """The rows of this run: ``rows`` (else every row of ours that can run here), and
        with ``peers`` every peer row not named already."""
        names = list(self.rows or possible)
        if self.peers:
            names += [r for r in peer_rows.PEER_ROWS if r not in names]
        return names


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
    # Enough passes over the split for the warm-up plus the timed images, each rounded up to
    # whole batches (a stream that drops its last partial batch), and one pass to spare.
    passes = math.ceil((cfg.warmup + cfg.images + 2 * cfg.batch_size) / max(1, n_split)) + 1
    ctx = Context(m, cfg.split, passes, cfg.batch_size, cfg.warmup)
    wanted_peers = [r for r in cfg.row_names([]) if r in peer_rows.PEER_ROWS]
    if wanted_peers and m.encoding != keys.FORMAT_JPEG:
        raise ConfigError(f"the peer rows decode JPEG records; {m.root} holds {m.encoding}")
    # Probed (imported) before TensorFlow is: with torch 2.14's triton, which MosaicML
    # Streaming's transformers imports, loading triton after TensorFlow crashes the process.
    _, skipped = peer_rows.split_available(wanted_peers)
    for name, why in skipped.items():
        print(f"skipping row {name!r}: {why}", flush=True)
    possible = available_rows(m.encoding)
    names = [r for r in cfg.row_names(possible) if r not in skipped]
    impossible = [r for r in names if r not in possible and r not in peer_rows.PEER_ROWS]
    if impossible:
        raise ConfigError(f"rows {impossible} cannot run here on {m.encoding} records (they "
                          "need JPEG records, TensorFlow or a GPU decoder)")
    ensure_ray()
    variants = [(ROWS.get(name) or peer_rows.factory(name))(ctx) for name in names]
    measure_round_robin(variants, cfg.images, cfg.repeats, show_progress)
    results = [Row(v.name, v.group, cfg.images, v.runs, v.cpu_seconds, bytes_per_image, v.note,
                   v.windows, v.process_cpu_seconds, v.thread_cpu_seconds)
               for v in variants]
    report = make_report(cfg, m, results, skipped)
    if cfg.out:
        write_report(report, cfg.out)
    return report
