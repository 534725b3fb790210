"""The throughput job: the classic tf.data study and the Ray variants, side by side, in one run.

Every row streams decoded ``uint8[H, W, 3]`` images with their labels out of the same shards of a
conversion output, for a fixed number of images after a warm-up, several times; the report gives
the median images/s with its spread, MB/s of shard bytes, wall and CPU time (this process plus
the Ray processes it drives), and ratios to the Plain row and to the best streaming tf.data row.

Rows (tf.data after "Practical ML for Computer Vision", ch. 7, "Efficient Ingest"):
  tf.data Plain, Parallel Map, Interleave, Interleave + Parallel Map, + prefetch,
  + batch(32) before a vectorized parse, + cache;
  Ray Data stock read_tfrecords (+ decode in map_batches);
  ray-ingest read_records through iter_batches, through iter_tf_batches, and through a
  Ray Train worker's get_dataset_shard (JPEG decoded in the read tasks); and read_records with
  decode="consumer" through iter_images (JPEG bytes through the object store, decoded by
  threads of the consuming process).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, Iterator, List, Optional

from ray_ingest import fs, keys
from ray_ingest.manifest import Manifest, read_manifest

TF_ROWS = (
    "tf.data Plain",
    "tf.data Parallel Map",
    "tf.data Interleave",
    "tf.data Interleave + Parallel Map",
    "tf.data + prefetch",
    "tf.data + batch(32) vectorized parse",
    "tf.data + cache",
)
RAY_STOCK = "Ray Data read_tfrecords (stock)"
OURS_ITER = "ray-ingest iter_batches"
OURS_TF = "ray-ingest iter_tf_batches"
OURS_CONSUMER = "ray-ingest iter_images consumer decode"
OURS_TRAIN = "ray-ingest Ray Train get_dataset_shard"
CACHE_ROW = TF_ROWS[-1]


@dataclass
class Row:
    name: str
    group: str
    images: int
    runs_seconds: List[float]
    cpu_seconds: float
    bytes_per_image: float
    note: str = ""

    @property
    def seconds(self) -> float:
        return statistics.median(self.runs_seconds)

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds

    @property
    def spread(self) -> float:
        """(max - min) / median of the per-run rates, as a fraction."""
        rates = [self.images / s for s in self.runs_seconds]
        return (max(rates) - min(rates)) / statistics.median(rates) if len(rates) > 1 else 0.0

    @property
    def mb_per_second(self) -> float:
        return self.images_per_second * self.bytes_per_image / 1e6

    def to_json(self) -> Dict:
        d = asdict(self)
        d.update(images_per_second=self.images_per_second, seconds=self.seconds,
                 spread=self.spread, mb_per_second=self.mb_per_second)
        return d


# ---- CPU time of this process and the Ray processes it drives --------------------------------


def _processes():
    import psutil

    me = psutil.Process()
    procs = {me.pid: me}
    try:
        for p in me.children(recursive=True):
            procs[p.pid] = p
    except psutil.Error:
        pass
    for p in psutil.process_iter(["name"]):
        if (p.info.get("name") or "").startswith("ray::"):
            procs.setdefault(p.pid, p)
    return procs


def cpu_snapshot(skip_idle_workers: bool = False) -> Dict[int, float]:
    import psutil

    out = {}
    for pid, p in _processes().items():
        try:
            if skip_idle_workers and p.name() == "ray::IDLE":
                continue
            t = p.cpu_times()
            out[pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def cpu_delta(before: Dict[int, float], after: Dict[int, float]) -> float:
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


def wait_idle(timeout: float = 60.0, window: float = 0.3, threshold: float = 0.2) -> float:
    """Waits until this process and its Ray processes use under ``threshold`` of a core.

    A stream that is abandoned mid-way (as every timed run is) can leave tasks finishing in the
    background; the next row must not pay for them. Idle worker processes are left out: each
    ticks at ~1 % of a core, and a node keeps many (``runtime.worker_soft_limit``); Ray's
    daemons and idle actors tick too, hence a threshold of 0.2 core (a leftover task uses 1).
    Returns the seconds waited.
    """
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        before = cpu_snapshot(skip_idle_workers=True)
        time.sleep(window)
        if cpu_delta(before, cpu_snapshot(skip_idle_workers=True)) < threshold * window:
            break
    return time.perf_counter() - start


# ---- the measurement loop -------------------------------------------------------------------


class Variant:
    """One row: ``make()`` returns a fresh iterator of batch sizes."""

    def __init__(self, name: str, group: str, make: Callable[[], Iterator[int]], warmup: int,
                 note: str = ""):
        self.name, self.group, self.make, self.warmup, self.note = name, group, make, warmup, note
        self.runs: List[float] = []
        self.cpus: List[float] = []

    def run_once(self, images: int) -> float:
        """Skips ``warmup`` images, then times ``images`` more; returns images/s."""
        import gc

        it = self.make()
        seen = 0
        while seen < self.warmup:
            seen += next(it)
        cpu0, t0 = cpu_snapshot(), time.perf_counter()
        n = 0
        while n < images:
            n += next(it)
        dt = time.perf_counter() - t0
        self.cpus.append(cpu_delta(cpu0, cpu_snapshot()) * images / n)
        self.runs.append(dt * images / n)  # normalise a last partial batch away
        close = getattr(it, "close", None)
        if close:
            close()
        del it
        gc.collect()
        wait_idle()
        return images / self.runs[-1]

    def row(self, images: int, bytes_per_image: float) -> Row:
        return Row(self.name, self.group, images, self.runs, statistics.median(self.cpus),
                   bytes_per_image, self.note)


def measure_round_robin(variants: List[Variant], images: int, repeats: int,
                        progress: Callable[[str], None] = print) -> None:
    """Runs every variant once per round, ``repeats`` rounds: slow drifts of a shared machine
    then fall on every row alike instead of on whichever ran last. An untimed round first
    starts every row's worker processes and imports (a fresh Ray instance pays seconds of CPU
    for those on its first stream)."""
    for v in variants:
        v.run_once(max(v.warmup, 1))
        v.runs.clear()
        v.cpus.clear()
    progress("  (warm-up round done)")
    for r in range(repeats):
        for v in variants:
            rate = v.run_once(images)
            progress(f"  round {r + 1}/{repeats}  {v.name:<40} {rate:8.0f} images/s")


# ---- tf.data variants --------------------------------------------------------------------------


def tf_dataset(variant: str, files: List[str], m: Manifest):
    """One of the study's tf.data pipelines over ``files``, repeated forever."""
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    features = {keys.ENCODED: tf.io.FixedLenFeature([], tf.string),
                keys.LABEL: tf.io.FixedLenFeature([], tf.int64)}
    shape = [m.height, m.width, m.channels]

    def decode(encoded):
        if m.encoding == keys.FORMAT_JPEG:
            img = tf.io.decode_jpeg(encoded, channels=3)
            return tf.ensure_shape(img, shape)
        return tf.reshape(tf.io.decode_raw(encoded, tf.uint8), shape)

    def parse(serialized):
        ex = tf.io.parse_single_example(serialized, features)
        return decode(ex[keys.ENCODED]), ex[keys.LABEL]

    def parse_batch(serialized):
        ex = tf.io.parse_example(serialized, features)
        imgs = tf.map_fn(decode, ex[keys.ENCODED], fn_output_signature=tf.uint8)
        return imgs, ex[keys.LABEL]

    def interleaved():
        return tf.data.Dataset.from_tensor_slices(files).interleave(
            tf.data.TFRecordDataset, cycle_length=max(1, len(files)),
            num_parallel_calls=autotune, deterministic=False)

    if variant == "tf.data Plain":
        return tf.data.TFRecordDataset(files).repeat().map(parse)
    if variant == "tf.data Parallel Map":
        return tf.data.TFRecordDataset(files).repeat().map(parse, num_parallel_calls=autotune)
    if variant == "tf.data Interleave":
        return interleaved().repeat().map(parse)
    if variant == "tf.data Interleave + Parallel Map":
        return interleaved().repeat().map(parse, num_parallel_calls=autotune)
    if variant == "tf.data + prefetch":
        return interleaved().repeat().map(parse, num_parallel_calls=autotune).prefetch(autotune)
    if variant == "tf.data + batch(32) vectorized parse":
        return (interleaved().repeat().batch(32)
                .map(parse_batch, num_parallel_calls=autotune).prefetch(autotune))
    if variant == "tf.data + cache":
        return (interleaved().map(parse, num_parallel_calls=autotune).cache().repeat()
                .prefetch(autotune))
    raise ValueError(variant)


