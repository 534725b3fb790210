"""Adopting TFRecord shards written elsewhere (TensorFlow's ``TFRecordWriter``, another
converter) so that the reader streams them: each file is checked record by record, linked
(or copied) into a folder under our shard names with its ``.idx``, and a manifest is written
last.

What the reader needs of a record are the standard image keys (:mod:`keys`): ``image/encoded``,
``image/format`` (``jpeg`` or ``raw``), ``image/height``, ``image/width`` and
``image/class/label``, the same size and format in every record. A foreign index beside a
file (``<file>.idx``, or ``<stem>.idx`` as DALI's ``tfrecord2idx`` users often name it) must
list the same records as the file holds; ours is written from the scan either way.
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Sequence, Tuple

from ray_ingest import fs
from ray_ingest.errors import ConfigError, ExampleDecodeError, ManifestError
from ray_ingest.format import keys
from ray_ingest.format.check import check_index, record_extents
from ray_ingest.format.example import parse_example
from ray_ingest.format.framing import index_lines, scan_records
from ray_ingest.format.manifest import (
    Manifest,
    header,
    index_name,
    read_manifest,
    shard_name,
    split_entry,
    write_manifest,
)


def _value(f, key: str, kind: str, path: str, rec_no: int):
    values = getattr(f[key], kind).value if key in f else ()
    if len(values) != 1:
        raise ExampleDecodeError(f"{path}: record {rec_no}: feature {key!r} must hold one "
                                 f"value, holds {len(values)}")
    return values[0]


def _foreign_index(path: str) -> Optional[str]:
    stem = os.path.splitext(path)[0]
    return next((p for p in (path + ".idx", stem + ".idx") if p != path and fs.exists(p)), None)


def _place(src: str, dst: str, data: bytes) -> None:
    """``dst`` holds ``src``'s bytes: a hard link on one local file system, else a copy."""
    if not fs.is_uri(src) and not fs.is_uri(dst):
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    fs.write_atomic(dst, data)


class _Shape:
    """The format, size and class texts every record of the adopted files must agree on."""

    def __init__(self):
        self.first: Optional[Tuple[str, int, int]] = None
        self.texts: Dict[int, str] = {}

    def check(self, view, path: str, rec_no: int) -> int:
        f = parse_example(view).features.feature
        _value(f, keys.ENCODED, "bytes_list", path, rec_no)
        fmt = _value(f, keys.FORMAT, "bytes_list", path, rec_no).decode(errors="replace")
        shape = (fmt, int(_value(f, keys.HEIGHT, "int64_list", path, rec_no)),
                 int(_value(f, keys.WIDTH, "int64_list", path, rec_no)))
        label = int(_value(f, keys.LABEL, "int64_list", path, rec_no))
        if fmt not in keys.ENCODINGS:
            raise ExampleDecodeError(f"{path}: record {rec_no}: {keys.FORMAT} is {fmt!r}, "
                                     f"expected one of {keys.ENCODINGS}")
        if self.first is None:
            self.first = shape
        elif shape != self.first:
            raise ManifestError(f"{path}: record {rec_no}: (format, height, width) is {shape}, "
                                f"the first record's is {self.first}: a dataset holds one "
                                "size (convert the images with `ray-ingest convert`)")
        if label < 0:
            raise ExampleDecodeError(f"{path}: record {rec_no}: negative label {label}")
        text = f[keys.CLASS_TEXT].bytes_list.value if keys.CLASS_TEXT in f else ()
        if len(text) == 1:
            self.texts.setdefault(label, text[0].decode("utf-8", "replace"))
        return label


def adopt_tfrecords(out: str, splits: Dict[str, Sequence[str]],
                    class_names: Optional[Sequence[str]] = None) -> Manifest:
    """Makes ``out`` a dataset the reader streams from the TFRecord files of each split
    (``{"train": [paths], "val": [...]}``, in order). Every record's CRC and image features are
    checked; class names are ``class_names``, else each label's ``image/class/text``, else the
    label's number. Returns the manifest, written last."""
    unknown = sorted(set(splits) - set(keys.SPLITS))
    if unknown or not splits:
        raise ConfigError(f"splits must be among {keys.SPLITS}, got {sorted(splits)}")
    if fs.exists(fs.join(out, "manifest.json")):
        raise ConfigError(f"{out} already holds a dataset")
    shape, entries, counts = _Shape(), {}, {}
    for split, files in splits.items():
        shards = []
        for i, src in enumerate(files):
            try:
                data = fs.read_bytes(src)
            except FileNotFoundError:
                raise ConfigError(f"{src}: no such TFRecord file") from None
            views, _ = scan_records(data, path=src, verify=True)
            for rec_no, v in enumerate(views):
                label = shape.check(v, src, rec_no)
                counts.setdefault(split, {}).setdefault(label, 0)
                counts[split][label] += 1
            index = record_extents(views)
            idx = _foreign_index(src)
            if idx is not None:
                check_index(idx, src, index)
            name = shard_name(split, i, len(files))
            fs.makedirs(out)  # once the first file has been checked
            _place(src, fs.join(out, name), data)
            fs.write_atomic(fs.join(out, index_name(name)), index_lines(index).encode())
            shards.append({"file": name, "index": index_name(name), "num_records": len(views),
                           "num_bytes": len(data)})
        entries[split] = shards
    if shape.first is None:
        raise ConfigError("the files hold no records")
    labels = max(max(c) for c in counts.values() if c) + 1
    names = list(class_names) if class_names is not None else [
        shape.texts.get(k, str(k)) for k in range(labels)]
    if len(names) < labels:
        raise ConfigError(f"{len(names)} class names for labels up to {labels - 1}")
    fmt, height, width = shape.first
    first_file = next(iter(splits.values()))[0]
    data = header(source=f"adopted TFRecord files ({first_file}, ...)", encoding=fmt, size=height, resize_mode="adopted", quality=None, seed=0,
                  val_fraction=0.0, shard_size_mb=0.0, class_names=names, adopted=True)
    data["width"] = width
    data["splits"] = {s: split_entry(entries[s], [counts.get(s, {}).get(k, 0)
                                                  for k in range(len(names))])
                      for s in entries}
    write_manifest(out, data)
    return read_manifest(out)
