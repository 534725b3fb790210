"""The throughput report: rows with their median rate and spread, ratios to the Plain row and
to the best streaming tf.data row, as a terminal table, JSON, Markdown and a PNG chart."""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

from ray_ingest import fs
from ray_ingest.bench.peers import GROUP as PEER_GROUP
from ray_ingest.bench.rows import LIMIT, RAY_STOCK
from ray_ingest.bench.tfdata import CACHE_ROW
from ray_ingest.format.manifest import Manifest

#: A run timed for less than this is too short to mean anything: what it streamed may have
#: been buffered before its clock started.
MIN_WINDOW_SECONDS = 0.5


@dataclass
class Row:
    name: str
    group: str
    images: int
    runs_seconds: List[float]
    cpu_seconds: float
    bytes_per_image: float
    note: str = ""
    #: The timed windows as they were (a row may time more than ``images`` per run, the
    #: decode limit does); ``runs_seconds`` holds them scaled to ``images``.
    windows_seconds: List[float] = field(default_factory=list)
    #: Rows timed inside a Ray Train worker: that process's own CPU, and per thread group.
    process_cpu_seconds: Optional[float] = None
    thread_cpu_seconds: Dict[str, float] = field(default_factory=dict)

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
    def too_short(self) -> bool:
        return statistics.median(self.windows_seconds or self.runs_seconds) < MIN_WINDOW_SECONDS

    @property
    def mb_per_second(self) -> float:
        return self.images_per_second * self.bytes_per_image / 1e6

    def to_json(self) -> Dict:
        d = asdict(self)
        d.update(images_per_second=self.images_per_second, seconds=self.seconds,
                 spread=self.spread, mb_per_second=self.mb_per_second, too_short=self.too_short,
                 process_cpu_us_per_image=(1e6 * self.process_cpu_seconds / self.images
                                           if self.process_cpu_seconds is not None else None))
        return d


def paired_ratio(a: Row, b: Row) -> float:
    """Median over rounds of (a's rate / b's rate) in the same round."""
    return statistics.median(tb / ta for ta, tb in zip(a.runs_seconds, b.runs_seconds))


def make_report(cfg, m: Manifest, rows: List[Row], skipped: Optional[Dict[str, str]] = None
                ) -> Dict:
    """The report of a run; ``skipped``: the rows asked for that could not run here, with why."""
    import platform

    import ray

    from ray_ingest.runtime import usable_cores

    measured = [r for r in rows if not r.too_short]
    limit = next((r for r in measured if r.name == LIMIT), None)
    streaming_tf = [r for r in measured if r.group == "tf.data" and r.name != CACHE_ROW]
    best_tf = max(streaming_tf, key=lambda r: r.images_per_second, default=None)
    stock = next((r for r in measured if r.name == RAY_STOCK), None)
    best_peer = max((r for r in measured if r.group == PEER_GROUP),
                    key=lambda r: r.images_per_second, default=None)
    table = []
    for r in rows:
        d = r.to_json()
        ok = not r.too_short
        d["x_limit"] = r.images_per_second / limit.images_per_second if limit and ok else None
        d["x_best_tf"] = (r.images_per_second / best_tf.images_per_second
                          if best_tf and ok else None)
        table.append(d)
    # Headline ratios pair the runs of one round (taken a few seconds apart), then take the
    # median over rounds: on a shared, noisy machine that is steadier than a ratio of medians.
    ratios: Dict[str, Dict[str, float]] = {}
    for r in measured:
        if r.group != "ray" or r.name == RAY_STOCK:
            continue
        ratios[r.name] = {name: paired_ratio(r, ref) for name, ref in
                          (("limit", limit), ("best_tf", best_tf), ("ray_stock", stock),
                           ("best_peer", best_peer)) if ref}
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
        "limit_row": limit.name if limit else None,
        "best_peer_row": best_peer.name if best_peer else None,
        "min_window_seconds": MIN_WINDOW_SECONDS,
        "machine": {"cpus": usable_cores(), "platform": platform.platform(),
                    "python": platform.python_version(), "ray": ray.__version__},
        "rows": table,
        "ratios": ratios,
        "skipped_rows": dict(skipped or {}),
    }


def _x(v) -> str:
    return f"{v:.2f}" if v else "-"


