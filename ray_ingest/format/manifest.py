"""``manifest.json``: what a conversion wrote. Written last, atomically; read and checked first.

Also the names of everything in a conversion output: shards (``<split>-%05d-of-%05d.tfrecord``),
their ``.idx`` files, the rejects file, and the staging folders and the lock of runs in
progress.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from ray_ingest import fs
from ray_ingest.errors import ManifestError
from ray_ingest.format import keys

MANIFEST_NAME = "manifest.json"
REJECTS_NAME = "rejects.jsonl"
FORMAT_NAME = "ray-ingest/tfrecord-image-classification"
FORMAT_VERSION = 1
#: Versions this ray-ingest reads: 1 (fixed-size images), 2 (also whole images of their own
#: sizes, ``"resize_mode": "keep"``).
FORMAT_VERSIONS = (1, 2)
STAGING_PREFIX = "_staging-"
#: The one-writer lock of a conversion in progress (see :mod:`ray_ingest.convert.lock`).
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
        """Whole images of their own sizes (each record has its own height and width)."""
        return self.data.get("resize_mode") == "keep"

    @property
    def height(self) -> Optional[int]:
        """Every record's height; None for whole-image shards."""
        h = self.data["height"]
        return None if h is None else int(h)

    @property
    def width(self) -> Optional[int]:
        """Every record's width; None for whole-image shards."""
        w = self.data["width"]
        return None if w is None else int(w)

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
    if data.get("format_version") not in FORMAT_VERSIONS:
        raise ManifestError(
            f"{path}: manifest format version {data.get('format_version')!r}; this ray-ingest "
            f"reads versions {', '.join(map(str, FORMAT_VERSIONS))} (re-convert the data, or "
            f"use a matching ray-ingest)"
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ManifestError(f"{path}: manifest lacks {missing}")
    if data["encoding"] not in keys.ENCODINGS:
        raise ManifestError(f"{path}: unknown encoding {data['encoding']!r}")
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


def read_manifest(root: str) -> Manifest:
    root = fs.normalize(root)
    path = fs.join(root, MANIFEST_NAME)
    try:
        raw = fs.read_bytes(path)
    except FileNotFoundError:
        raise ManifestError(
            f"{path}: no manifest; {root} is not a finished ray-ingest conversion output"
        ) from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: not valid JSON: {e}") from None
    validate(data, path)
    return Manifest(root, data)


def header(*, source: str, encoding: str, size: int, resize_mode: str, quality: Optional[int],
           seed: int, val_fraction: float, shard_size_mb: float, class_names: Sequence[str],
           **extra: Any) -> Dict[str, Any]:
    """The fields of a manifest that a conversion knows before it writes anything."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": source,
        "encoding": encoding,
        "height": size,
        "width": size,
        "channels": 3,
        "resize_mode": resize_mode,
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