def _tf_counts(ds, batched: bool) -> Iterator[int]:
    for img, _label in ds:
        yield int(img.shape[0]) if batched else 1


# ---- Ray variants ------------------------------------------------------------------------------


def ray_stock_dataset(files: List[str], m: Manifest, repeat: int):
    """Ray Data's own reader (one row per record, parsed in Python) + a decode in map_batches."""
    import numpy as np
    import ray

    height, width, channels, encoding = m.height, m.width, m.channels, m.encoding

    def decode(batch):
        enc = batch[keys.ENCODED]
        if encoding == keys.FORMAT_JPEG:
            import simplejpeg

            imgs = np.stack([simplejpeg.decode_jpeg(bytes(e)) for e in enc])
        else:
            imgs = np.stack([np.frombuffer(e, np.uint8).reshape(height, width, channels) for e in enc])
        return {"image": imgs, "label": np.asarray(batch[keys.LABEL], dtype=np.int64)}

    return ray.data.read_tfrecords(files * repeat).map_batches(decode, batch_format="numpy")


def _ray_counts(ds, batch_size: int, tf_batches: bool = False) -> Iterator[int]:
    if tf_batches:
        for b in ds.iter_tf_batches(batch_size=batch_size, prefetch_batches=4):
            yield int(b["label"].shape[0])
    else:
        for b in ds.iter_batches(batch_size=batch_size, prefetch_batches=4, batch_format="numpy"):
            yield len(b["label"])


