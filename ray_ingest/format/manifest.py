"""``manifest.json``: what a conversion wrote. Written last, atomically; read and checked first.

Also the names of everything in a conversion output: shards (``<split>-%05d-of-%05d.tfrecord``),
their ``.idx`` files, the rejects file, and the staging folders and the lock of runs in
progress.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from ray_ingest import fs
from ray_ingest.errors import ManifestError
from ray_ingest.format import keys

MANIFEST_NAME = "manifest.json"
REJECTS_NAME = "rejects.jsonl"
#: The rejects report of a conversion that failed where a finished output stays (a failed
#: ``--overwrite``): written beside it, removed by the next conversion that commits.
FAILED_REJECTS_NAME = "rejects.failed.jsonl"
FORMAT_NAME = "ray-ingest/tfrecord-image-classification"
#: The newest manifest version this ray-ingest writes and reads: 2 for whole-image shards
#: (``resize_mode`` "keep": each record has its own height and width, the manifest none);
#: fixed-size shards keep writing version 1, which stays readable.
FORMAT_VERSION = 2
FIXED_SIZE_VERSION = 1
READABLE_VERSIONS = (FIXED_SIZE_VERSION, FORMAT_VERSION)
#: ``resize_mode`` of whole-image shards.
KEEP = "keep"
STAGING_PREFIX = "_staging-"
#: Inside a staging folder: the finished output that an overwrite moved aside while it
#: commits (moved back if the commit fails, or by the next run if this one was killed).
PREVIOUS_NAME = "previous"
#: The one-writer lock of a conversion or writer in progress (see :mod:`ray_ingest.format.lock`).
LOCK_NAME = "_writer.lock"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
SHARD_RE = re.compile(r"^(%s)-\d{5}-of-\d{5}\.(tfrecord|idx)$" % "|".join(keys.SPLITS))


def shard_name(split: str, index: int, total: int) -> str:
    return f"{split}-{index:05d}-of-{total:05d}.tfrecord"


def index_name(shard: str) -> str:
    return shard[: -len(".tfrecord")] + ".idx" if shard.endswith(".tfrecord") else shard + ".idx"


@dataclass(frozen=True)
class ShardInfo:
    file: str
    index: str
    num_records: int
    num_bytes: int
    #: SHA-256 of the shard file, hex (conversions with checksums only).
    sha256: Optional[str] = None


@dataclass(frozen=True)
class Manifest:
    root: str
    data: Dict[str, Any]

    @property
    def encoding(self) -> str:
        return self.data["encoding"]

    @property
    def variable_size(self) -> bool:
        """Whole-image shards: every record has its own ``image/height`` / ``image/width``."""
        return self.data.get("resize_mode") == KEEP

    @property
    def height(self) -> Optional[int]:
        """The height of every image; None for whole-image shards (see the records)."""
        return None if self.data["height"] is None else int(self.data["height"])

    @property
    def width(self) -> Optional[int]:
        """The width of every image; None for whole-image shards (see the records)."""
        return None if self.data["width"] is None else int(self.data["width"])

    @property
    def max_side(self) -> Optional[int]:
        """Whole-image shards: the limit on each image's longer side (None: none)."""
        return self.data.get("max_side")

    @property
    def short_side(self) -> Optional[int]:
        """Whole-image shards: the limit on each image's shorter side (None: none)."""
        return self.data.get("short_side")

    @property
    def channels(self) -> int:
        return int(self.data["channels"])

    @property
    def class_names(self) -> List[str]:
        return list(self.data["class_names"])

    @property
    def splits(self) -> List[str]:
        return list(self.data["splits"])

    def class_counts(self, split: str) -> Optional[List[int]]:
        """Records per class id of a split, when the manifest records them."""
        self.shards(split)  # names a missing split
        counts = self.data["splits"][split].get("class_counts")
        return list(counts) if counts is not None else None

    def shards(self, split: str) -> List[ShardInfo]:
        if split not in self.data["splits"]:
            raise ManifestError(
                f"{self.path}: no split {split!r}; this dataset has {sorted(self.data['splits'])}"
            )
        return [ShardInfo(**s) for s in self.data["splits"][split]["shards"]]

    def num_records(self, split: str) -> int:
        return sum(s.num_records for s in self.shards(split))

    @property
    def path(self) -> str:
        return fs.join(self.root, MANIFEST_NAME)


_REQUIRED = ("format", "format_version", "encoding", "height", "width", "channels",
             "class_names", "splits")