def format_table(report: Dict) -> str:
    head = (f"{'variant':<44}{'images/s':>10}{'spread':>8}{'MB/s':>8}{'wall s':>8}{'CPU s':>8}"
            f"{'x limit':>9}{'x best tf':>10}")
    lines = [head, "-" * len(head)]
    for r in report["rows"]:
        rate = f"{r['images_per_second']:.0f}" + ("*" if r["too_short"] else "")
        lines.append(
            f"{r['name']:<44}{rate:>10}{'±%.0f%%' % (r['spread'] * 50):>8}"
            f"{r['mb_per_second']:>8.1f}{r['seconds']:>8.2f}{r['cpu_seconds']:>8.2f}"
            f"{_x(r['x_limit']):>9}{_x(r['x_best_tf']):>10}")
    lines.append("")
    lines.append(
        f"{report['encoding']} {report['image_shape'][0]}x{report['image_shape'][1]} shards, "
        f"{report['images_timed']} images timed after {report['warmup']} warm-up, median of "
        f"{report['repeats']} rounds (rows interleaved); spread = half the min-max range; "
        f"x limit: of the decode-limit row; x best tf: of the best streaming tf.data row "
        + (f"({report['best_tf_row']})." if report.get("best_tf_row") else
           "(none ran: no ratio)."))
    if report.get("best_peer_row"):
        lines.append(f"best_peer: the fastest peer loader's row ({report['best_peer_row']}).")
    for name, why in report.get("skipped_rows", {}).items():
        lines.append(f"not run: {name} ({why})")
    if any(r["too_short"] for r in report["rows"]):
        lines.append(f"* timed for under {report['min_window_seconds']} s: too short to "
                     "mean anything (batches already buffered); not compared. Time more images.")
    for name, rs in report["ratios"].items():
        if rs:
            lines.append(f"{name}: " + ", ".join(f"{v:.2f}x {k}" for k, v in rs.items())
                         + " (median of per-round ratios)")
    lines.extend(_worker_cpu_lines(report))
    return "\n".join(lines)


def _worker_cpu_lines(report: Dict) -> List[str]:
    """Per row timed in a Ray Train worker: that process's CPU an image, by thread group."""
    lines = []
    for r in report["rows"]:
        us = r.get("process_cpu_us_per_image")
        if us is None:
            continue
        n = r["images"]
        parts = ", ".join(f"{g} {1e6 * v / n:.0f}" for g, v in
                          list(r.get("thread_cpu_seconds", {}).items())[:6] if v > 0)
        lines.append(f"{r['name']}: the worker process used {us:.0f} us of CPU an image "
                     f"({parts})")
    return lines


def _markdown(report: Dict) -> str:
    out = [f"# Throughput report ({report['date']})", "",
           f"Data: `{report['data']}` ({report['split']}), {report['encoding']} "
           f"{report['image_shape'][0]}x{report['image_shape'][1]}; machine: "
           f"{report['machine']['cpus']} CPUs, Python {report['machine']['python']}, "
           f"Ray {report['machine']['ray']}.", "",
           "| variant | images/s | spread | MB/s | wall s | CPU s | x limit | x best tf.data |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        rate = f"{r['images_per_second']:.0f}" + (" (too short)" if r["too_short"] else "")
        out.append(f"| {r['name']} | {rate} | ±{r['spread'] * 50:.0f}% | "
                   f"{r['mb_per_second']:.1f} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | "
                   f"{_x(r['x_limit'])} | {_x(r['x_best_tf'])} |")
    out.append("")
    for name, rs in report["ratios"].items():
        if rs:
            out.append(f"- {name}: " + ", ".join(f"{v:.2f}x {k}" for k, v in rs.items()))
    if report.get("best_peer_row"):
        out.append(f"- best_peer: {report['best_peer_row']}")
    out.extend(f"- {line}" for line in _worker_cpu_lines(report))
    for name, why in report.get("skipped_rows", {}).items():
        out.append(f"- not run: {name} ({why})")
    return "\n".join(out) + "\n"


def _chart(report: Dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    names = [r["name"] for r in rows]
    rates = [r["images_per_second"] for r in rows]
    errs = [r["spread"] * r["images_per_second"] / 2 for r in rows]
    colors = [{"tf.data": "#ff8f00", "limit": "#9e9e9e", PEER_GROUP: "#2e7d32"}.get(
        r["group"], "#1565c0") for r in rows]
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


def write_json_markdown(path: str, report: Dict, table: List[str]) -> None:
    """A benchmark script's files: ``report`` as JSON at ``path``, and the Markdown lines
    ``table`` beside it (the same name, ``.md``)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.splitext(path)[0] + ".md", "w") as f:
        f.write("\n".join(table) + "\n")
