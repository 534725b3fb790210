"""Verifying a conversion output against its manifest, by reading every byte of it.

Per shard, in this order (the first problem found is raised, naming the file and where):

1. the framing and both CRCs of every record (:func:`~ray_ingest.format.framing.scan_records`:
   the byte offset of the first bad record);
2. the size and record count that the manifest lists (a file cut at a record boundary, or
   one that goes on past it);
3. the ``.idx`` beside it: one ``offset length`` line per record, as the shard holds them;
4. every record: a ``tf.train.Example`` with our features, whose encoding, height, width,
   channels, class id and class name agree with the manifest; raw pixels of the right size;
   a JPEG header of the manifest's size (whole-image shards: of the record's own size, within
   the manifest's limits, with the record's number of components);
5. the shard's ``sha256``, when its manifest entry has one (a file rewritten with valid
   framing).

Then per split the records per class (``class_counts``), the stored sizes against the
manifest's ``image_sizes`` (whole-image shards), and the rejects file against the manifest's
reject counts. Shards are checked by a few threads of this process (no Ray), in
manifest order.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ray_ingest import fs
from ray_ingest.errors import (
    ExampleDecodeError,
    ManifestError,
    RecordCorruptError,
    RecordMismatchError,
)
from ray_ingest.format import keys
from ray_ingest.format.example import parse_example, split_encoded
from ray_ingest.format.framing import OVERHEAD, read_index, scan_records
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


def _mismatch(path: str, rec_no: int, offset: int, what: str, got, want) -> RecordMismatchError:
    return RecordMismatchError(f"{path}: record {rec_no} at byte offset {offset}: {what} is "
                               f"{got!r}, the manifest says {want!r}")


def _check_record(view, path: str, rec_no: int, offset: int, m: Manifest) -> Tuple[int, int, int]:
    """Checks one record against the manifest; returns its class id, height and width."""
    split = split_encoded(view)
    try:
        if split is not None:
            f, payload = split[0].feature, split[1]
        else:
            f = parse_example(view).features.feature
            payload = memoryview(f[keys.ENCODED].bytes_list.value[0])
        fmt = f[keys.FORMAT].bytes_list.value[0].decode("utf-8", "replace")
        h = f[keys.HEIGHT].int64_list.value[0]
        w = f[keys.WIDTH].int64_list.value[0]
        label = f[keys.LABEL].int64_list.value[0]
        channels = f[keys.CHANNELS].int64_list.value[0] if keys.CHANNELS in f else m.channels
        text = (f[keys.CLASS_TEXT].bytes_list.value[0].decode("utf-8", "replace")
                if keys.CLASS_TEXT in f else None)
    except (ExampleDecodeError, IndexError) as e:
        raise ExampleDecodeError(f"{path}: record {rec_no} at byte offset {offset}: not one of "
                                 f"our image records ({e or 'a feature is missing'})") from None
    if fmt != m.encoding:
        raise _mismatch(path, rec_no, offset, keys.FORMAT, fmt, m.encoding)
    if m.variable_size:
        _check_whole_size(path, rec_no, offset, m, h, w, channels)
    elif (h, w, channels) != (m.height, m.width, m.channels):
        raise _mismatch(path, rec_no, offset, "height x width x channels", (h, w, channels),
                        (m.height, m.width, m.channels))
    names = m.class_names
    if not 0 <= label < len(names):
        raise _mismatch(path, rec_no, offset, keys.LABEL, label, f"0..{len(names) - 1}")
    if text is not None and text != names[label]:
        raise _mismatch(path, rec_no, offset, f"{keys.CLASS_TEXT} of class {label}", text,
                        names[label])
    if m.encoding == keys.FORMAT_RAW:
        if len(payload) != h * w * channels:
            raise _mismatch(path, rec_no, offset, "raw pixel bytes", len(payload),
                            h * w * channels)
    else:
        import simplejpeg

        try:
            jh, jw, colorspace, _ = simplejpeg.decode_jpeg_header(payload)
        except ValueError as e:
            raise ExampleDecodeError(f"{path}: record {rec_no} at byte offset {offset}: "
                                     f"unreadable JPEG header: {e}") from None
        if (jh, jw) != (h, w):
            raise _mismatch(path, rec_no, offset, "JPEG size", (jh, jw), (h, w))
        if m.variable_size and (1 if colorspace == "Gray" else 3) != channels:
            raise RecordMismatchError(f"{path}: record {rec_no} at byte offset {offset}: "
                                      f"{keys.CHANNELS} is {channels}, its JPEG is {colorspace}")
    return label, h, w


def _check_whole_size(path: str, rec_no: int, offset: int, m: Manifest, h: int, w: int,
                      channels: int) -> None:
    """A whole-image record's own size: positive, within the manifest's limits."""
    where = f"{path}: record {rec_no} at byte offset {offset}"
    if h < 1 or w < 1 or channels not in (1, 3):
        raise RecordMismatchError(f"{where}: height x width x channels is {(h, w, channels)}; "
                                  "positive sizes and 1 or 3 channels expected")
    for name, limit, side in (("max_side", m.max_side, max(h, w)),
                              ("short_side", m.short_side, min(h, w))):
        if limit is not None and side > limit:
            raise RecordMismatchError(f"{where}: {h}x{w} exceeds the manifest's {name} {limit}")


def _check_index(path: str, idx_path: str, offsets: List[Tuple[int, int]]) -> None:
    try:
        entries = read_index(fs.read_bytes(idx_path).decode("ascii", "replace"), idx_path)
    except FileNotFoundError:
        raise ManifestError(f"{idx_path}: listed in the manifest but missing") from None
    for i, (want, got) in enumerate(zip(offsets, entries)):
        if want != got:
            raise ManifestError(f"{idx_path}: line {i + 1} says record {i} is at byte offset "
                                f"{got[0]} and {got[1]} bytes long; {path} has it at "
                                f"{want[0]}, {want[1]} bytes")
    if len(entries) != len(offsets):
        raise ManifestError(f"{idx_path}: {len(entries)} index lines for the "
                            f"{len(offsets)} records of {path}")


def check_digest(path: str, data: bytes, want: Optional[str]) -> bool:
    """Checks a shard's bytes against the ``sha256`` of its manifest entry, when it has one
    (True if checked)."""
    if not want:
        return False
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise ManifestError(f"{path}: sha256 is {got}, the manifest says {want}: the file "
                            "changed after it was written")
    return True


def verify_shard(m: Manifest, split: str, shard: ShardInfo) -> ShardReport:
    """Reads one shard and checks it (and its index) against its manifest entry."""
    path = fs.join(m.root, shard.file)
    try:
        data = fs.read_bytes(path)
    except FileNotFoundError:
        raise ManifestError(f"{path}: listed in the manifest but missing") from None
    views, _ = scan_records(data, path=path)
    want_n, want_bytes = shard.num_records, shard.num_bytes
    if len(data) < want_bytes or len(views) < want_n:
        raise RecordCorruptError(
            path, len(data), f"the file ends after {len(views)} records ({len(data)} bytes); "
                             f"the manifest says {want_n} records, {want_bytes} bytes (truncated)")
    if len(data) > want_bytes or len(views) > want_n:
        raise RecordCorruptError(
            path, want_bytes, f"the file goes on past the manifest's {want_n} records, "
                              f"{want_bytes} bytes ({len(views)} records, {len(data)} bytes)")
    offsets, pos = [], 0
    for v in views:
        offsets.append((pos, len(v) + OVERHEAD))
        pos += len(v) + OVERHEAD
    _check_index(path, fs.join(m.root, shard.index), offsets)
    checked = [_check_record(v, path, i, offsets[i][0], m) for i, v in enumerate(views)]
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
    bar = Progress("verify", total=total, unit="records", enabled=progress)
    with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
        try:
            for report in pool.map(lambda job: verify_shard(m, *job), work):
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