def _consumer_counts(ds, batch_size: int) -> Iterator[int]:
    from ray_ingest.read import iter_images

    for b in iter_images(ds, batch_size=batch_size, prefetch_batches=4):
        yield len(b["label"])


# ---- the job -----------------------------------------------------------------------------------


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


def has_tensorflow() -> bool:
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def available_rows() -> List[str]:
    """The rows this machine can run: tf.data rows and Ray's stock reader need TensorFlow."""
    if not has_tensorflow():
        return [OURS_ITER, OURS_CONSUMER, OURS_TRAIN]
    return list(TF_ROWS) + [RAY_STOCK, OURS_ITER, OURS_CONSUMER, OURS_TF, OURS_TRAIN]


def run_bench(cfg: BenchConfig, progress: Callable[[str], None] = print) -> Dict:
    from ray_ingest.read import read_records
    from ray_ingest.runtime import ensure_ray

    m = read_manifest(cfg.data)
    shards = m.shards(cfg.split)
    files = [fs.join(m.root, s.file) for s in shards]
    n_split = m.num_records(cfg.split)
    bytes_per_image = sum(s.num_bytes for s in shards) / max(1, n_split)
    rows_wanted = cfg.rows or available_rows()
    unknown = set(rows_wanted) - set(TF_ROWS + (RAY_STOCK, OURS_ITER, OURS_CONSUMER, OURS_TF,
                                                OURS_TRAIN))
    if unknown:
        raise ValueError(f"unknown rows {sorted(unknown)}")
    # Enough passes over the split for the warm-up plus the timed images.
    passes = math.ceil((cfg.warmup + cfg.images + cfg.batch_size) / max(1, n_split)) + 1
    ensure_ray()
    variants: List[Variant] = []
    for name in rows_wanted:
        if name in TF_ROWS:
            batched = "batch(32)" in name
            cache = name == CACHE_ROW
            variants.append(Variant(
                name, "tf.data",
                lambda name=name, batched=batched: _tf_counts(tf_dataset(name, files, m), batched),
                warmup=max(cfg.warmup, n_split) if cache else cfg.warmup,
                note="the warm-up fills the cache (one pass)" if cache else ""))
        elif name == RAY_STOCK:
            variants.append(Variant(
                name, "ray", lambda: _ray_counts(ray_stock_dataset(files, m, passes),
                                                 cfg.batch_size), warmup=cfg.warmup))
        elif name in (OURS_ITER, OURS_TF):
            tf_b = name == OURS_TF
            variants.append(Variant(
                name, "ray", lambda tf_b=tf_b: _ray_counts(
                    read_records(m.root, cfg.split, repeat=passes, block_rows=cfg.batch_size),
                    cfg.batch_size, tf_b),
                warmup=cfg.warmup))
        elif name == OURS_CONSUMER:
            variants.append(Variant(
                name, "ray", lambda: _consumer_counts(
                    read_records(m.root, cfg.split, repeat=passes, block_rows=cfg.batch_size,
                                 decode="consumer"), cfg.batch_size),
                warmup=cfg.warmup))
        elif name == OURS_TRAIN:
            from ray_ingest.train.feed import train_feed_variant

            variants.append(train_feed_variant(m, cfg, passes))
    measure_round_robin(variants, cfg.images, cfg.repeats, progress)
    results = [v.row(cfg.images, bytes_per_image) for v in variants]
    report = make_report(cfg, m, results)
    if cfg.out:
        write_report(report, cfg.out)
    return report


