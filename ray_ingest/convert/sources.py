"""What to convert: a class-folder tree, or a CSV/JSONL list of ``path,label``.

Both give a list of :class:`Input` (where to read it, its name relative to the source, its
label) plus the class names, and assign each input to ``train`` or ``val`` by a stable hash of
its relative name and the seed, so that re-running gives the same split.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import posixpath
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from ray_ingest import fs
from ray_ingest.errors import SourceError
from ray_ingest.format.keys import SPLITS

IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .jfif .png .gif .bmp .dib .tif .tiff .webp .ppm .pgm .pbm .pnm".split()
)
LIST_EXTENSIONS = (".csv", ".jsonl", ".ndjson")


@dataclass(frozen=True)
class Input:
    path: str  # absolute local path or URI to read
    relpath: str  # name relative to SRC, stored as image/filename
    label: int


@dataclass
class Listing:
    inputs: List[Input]
    class_names: List[str]
    #: Files under SRC that were not taken, with why (not images by extension, outside a
    #: class folder): reported, never silently dropped.
    ignored: List[Tuple[str, str]] = field(default_factory=list)


def list_source(src: str) -> Listing:
    src = fs.normalize(src)
    if src.lower().endswith(LIST_EXTENSIONS):
        if not fs.exists(src):
            raise SourceError(f"{src}: list file not found")
        return _list_file(src)
    if not fs.isdir(src):
        raise SourceError(
            f"{src}: not a directory of class folders nor a .csv/.jsonl list (or does not exist)"
        )
    return _list_tree(src)


def _list_tree(src: str) -> Listing:
    files = fs.walk_files(src)
    ignored: List[Tuple[str, str]] = []
    taken: List[Tuple[str, str]] = []  # (relpath, class name)
    for rel, _size in files:
        name = posixpath.basename(rel)
        if name.startswith("."):
            ignored.append((rel, "hidden file"))
            continue
        if "/" not in rel:
            if posixpath.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                ignored.append((rel, "image outside any class folder"))
            else:
                ignored.append((rel, "not an image file by its extension"))
            continue
        if posixpath.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
            ignored.append((rel, "not an image file by its extension"))
            continue
        taken.append((rel, rel.split("/", 1)[0]))
    names = sorted({c for _, c in taken})
    if not names:
        raise SourceError(f"{src}: no class folders with image files found")
    ids = {c: i for i, c in enumerate(names)}
    inputs = [Input(fs.join(src, rel), rel, ids[c]) for rel, c in taken]
    return Listing(inputs, names, ignored)


def _read_list_rows(path: str) -> List[Tuple[int, str, str]]:
    """``[(line number, path, label)]`` from a CSV (header optional) or JSONL file."""
    text = fs.read_bytes(path).decode("utf-8-sig")
    rows = []
    if path.lower().endswith(".csv"):
        reader = csv.reader(io.StringIO(text))
        for lineno, row in enumerate(reader, 1):
            if not row or all(not c.strip() for c in row):
                continue
            if lineno == 1 and [c.strip().lower() for c in row[:2]] == ["path", "label"]:
                continue
            if len(row) < 2:
                raise SourceError(f"{path}:{lineno}: expected 'path,label', got {row!r}")
            rows.append((lineno, row[0].strip(), row[1].strip()))
    else:
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise SourceError(f"{path}:{lineno}: not valid JSON: {e}") from None
            if not isinstance(obj, dict) or "path" not in obj or "label" not in obj:
                raise SourceError(f"{path}:{lineno}: expected an object with 'path' and 'label'")
            rows.append((lineno, str(obj["path"]), str(obj["label"])))
    return rows


def _list_file(path: str) -> Listing:
    rows = _read_list_rows(path)
    if not rows:
        raise SourceError(f"{path}: the list is empty")
    base = posixpath.dirname(path) if fs.is_uri(path) else os.path.dirname(path)
    labels = [label for _, _, label in rows]
    for lineno, p, label in rows:
        if not p:
            raise SourceError(f"{path}:{lineno}: empty path")
        if not label:
            raise SourceError(f"{path}:{lineno}: empty label")
    if all(label.isdigit() for label in labels):
        # Integer labels are class ids; names are their decimal strings.
        names = [str(i) for i in range(max(int(x) for x in labels) + 1)]
        ids: Dict[str, int] = {label: int(label) for label in labels}
    else:
        names = sorted(set(labels))
        ids = {c: i for i, c in enumerate(names)}
    inputs = []
    seen: Dict[str, int] = {}
    for lineno, p, label in rows:
        if fs.is_uri(p) or p.startswith("/"):
            full, rel = fs.normalize(p), p
        else:
            full, rel = fs.join(base, p), p
        if rel in seen:
            raise SourceError(
                f"{path}:{lineno}: {p!r} is listed twice (first on line {seen[rel]}); "
                "each input must appear once"
            )
        seen[rel] = lineno
        inputs.append(Input(full, rel, ids[label]))
    return Listing(inputs, names, [])


def split_of(relpath: str, seed: int, val_fraction: float) -> str:
    """``"val"`` for a stable ``val_fraction`` of names, else ``"train"``."""
    train, val = SPLITS
    if val_fraction <= 0:
        return train
    digest = hashlib.blake2b(f"{seed}\0{relpath}".encode("utf-8"), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2.0**64
    return val if u < val_fraction else train
