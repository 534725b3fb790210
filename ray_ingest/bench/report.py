"""The throughput report: rows with their median rate and spread, ratios to the Plain row and
to the best streaming tf.data row, as a terminal table, JSON, Markdown and a PNG chart."""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Dict, List

from ray_ingest import fs
from ray_ingest.bench.rows import OURS_CONSUMER, OURS_ITER, RAY_STOCK
from ray_ingest.bench.tfdata import CACHE_ROW, TF_ROWS
from ray_ingest.format.manifest import Manifest


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


def paired_ratio(a: Row, b: Row) -> float:
    """Median over rounds of (a's rate / b's rate) in the same round."""
    return statistics.median(tb / ta for ta, tb in zip(a.runs_seconds, b.runs_seconds))


def make_report(cfg, m: Manifest, rows: List[Row]) -> Dict:
    import platform

    import ray

    plain = next((r for r in rows if r.name == TF_ROWS[0]), None)
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