def validate(data: Dict[str, Any], path: str) -> None:
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: manifest must be a JSON object")
    if data.get("format") != FORMAT_NAME:
        raise ManifestError(
            f"{path}: not a ray-ingest manifest (format {data.get('format')!r}, "
            f"expected {FORMAT_NAME!r})"
        )
    version = data.get("format_version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise ManifestError(
            f"{path}: manifest format version {version!r}; this ray-ingest reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))} (re-convert the data, or upgrade "
            "ray-ingest)"
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ManifestError(f"{path}: manifest lacks {missing}")
    if data["encoding"] not in keys.ENCODINGS:
        raise ManifestError(f"{path}: unknown encoding {data['encoding']!r}")
    _validate_sizes(data, path)
    names = data["class_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ManifestError(f"{path}: class_names must be a list of strings, got {names!r}")
    twice = sorted(n for n, c in Counter(names).items() if c > 1)
    if twice:
        raise ManifestError(f"{path}: class_names lists {twice[0]!r} more than once; each class "
                            "name names one class id")
    empty = data.get("empty_classes")
    if empty is not None and (not isinstance(empty, list) or not set(empty) <= set(names)):
        raise ManifestError(f"{path}: empty_classes must list class names, got {empty!r}")
    if not isinstance(data["splits"], dict):
        raise ManifestError(f"{path}: splits must be an object of split names")
    owner: Dict[str, str] = {}  # file name -> the split that lists it
    for split, info in data["splits"].items():
        if not isinstance(info, dict) or not isinstance(info.get("shards"), list):
            raise ManifestError(f"{path}: split {split!r} has no shard list")
        for s in info["shards"]:
            # Plain names only: a manifest can never point the reader outside its folder.
            if not isinstance(s, dict) or not all(
                SHARD_RE.match(str(s.get(k, ""))) for k in ("file", "index")
            ) or not all(isinstance(s.get(k), int) and s[k] >= 0
                         for k in ("num_records", "num_bytes")):
                raise ManifestError(f"{path}: split {split!r} lists a bad shard entry {s!r}")
            if s.get("sha256") is not None and not _SHA256_RE.match(str(s["sha256"])):
                raise ManifestError(f"{path}: split {split!r}: shard {s['file']} has a bad "
                                    f"sha256 {s['sha256']!r} (64 lowercase hex digits expected)")
            # Each file once: a shard listed twice is read twice; one in two splits leaks
            # one split into the other.
            for name in (s["file"], s["index"]):
                if name in owner:
                    where = ("twice" if owner[name] == split
                             else f"in split {owner[name]!r} and in split {split!r}")
                    raise ManifestError(f"{path}: lists {name} {where}; every shard and index "
                                        "file belongs to one split, once")
                owner[name] = split
        for total in ("num_records", "num_bytes"):
            listed = sum(s[total] for s in info["shards"])
            if total in info and info[total] != listed:
                raise ManifestError(
                    f"{path}: split {split!r} says {total} {info[total]}, its shards add up "
                    f"to {listed}")
        counts = info.get("class_counts")
        if counts is not None:  # optional: records per class id
            listed = sum(s["num_records"] for s in info["shards"])
            if (not isinstance(counts, list) or len(counts) != len(data["class_names"])
                    or not all(isinstance(c, int) and c >= 0 for c in counts)
                    or sum(counts) != listed):
                raise ManifestError(
                    f"{path}: split {split!r} has class_counts {counts!r}; expected "
                    f"{len(data['class_names'])} counts adding up to its {listed} records")


    _check_input_counts(data, path)


def _check_input_counts(data: Dict[str, Any], path: str) -> None:
    """Every input is written or rejected: ``num_inputs = num_written + num_rejected``, and
    the written records are those the splits list (when the manifest has the counts)."""
    counts = {k: data.get(k) for k in ("num_inputs", "num_written", "num_rejected")}
    if any(v is not None and (not isinstance(v, int) or v < 0) for v in counts.values()):
        raise ManifestError(f"{path}: counts must be non-negative integers, got {counts}")
    n, written, rejected = counts.values()
    if None not in (n, written, rejected) and n != written + rejected:
        raise ManifestError(f"{path}: num_inputs is {n}, but num_written {written} + "
                            f"num_rejected {rejected} = {written + rejected}")
    if written is not None:
        records = sum(s["num_records"] for info in data["splits"].values()
                      for s in info["shards"])
        if written != records:
            raise ManifestError(f"{path}: num_written is {written}, the splits list {records} "
                                "records")


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _validate_sizes(data: Dict[str, Any], path: str) -> None:
    """Fixed-size shards name their one size; whole-image shards (version 2) none, their
    limits and, when recorded, the distribution of the stored sizes."""
    if data.get("resize_mode") != KEEP:
        for k in ("height", "width"):
            if not _positive_int(data[k]):
                raise ManifestError(f"{path}: {k} is {data[k]!r}; a positive integer expected")
        return
    if data["format_version"] < FORMAT_VERSION:
        raise ManifestError(f"{path}: resize_mode {KEEP!r} needs manifest format version "
                            f"{FORMAT_VERSION}, this one says {data['format_version']}")
    for k in ("height", "width"):
        if data[k] is not None:
            raise ManifestError(f"{path}: whole-image shards have no one {k} (null expected, "
                                f"got {data[k]!r}); each record has its own")
    for k in ("max_side", "short_side"):
        if data.get(k) is not None and not _positive_int(data[k]):
            raise ManifestError(f"{path}: {k} is {data[k]!r}; a positive integer or null "
                                "expected")
    sizes = data.get("image_sizes")
    if sizes is None:
        return
    ok = isinstance(sizes, dict) and all(
        isinstance(sizes.get(k), dict)
        and all(isinstance(sizes[k].get(s), (int, type(None))) for s in ("min", "median", "max"))
        for k in ("height", "width")) and all(
        isinstance(sizes.get(k), int) and sizes[k] >= 0 for k in ("stored_as_is", "reencoded"))
    if not ok:
        raise ManifestError(f"{path}: image_sizes {sizes!r} is not {{height: {{min, median, "
                            "max}, width: {...}, stored_as_is, reencoded}")


def _median_low(counts: Mapping[int, int]) -> Optional[int]:
    n = sum(counts.values())
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if 2 * seen >= n:
            return int(value)
    return None


def image_sizes(heights: Counter, widths: Counter, stored_as_is: int,
                written: int) -> Dict[str, Any]:
    """The ``image_sizes`` entry of whole-image shards from the records written: per side the
    smallest, median (the lower one of an even count) and largest stored size; how many
    records hold their input's own bytes and how many were re-encoded."""
    def side(counts: Counter) -> Dict[str, Optional[int]]:
        values = [v for v in counts if v is not None]
        return {"min": min(values) if values else None, "median": _median_low(counts),
                "max": max(values) if values else None}

    return {"height": side(heights), "width": side(widths), "stored_as_is": int(stored_as_is),
            "reencoded": int(written - stored_as_is)}


def manifest_of(source: Union[str, "Manifest"]) -> "Manifest":
    """``source`` itself when it is a :class:`Manifest` already read (a run reads its
    manifest once and hands it on), else the manifest of the output at ``source``."""
    return source if isinstance(source, Manifest) else read_manifest(source)


def read_manifest(root: str) -> Manifest:
    root = fs.normalize(root)
    path = fs.join(root, MANIFEST_NAME)
    try:
        raw = fs.read_bytes(path)
    except (FileNotFoundError, NotADirectoryError):
        raise ManifestError(
            f"{path}: no manifest; {root} is not a finished ray-ingest conversion output"
        ) from None
    except IsADirectoryError:
        raise ManifestError(f"{path}: a folder, not a manifest file; {root} is not a finished "
                            "ray-ingest conversion output") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: not valid JSON: {e}") from None
    validate(data, path)
    return Manifest(root, data)


def header(*, source: str, encoding: str, size: int, resize_mode: str, quality: Optional[int],
           seed: int, val_fraction: float, shard_size_mb: float, class_names: Sequence[str],
           max_side: Optional[int] = None, short_side: Optional[int] = None,
           **extra: Any) -> Dict[str, Any]:
    """The fields of a manifest that a conversion knows before it writes anything (whole-image
    shards: version 2, no one height and width, their limits instead)."""
    keep = resize_mode == KEEP
    limits = {"max_side": max_side, "short_side": short_side} if keep else {}
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION if keep else FIXED_SIZE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": source,
        "encoding": encoding,
        "height": None if keep else size,
        "width": None if keep else size,
        "channels": 3,
        "resize_mode": resize_mode,
        **limits,
        "quality": quality if encoding == keys.FORMAT_JPEG else None,
        "seed": seed,
        "val_fraction": val_fraction,
        "shard_size_mb": shard_size_mb,
        "class_names": list(class_names),
        "feature_keys": dict(keys.FEATURE_KEYS),
        **extra,
    }


def split_entry(shards: Sequence[Dict[str, Any]],
                class_counts: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """A split's manifest entry from its shard entries (``file``, ``index``, ``num_records``,
    ``num_bytes``), with the totals and, when given, the records per class id."""
    entry = {"num_records": sum(e["num_records"] for e in shards),
             "num_bytes": sum(e["num_bytes"] for e in shards)}
    if class_counts is not None:
        entry["class_counts"] = [int(c) for c in class_counts]
    entry["shards"] = list(shards)
    return entry


def write_manifest(root: str, data: Dict[str, Any]) -> None:
    validate(data, fs.join(root, MANIFEST_NAME))
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    fs.write_atomic(fs.join(root, MANIFEST_NAME), text.encode("utf-8"))