def paired_ratio(a: Row, b: Row) -> float:
    """Median over rounds of (a's rate / b's rate) in the same round."""
    return statistics.median(tb / ta for ta, tb in zip(a.runs_seconds, b.runs_seconds))


def make_report(cfg: BenchConfig, m: Manifest, rows: List[Row]) -> Dict:
    import platform

    import ray

    plain = next((r for r in rows if r.name == "tf.data Plain"), None)
    streaming_tf = [r for r in rows if r.group == "tf.data" and r.name != CACHE_ROW]
    best_tf = max(streaming_tf, key=lambda r: r.images_per_second, default=None)
    table = []
    for r in rows:
        d = r.to_json()
        d["x_plain"] = r.images_per_second / plain.images_per_second if plain else None
        d["x_best_tf"] = r.images_per_second / best_tf.images_per_second if best_tf else None
        table.append(d)
    by_name = {r.name: r for r in rows}
    stock = by_name.get(RAY_STOCK)
    ours = by_name.get(OURS_ITER)
    verdict = {}
    # Headline ratios pair the runs of one round (taken a few seconds apart), then take the
    # median over rounds: on a shared, noisy machine that is steadier than a ratio of medians.
    if ours and best_tf:
        verdict["ours_vs_best_tf"] = paired_ratio(ours, best_tf)
    if ours and stock:
        verdict["ours_vs_ray_stock"] = paired_ratio(ours, stock)
    consumer = by_name.get(OURS_CONSUMER)
    if consumer and best_tf:
        verdict["ours_consumer_decode_vs_best_tf"] = paired_ratio(consumer, best_tf)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "data": m.root,
        "split": cfg.split,
        "encoding": m.encoding,
        "image_shape": [m.height, m.width, m.channels],
        "images_timed": cfg.images,
        "warmup": cfg.warmup,
        "repeats": cfg.repeats,
        "batch_size": cfg.batch_size,
        "best_tf_row": best_tf.name if best_tf else None,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "ray": ray.__version__},
        "rows": table,
        "ratios": verdict,
        "targets": {"ours_vs_best_tf": {"target": 1.0, "floor": 0.8}, "ours_vs_ray_stock": 5.0,
                    "ours_consumer_decode_vs_best_tf": {"target": 1.0, "floor": 0.8}},
    }


