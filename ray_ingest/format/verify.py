"""Verifying a conversion output against its manifest, by reading every byte of it.

Per shard, in this order (the first problem found is raised, naming the file and where), with
the checks of :mod:`ray_ingest.format.check`:

1. the framing and both CRCs of every record (:func:`~ray_ingest.format.check.scan_shard`:
   the byte offset of the first bad record);
2. the size and record count that the manifest lists (a file cut at a record boundary, or
   one that goes on past it);
3. the ``.idx`` beside it: one ``offset length`` line per record, as the shard holds them
   (:func:`~ray_ingest.format.check.check_index`);
4. every record (:func:`~ray_ingest.format.check.check_record`, thorough): a
   ``tf.train.Example`` with our features, whose encoding, height, width, channels, class id
   and class name agree with the manifest; raw pixels of the right size; a JPEG header of the
   manifest's size (whole-image shards: of the record's own size, within the manifest's
   limits, with the record's number of components);
5. the shard's ``sha256``, when its manifest entry has one (a file rewritten with valid
   framing; :func:`~ray_ingest.format.check.check_digest`).

Then per split the records per class (``class_counts``), the stored sizes against the
manifest's ``image_sizes`` (whole-image shards), and the rejects file against the manifest's
reject counts. Shards are checked by a few threads of this process (no Ray), in
manifest order.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ray_ingest import fs
from ray_ingest.errors import ManifestError
from ray_ingest.format.check import (
    RecordSpec,
    check_digest,
    check_index,
    check_record,
    read_listed,
    scan_shard,
)
from ray_ingest.format.jsonl import json_objects
from ray_ingest.format.manifest import (
    FAILED_REJECTS_NAME,
    REJECTS_NAME,
    SHARD_RE,
    STAGING_PREFIX,
    Manifest,
    ShardInfo,
    image_sizes,
    read_manifest,
)
from ray_ingest.progress import Progress, plural


@dataclass
class ShardReport:
    split: str
    file: str
    num_records: int
    num_bytes: int
    #: Records per class id.
    class_counts: List[int]
    sha256_checked: bool = False
    #: Records per stored height, per stored width.
    heights: Counter = field(default_factory=Counter)
    widths: Counter = field(default_factory=Counter)


@dataclass
class VerifyReport:
    root: str
    shards: List[ShardReport]
    seconds: float
    #: Things that are not errors but that a user should know (files the manifest does not
    #: list, leftovers of an interrupted run).
    notes: List[str] = field(default_factory=list)

    def class_counts(self, split: str) -> List[int]:
        counts = [s.class_counts for s in self.shards if s.split == split]
        return [int(x) for x in np.sum(counts, axis=0)] if counts else []

    @property
    def num_records(self) -> int:
        return sum(s.num_records for s in self.shards)

    @property
    def num_bytes(self) -> int:
        return sum(s.num_bytes for s in self.shards)

    def summary_line(self) -> str:
        hashed = sum(s.sha256_checked for s in self.shards)
        what = "framing, CRCs, indexes, records" + (f", sha256 of {hashed}" if hashed else "")
        return (f"verify: OK, {plural(len(self.shards), 'shard')}, "
                f"{plural(self.num_records, 'record')}, "
                f"{self.num_bytes / 1e6:.1f} MB in {self.seconds:.1f} s ({what}; manifest "
                "agrees)")


def read_rejects(root: str) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """``(rejected inputs, ignored files)`` from a conversion's ``rejects.jsonl`` (empty lists
    when there is none); a malformed line raises naming the file and line."""
    path = fs.join(fs.normalize(root), REJECTS_NAME)
    try:
        text = fs.read_bytes(path).decode("utf-8")
    except FileNotFoundError:
        return [], []
    rejects, ignored = [], []
    for _, entry in json_objects(text, path, ("path", "reason"), ManifestError):
        (ignored if entry.get("ignored") else rejects).append(entry)
    return rejects, ignored


# ---------------------------------------------------------------------------------------------
# One shard.


def verify_shard(m: Manifest, split: str, shard: ShardInfo,
                 spec: Optional[RecordSpec] = None) -> ShardReport:
    """Reads one shard and checks it (and its index) against its manifest entry and every
    record against ``spec`` (None: the manifest's), thoroughly."""
    spec = spec or RecordSpec.of(m)
    path = fs.join(m.root, shard.file)
    data = read_listed(path)
    views, extents = scan_shard(path, data, shard)
    check_index(fs.join(m.root, shard.index), path, extents)
    checked = [check_record(v, spec, path, i, extents[i][0], thorough=True)[1:4]
               for i, v in enumerate(views)]
    labels = np.fromiter((c[0] for c in checked), dtype=np.int64, count=len(views))
    hashed = check_digest(path, data, shard.sha256)
    counts = np.bincount(labels, minlength=len(m.class_names))
    return ShardReport(split, shard.file, len(views), len(data),
                       [int(c) for c in counts], hashed, Counter(c[1] for c in checked),
                       Counter(c[2] for c in checked))


# ---------------------------------------------------------------------------------------------
# The whole output.


def _check_totals(m: Manifest, report: VerifyReport) -> None:
    for split in m.splits:
        want = m.class_counts(split)
        got = report.class_counts(split)
        if want is not None and got and want != got:
            diff = [(m.class_names[c], w, g) for c, (w, g) in enumerate(zip(want, got)) if w != g]
            raise ManifestError(
                f"{m.path}: split {split!r} lists class_counts that its records disagree with "
                "(class, manifest, records): " + ", ".join(map(str, diff[:5])))
    sizes = m.data.get("image_sizes") if m.variable_size else None
    if m.variable_size and sizes is None:
        raise ManifestError(f"{m.path}: whole-image shards (resize_mode 'keep') but no "
                            "image_sizes; every whole-image conversion records it")
    if sizes:
        heights, widths = Counter(), Counter()
        for s in report.shards:
            heights.update(s.heights)
            widths.update(s.widths)
        got = image_sizes(heights, widths, 0, 0)
        for side in ("height", "width"):
            if got[side] != sizes[side]:
                raise ManifestError(f"{m.path}: image_sizes says {side} {sizes[side]}, the "
                                    f"records have {got[side]}")
        if sizes["stored_as_is"] + sizes["reencoded"] != report.num_records:
            raise ManifestError(f"{m.path}: image_sizes counts {sizes['stored_as_is']} stored "
                                f"as they are + {sizes['reencoded']} re-encoded, the shards "
                                f"hold {report.num_records} records")
    written = m.data.get("num_written")
    if written is not None and written != report.num_records:
        raise ManifestError(f"{m.path}: num_written is {written}, the shards hold "
                            f"{report.num_records} records")


def _check_empty_classes(m: Manifest, report: VerifyReport) -> None:
    """The classes without a record are those the manifest says (``empty_classes``): a class
    name added to the manifest, or one whose records went missing, is found here."""
    totals = np.zeros(len(m.class_names), dtype=np.int64)
    for split in m.splits:
        counts = report.class_counts(split)
        if counts:
            totals += np.asarray(counts, dtype=np.int64)
    empty = [name for name, n in zip(m.class_names, totals) if n == 0]
    want = m.data.get("empty_classes")
    if want is not None and sorted(want) != sorted(empty):
        raise ManifestError(f"{m.path}: empty_classes is {want}, but the classes without a "
                            f"record are {empty}")
    if want is None and empty:
        report.notes.append(f"{m.path}: classes without a record: {', '.join(empty[:10])}")


def _check_rejects(m: Manifest) -> None:
    rejects, ignored = read_rejects(m.root)
    path = fs.join(m.root, REJECTS_NAME)
    want = m.data.get("num_rejected")
    if want is not None and want != len(rejects):
        raise ManifestError(f"{path}: {len(rejects)} rejected inputs, the manifest says {want}")
    want = m.data.get("num_ignored")
    if want is not None and want != len(ignored):
        raise ManifestError(f"{path}: {len(ignored)} ignored files, the manifest says {want}")
    want = m.data.get("reject_reasons")
    got = dict(sorted(Counter(r["reason"] for r in rejects).items()))
    if want is not None and want != got:
        raise ManifestError(f"{path}: reject reasons {got}, the manifest says {want}")


def _notes(m: Manifest) -> List[str]:
    listed = {name for split in m.splits for s in m.shards(split) for name in (s.file, s.index)}
    notes = []
    for name in fs.list_dir(m.root):
        if SHARD_RE.match(name) and name not in listed:
            notes.append(f"{fs.join(m.root, name)}: a shard file the manifest does not list")
        elif name == FAILED_REJECTS_NAME:
            notes.append(f"{fs.join(m.root, name)}: the rejects of a later conversion into this "
                         "folder that did not commit (this output is the earlier one)")
        elif name.startswith(STAGING_PREFIX):
            notes.append(f"{fs.join(m.root, name)}: left by an interrupted conversion (the next "
                         "conversion into this folder removes it)")
    return notes


def verify_output(root: str, *, threads: int = 4, progress: bool = True) -> VerifyReport:
    """Reads every shard of a conversion output and checks it against the manifest.

    Raises :class:`RecordCorruptError` (file and byte offset) or :class:`ManifestError` (file,
    record or line) at the first problem in manifest order; returns what it counted.
    """
    started = time.monotonic()
    m = read_manifest(root)
    work = [(split, shard) for split in m.splits for shard in m.shards(split)]
    total = sum(shard.num_records for _, shard in work)
    shards: List[ShardReport] = []
    spec = RecordSpec.of(m)
    bar = Progress("verify", total=total, unit="records", enabled=progress)
    with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
        try:
            for report in pool.map(lambda job: verify_shard(m, *job, spec), work):
                shards.append(report)
                bar.update(report.num_records)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            bar.close("verify: stopped at the first problem")
            raise
    bar.close()
    report = VerifyReport(m.root, shards, time.monotonic() - started, _notes(m))
    _check_totals(m, report)
    _check_empty_classes(m, report)
    _check_rejects(m)
    return report
