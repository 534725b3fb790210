"""``ray-ingest inspect DATA``: what a conversion output holds.

A summary of the manifest (format, encoding, size, when and from what, shards and bytes per
split), the images per class per split, and the rejected and ignored inputs by reason. The
counts per class come from the manifest (a conversion records them); with ``--verify`` every
shard is read and checked (:mod:`ray_ingest.format.verify`) and the counts come from the
records themselves, which also serves outputs whose manifest predates per-class counts.
``--grid`` draws a contact sheet of sample images, a row per class.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ray_ingest import fs
from ray_ingest.format import keys
from ray_ingest.format.manifest import REJECTS_NAME, Manifest, read_manifest
from ray_ingest.format.records import iter_records
from ray_ingest.format.verify import VerifyReport, read_rejects, verify_output


@dataclass
class Inspection:
    manifest: Manifest
    rejects: List[Dict[str, Any]]
    ignored: List[Dict[str, Any]]
    #: Records per class id, per split (None: not known without reading the records).
    class_counts: Dict[str, Optional[List[int]]]
    verify: Optional[VerifyReport] = None
    notes: List[str] = field(default_factory=list)


def inspect_output(root: str, *, verify: bool = False, threads: int = 4,
                   progress: bool = True) -> Inspection:
    """Reads the manifest and the rejects file of a conversion output; with ``verify``, also
    every shard (raises at the first problem, naming the file and where)."""
    m = read_manifest(root)
    report = verify_output(root, threads=threads, progress=progress) if verify else None
    counts: Dict[str, Optional[List[int]]] = {}
    for split in m.splits:
        counts[split] = report.class_counts(split) if report else m.class_counts(split)
        if report and not counts[split]:
            counts[split] = [0] * len(m.class_names)
    rejects, ignored = read_rejects(m.root)
    notes = list(report.notes) if report else []
    return Inspection(m, rejects, ignored, counts, report, notes)


# ---------------------------------------------------------------------------------------------
# Text.


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _table(header: List[str], rows: List[List[str]], align: str) -> List[str]:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

    def line(cells):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w)
                         for c, w, a in zip(cells, widths, align)).rstrip()

    return [line(header)] + [line(r) for r in rows]


def summary_lines(insp: Inspection) -> List[str]:
    m = insp.manifest
    d = m.data
    enc = m.encoding + (f" (quality {d['quality']})" if d.get("quality") else "")
    lines = [
        f"{m.root}",
        f"  format     {d['format']} version {d['format_version']}",
    ]
    if m.variable_size:
        lines += whole_image_lines(m, enc)
    else:
        lines.append(f"  images     {m.height}x{m.width}x{m.channels} {enc}, "
                     f"{d.get('resize_mode', '?')}")
    lines.append(f"  created    {d.get('created', '?')} from {d.get('source', '?')}")
    for split in m.splits:
        shards = m.shards(split)
        nbytes = sum(s.num_bytes for s in shards)
        lines.append(f"  {split:<10} {_n(m.num_records(split), 'record')} in "
                     f"{_n(len(shards), 'shard')}, {_mb(nbytes)}")
    if "num_inputs" in d:
        lines.append(f"  inputs     {d['num_inputs']:,}: {d.get('num_written', 0):,} written, "
                     f"{d.get('num_rejected', 0):,} rejected; "
                     f"{_n(d.get('num_ignored', 0), 'other file')} ignored")
    if d.get("conversions"):
        lines.append("  converted  " + ", ".join(f"{k} x{v}" for k, v in d["conversions"].items()))
    return lines


def whole_image_lines(m: Manifest, enc: str) -> List[str]:
    """The storage policy and stored sizes of whole-image shards."""
    limits = [f"{name} {value}" for name, value in (("max side", m.max_side),
                                                    ("short side", m.short_side))
              if value is not None]
    lines = [f"  images     whole, aspect kept ({', '.join(limits) or 'no size limit'}; "
             f"never upscaled), {enc}, decoded as {m.channels} channels"]
    sizes = m.data.get("image_sizes")
    if sizes:
        def side(k):
            s = sizes[k]
            return f"{k} {s['min']}..{s['max']} (median {s['median']})"

        lines.append(f"  sizes      {side('height')}, {side('width')}")
        lines.append(f"  stored     {sizes['stored_as_is']:,} byte for byte (the input's own "
                     f"JPEG), {sizes['reencoded']:,} re-encoded")
    return lines


def class_table_lines(insp: Inspection) -> List[str]:
    m = insp.manifest
    splits = [s for s in m.splits if insp.class_counts.get(s) is not None]
    if not splits:
        return ["images per class: not recorded in this manifest (written by an older "
                "ray-ingest); --verify counts them by reading every record"]
    rows = []
    totals = np.zeros(len(splits), dtype=np.int64)
    for c, name in enumerate(m.class_names):
        per = [insp.class_counts[s][c] for s in splits]
        totals += per
        rows.append([name, str(c)] + [f"{n:,}" for n in per] + [f"{sum(per):,}"])
    rows.append(["total", ""] + [f"{int(n):,}" for n in totals] + [f"{int(totals.sum()):,}"])
    source = "read from the records" if insp.verify else "from the manifest"
    header = ["class", "id"] + splits + ["total"]
    return ([f"images per class ({source}):"]
            + ["  " + x for x in _table(header, rows, "lr" + "r" * (len(splits) + 1))])


def reject_lines(insp: Inspection) -> List[str]:
    m = insp.manifest
    lines = []
    reasons = Counter(r["reason"] for r in insp.rejects)
    if reasons or m.data.get("num_rejected"):
        if not reasons:  # a manifest that counts rejects whose file is gone
            reasons = Counter(m.data.get("reject_reasons", {}))
        lines.append(f"rejected: {_n(sum(reasons.values()), 'input')} (one line each in "
                     f"{fs.join(m.root, REJECTS_NAME)})")
        examples = {}
        for r in insp.rejects:
            examples.setdefault(r["reason"], r["path"])
        rows = [[reason, f"{n:,}", f"e.g. {examples[reason]}" if reason in examples else ""]
                for reason, n in reasons.most_common()]
        lines += ["  " + x for x in _table(["reason", "count", ""], rows, "lrl")[1:]]
    else:
        lines.append("rejected: none")
    if insp.ignored:
        why = Counter(r.get("message") or r["reason"] for r in insp.ignored)
        lines.append(f"ignored: {_n(len(insp.ignored), 'file')} (" +
                     ", ".join(f"{k} x{v}" for k, v in why.most_common()) + ")")
    return lines


def format_inspection(insp: Inspection) -> str:
    lines = summary_lines(insp) + [""] + class_table_lines(insp) + [""] + reject_lines(insp)
    if insp.verify is not None:
        lines += ["", insp.verify.summary_line()]
    lines += [f"note: {n}" for n in insp.notes]
    return "\n".join(lines)


def to_dict(insp: Inspection) -> Dict[str, Any]:
    """The inspection as JSON-ready data (``--json``)."""
    m = insp.manifest
    out = {
        "root": m.root,
        "manifest": {k: v for k, v in m.data.items() if k != "splits"},
        "splits": {s: {"num_records": m.num_records(s),
                       "num_bytes": sum(x.num_bytes for x in m.shards(s)),
                       "num_shards": len(m.shards(s)),
                       "class_counts": (dict(zip(m.class_names, insp.class_counts[s]))
                                        if insp.class_counts.get(s) is not None else None)}
                   for s in m.splits},
        "reject_reasons": dict(Counter(r["reason"] for r in insp.rejects)),
        "num_ignored": len(insp.ignored),
        "notes": insp.notes,
    }
    if insp.verify is not None:
        out["verify"] = {"ok": True, "num_shards": len(insp.verify.shards),
                         "num_records": insp.verify.num_records,
                         "num_bytes": insp.verify.num_bytes, "seconds": insp.verify.seconds}
    return out


# ---------------------------------------------------------------------------------------------
# The contact sheet.


def _pixels(record, m: Manifest) -> np.ndarray:
    if record.image_format == keys.FORMAT_RAW:
        return np.frombuffer(record.encoded, np.uint8).reshape(record.height, record.width,
                                                                m.channels)
    import simplejpeg

    return simplejpeg.decode_jpeg(record.encoded, colorspace="RGB")


def _thumbnail(pixels: np.ndarray, thumb: int, whole: bool):
    """A ``thumb x thumb`` cell: a stored fixed-size image resized; a whole image
    centre-cropped as evaluation sees it (:class:`~ray_ingest.read.crop.CenterCrop`)."""
    from PIL import Image

    img = Image.fromarray(pixels)
    if not whole:
        return img.resize((thumb, thumb))
    from ray_ingest.read.crop import CenterCrop

    (y, x, h, w), = CenterCrop(thumb).boxes([pixels.shape[0]], [pixels.shape[1]])[0].tolist()
    return img.resize((thumb, thumb), Image.BILINEAR, box=(x, y, x + w, y + h))


def sample_images(root: str, per_class: int, *, splits: Optional[List[str]] = None,
                  max_classes: Optional[int] = None) -> Tuple[Manifest, Dict[int, List]]:
    """Up to ``per_class`` records of each class (the first ones in shard order), read until
    every class shown has them or the data ends."""
    m = read_manifest(root)
    shown = range(len(m.class_names) if max_classes is None
                  else min(max_classes, len(m.class_names)))
    picked: Dict[int, List] = {c: [] for c in shown}
    missing = len(picked)
    for split in splits or m.splits:
        for record in iter_records(m.root, split, manifest=m):
            got = picked.get(record.label)
            if got is not None and len(got) < per_class:
                got.append(record)
                missing -= len(got) == per_class
                if missing == 0:
                    return m, picked
    return m, picked


def write_grid(root: str, png: str, *, per_class: int = 8, split: Optional[str] = None,
               max_classes: int = 32, thumb: int = 96) -> Tuple[int, int]:
    """Writes a labelled contact sheet: a row per class (its name, id and count on the left),
    ``per_class`` sample images each. Returns ``(classes shown, images shown)``."""
    from PIL import Image, ImageDraw, ImageFont

    if per_class < 1 or max_classes < 1 or thumb < 8:
        from ray_ingest.errors import ConfigError

        raise ConfigError(f"grid: per_class and max_classes must be positive and thumb at "
                          f"least 8, got {per_class}, {max_classes}, {thumb}")
    m, picked = sample_images(root, per_class, splits=[split] if split else None,
                              max_classes=max_classes)
    font = ImageFont.load_default(size=13)
    small = ImageFont.load_default(size=11)
    pad, label_w, title_h = 4, 150, 24
    cell = thumb + pad
    width = label_w + per_class * cell + pad
    height = title_h + len(picked) * cell + pad
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    title = f"{m.root}  ({split or ', '.join(m.splits)})"
    if len(picked) < len(m.class_names):
        title += f"  first {len(picked)} of {len(m.class_names)} classes"
    draw.text((pad, 5), title, fill=(0, 0, 0), font=font)
    shown = 0
    for row, (c, records) in enumerate(sorted(picked.items())):
        y = title_h + row * cell
        name = m.class_names[c]
        while len(name) > 1 and draw.textlength(name, font=font) > label_w - 2 * pad:
            name = name[:-2] + "…"
        draw.text((pad, y + 4), name, fill=(0, 0, 0), font=font)
        draw.text((pad, y + 22), f"class {c}", fill=(90, 90, 90), font=small)
        for col in range(per_class):
            x = label_w + col * cell
            if col < len(records):
                img = _thumbnail(_pixels(records[col], m), thumb, m.variable_size)
                sheet.paste(img, (x, y))
                shown += 1
            else:
                draw.rectangle([x, y, x + thumb - 1, y + thumb - 1], fill=(235, 235, 235))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    fs.write_atomic(fs.normalize(png), buf.getvalue())
    return len(picked), shown