def format_table(report: Dict) -> str:
    head = (f"{'variant':<40}{'images/s':>10}{'spread':>8}{'MB/s':>8}{'wall s':>8}{'CPU s':>8}"
            f"{'x Plain':>9}{'x best tf':>10}")
    lines = [head, "-" * len(head)]
    for r in report["rows"]:
        xp = f"{r['x_plain']:.2f}" if r["x_plain"] else "-"
        xb = f"{r['x_best_tf']:.2f}" if r["x_best_tf"] else "-"
        lines.append(
            f"{r['name']:<40}{r['images_per_second']:>10.0f}{'±%.0f%%' % (r['spread'] * 50):>8}"
            f"{r['mb_per_second']:>8.1f}{r['seconds']:>8.2f}{r['cpu_seconds']:>8.2f}{xp:>9}{xb:>10}"
        )
    lines.append("")
    lines.append(
        f"{report['encoding']} {report['image_shape'][0]}x{report['image_shape'][1]} shards, "
        f"{report['images_timed']} images timed after {report['warmup']} warm-up, median of "
        f"{report['repeats']} rounds (rows interleaved); spread = half the min-max range; best "
        f"streaming tf.data row: {report['best_tf_row']}; ratios below: median of per-round ratios"
    )
    for k, v in report["ratios"].items():
        t = report["targets"].get(k)
        if isinstance(t, dict):
            mark = "met" if v >= t["target"] else ("above floor" if v >= t["floor"] else "MISSED")
            lines.append(f"{k}: {v:.2f}x (target {t['target']}x, floor {t['floor']}x: {mark})")
        elif t:
            lines.append(f"{k}: {v:.2f}x (target {t}x: {'met' if v >= t else 'MISSED'})")
    return "\n".join(lines)


def _markdown(report: Dict) -> str:
    out = [f"# Throughput report ({report['date']})", "",
           f"Data: `{report['data']}` ({report['split']}), {report['encoding']} "
           f"{report['image_shape'][0]}x{report['image_shape'][1]}; machine: "
           f"{report['machine']['cpus']} CPUs, Python {report['machine']['python']}, "
           f"Ray {report['machine']['ray']}.", "",
           "| variant | images/s | spread | MB/s | wall s | CPU s | x Plain | x best tf.data |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        xp = f"{r['x_plain']:.2f}" if r["x_plain"] else "-"
        xb = f"{r['x_best_tf']:.2f}" if r["x_best_tf"] else "-"
        out.append(f"| {r['name']} | {r['images_per_second']:.0f} | ±{r['spread'] * 50:.0f}% | "
                   f"{r['mb_per_second']:.1f} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | "
                   f"{xp} | {xb} |")
    out.append("")
    for k, v in report["ratios"].items():
        out.append(f"- {k}: {v:.2f}x")
    return "\n".join(out) + "\n"


def _chart(report: Dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    names = [r["name"] for r in rows]
    rates = [r["images_per_second"] for r in rows]
    errs = [r["spread"] * r["images_per_second"] / 2 for r in rows]
    colors = ["#ff8f00" if r["group"] == "tf.data" else "#1565c0" for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    y = range(len(rows))
    ax.barh(list(y), rates, xerr=errs, color=colors)
    ax.set_yticks(list(y))
    ax.set_yticklabels(names)
    ax.invert_yaxis()
    ax.set_xlabel("images/s (median; bars: min-max)")
    ax.set_title(f"Ingest throughput, {report['encoding']} {report['image_shape'][0]}px shards, "
                 f"{report['machine']['cpus']} CPUs")
    for i, v in enumerate(rates):
        ax.text(v, i, f" {v:.0f}", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(report: Dict, out: str) -> None:
    fs.makedirs(out)
    fs.write_atomic(fs.join(out, "report.json"), json.dumps(report, indent=2).encode())
    fs.write_atomic(fs.join(out, "report.md"), _markdown(report).encode())
    local_png = fs.join(out, "report.png") if not fs.is_uri(out) else "/tmp/ray-ingest-report.png"
    _chart(report, local_png)
    if fs.is_uri(out):
        with open(local_png, "rb") as f:
            fs.write_atomic(fs.join(out, "report.png"), f.read())
