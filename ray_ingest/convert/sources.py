"""What to convert: a class-folder tree, or a CSV/JSONL list of ``path,label``.

Both give a list of :class:`Input` (where to read it, its name relative to the source, its
label) plus the class names, one input per real file, and assign each input to ``train`` or
``val`` by a stable hash of its relative name and the seed, so that re-running gives the same
split.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import posixpath
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ray_ingest import fs
from ray_ingest.errors import SourceError
from ray_ingest.format.jsonl import json_objects
from ray_ingest.format.keys import SPLITS

IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .jfif .png .gif .bmp .dib .tif .tiff .webp .ppm .pgm .pbm .pnm".split()
)
LIST_EXTENSIONS = (".csv", ".jsonl", ".ndjson")


#: Why a file under SRC was not taken (the listing's own reasons; those of links and folders
#: come from :func:`ray_ingest.fs.walk_files`).
R_HIDDEN = "hidden-file"
R_HIDDEN_FOLDER = fs.HIDDEN_FOLDER
R_NO_CLASS = "outside-class-folder"
R_NOT_IMAGE = "not-an-image-extension"
R_DUPLICATE = fs.DUPLICATE


@dataclass(frozen=True)
class Input:
    path: str  # where to read it: its real path (local) or normalised URI, also its identity
    relpath: str  # its normalised name relative to SRC (or the list), stored as image/filename
    label: int


@dataclass
class Listing:
    inputs: List[Input]
    class_names: List[str]
    #: What was not taken, with why (not images by extension, outside a class folder,
    #: symlink loops, links leaving SRC, duplicates): reported, never silently dropped.
    ignored: List[fs.Skipped] = field(default_factory=list)


def list_source(src: str, *, follow_links: bool = False,
                num_classes: Optional[int] = None) -> Listing:
    """The inputs of SRC, one per real file: a file reached under several names (links,
    ``./a.jpg`` and ``a.jpg``) is taken once, under its first name in listing order, and the
    others are reported as duplicates. ``num_classes`` fixes the number of classes (integer
    labels may then leave ids unused)."""
    src = fs.normalize(src)
    if src.lower().endswith(LIST_EXTENSIONS):
        if not fs.exists(src):
            raise SourceError(f"{src}: list file not found")
        return _list_file(src, num_classes)
    if not fs.isdir(src):
        raise SourceError(
            f"{src}: not a directory of class folders nor a .csv/.jsonl list (or does not exist)"
        )
    return _list_tree(src, follow_links, num_classes)


def _list_tree(src: str, follow_links: bool, num_classes: Optional[int]) -> Listing:
    walk = fs.walk_files(src, follow_links=follow_links)
    ignored = list(walk.skipped)
    taken: List[Tuple[str, str, str]] = []  # (relpath, identity, class name)
    for rel, real in walk.files:
        name = posixpath.basename(rel)
        is_image = posixpath.splitext(name)[1].lower() in IMAGE_EXTENSIONS
        if name.startswith("."):
            ignored.append(fs.Skipped(rel, R_HIDDEN, "hidden file"))
        elif not is_image:
            ignored.append(fs.Skipped(rel, R_NOT_IMAGE, "not an image file by its extension"))
        elif "/" not in rel:
            ignored.append(fs.Skipped(rel, R_NO_CLASS, "image outside any class folder"))
        else:
            taken.append((rel, real, rel.split("/", 1)[0]))
    names = sorted({c for _, _, c in taken})
    if not names:
        raise SourceError(f"{src}: no class folders with image files found")
    if num_classes is not None and num_classes != len(names):
        raise SourceError(f"{src}: {len(names)} class folders, but --num-classes is {num_classes}")
    ids = {c: i for i, c in enumerate(names)}
    inputs = _dedupe([(Input(real, rel, ids[c]), rel) for rel, real, c in taken], names, ignored)
    return Listing(inputs, names, ignored)


def _dedupe(candidates: List[Tuple[Input, str]], class_names: List[str],
            ignored: List[fs.Skipped]) -> List[Input]:
    """Keeps the first input of each identity; reports the others (``where``: how to find
    each in the source) as duplicates naming the kept one."""
    kept: Dict[str, Tuple[Input, str]] = {}
    inputs = []
    for item, where in candidates:
        first = kept.setdefault(item.path, (item, where))
        if first[0] is item:
            inputs.append(item)
            continue
        message = ("" if where == item.relpath else f"{where}: ") + \
            f"the same file as {first[1]} (kept)"
        if first[0].label != item.label:
            message += (f"; labels differ: {class_names[item.label]!r} here, "
                        f"{class_names[first[0].label]!r} kept")
        ignored.append(fs.Skipped(item.relpath, R_DUPLICATE, message))
    return inputs


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
        for lineno, obj in json_objects(text, path, ("path", "label"), SourceError):
            rows.append((lineno, str(obj["path"]), str(obj["label"])))
    return rows


def _list_file(path: str, num_classes: Optional[int]) -> Listing:
    rows = _read_list_rows(path)
    if not rows:
        raise SourceError(f"{path}: the list is empty")
    for lineno, p, label in rows:
        if not p:
            raise SourceError(f"{path}:{lineno}: empty path")
        if not label:
            raise SourceError(f"{path}:{lineno}: empty label")
    base = posixpath.dirname(path) if fs.is_uri(path) else os.path.dirname(path)
    located = []  # (row, its identity, its normalised name)
    ignored: List[fs.Skipped] = []
    for lineno, p, label in rows:
        if fs.is_uri(p):
            full = rel = fs.canonical(p)
        else:
            # Normalised name: 'a.jpg', './a.jpg' and 'x/../a.jpg' are all 'a.jpg'.
            rel = posixpath.normpath(p.replace(os.sep, "/"))
            full = p if posixpath.isabs(p) else fs.join(base, p)
        identity = fs.canonical(full)
        hidden = _hidden_part(rel, identity, fs.canonical(base))
        if hidden is not None:  # not an input, as in a folder listing: no class either
            ignored.append(fs.Skipped(rel, hidden[0], f"line {lineno} ({p!r}): {hidden[1]}"))
            continue
        located.append(((lineno, p, label), identity, rel))
    if not located:
        raise SourceError(f"{path}: every listed file is hidden or under a hidden folder")
    names, ids = _class_ids(path, [row for row, _, _ in located], num_classes)
    candidates = [(Input(identity, rel, ids[label]), f"line {lineno} ({p!r})")
                  for (lineno, p, label), identity, rel in located]
    inputs = _dedupe(candidates, names, ignored)
    return Listing(inputs, names, ignored)


def _hidden_part(rel: str, identity: str, base: str) -> Optional[Tuple[str, str]]:
    """``(reason, message)`` when a listed file is hidden or lies under a hidden folder, as
    the folder listing judges them: by the names below the list's folder (a relative name
    as written, less its leading ``..``; an absolute one if it lies under that folder)."""
    if posixpath.isabs(rel) or fs.is_uri(rel):
        prefix = base.rstrip("/") + "/"
        if not identity.startswith(prefix):
            return None
        rel = identity[len(prefix):]
    parts = rel.split("/")
    folder = next((p for p in parts[:-1] if fs.is_hidden(p)), None)
    if folder is not None:
        return R_HIDDEN_FOLDER, f"under the hidden folder {folder!r}"
    if fs.is_hidden(parts[-1]):
        return R_HIDDEN, "hidden file"
    return None


def _class_ids(path: str, rows: List[Tuple[int, str, str]],
               num_classes: Optional[int]) -> Tuple[List[str], Dict[str, int]]:
    """Class names and the id of each label. All-integer labels are class ids: dense
    0..K-1, or below ``num_classes`` when it is given; anything else names the first line
    that breaks the rule (a stray 999999 would otherwise make a million classes)."""
    labels = [label for _, _, label in rows]
    if not all(label.isdigit() for label in labels):
        names = sorted(set(labels))
        if num_classes is not None and num_classes != len(names):
            raise SourceError(
                f"{path}: {len(names)} distinct labels, but --num-classes is {num_classes}")
        return names, {c: i for i, c in enumerate(names)}
    values = {label: int(label) for label in labels}
    k = num_classes if num_classes is not None else len(set(values.values()))
    for lineno, _, label in rows:
        if values[label] < k:
            continue
        if num_classes is not None:
            raise SourceError(f"{path}:{lineno}: label {label} is not below --num-classes {k}")
        unused = sorted(set(range(k)) - set(values.values()))
        raise SourceError(
            f"{path}:{lineno}: label {label}: integer labels are class ids and must be dense, "
            f"0..{k - 1} for the {k} distinct labels of this list (id {unused[0]} is unused); "
            "pass --num-classes N if the dataset has N classes and some have no images")
    return [str(i) for i in range(k)], values


def split_of(relpath: str, seed: int, val_fraction: float) -> str:
    """``"val"`` for a stable ``val_fraction`` of names, else ``"train"``."""
    train, val = SPLITS
    if val_fraction <= 0:
        return train
    # surrogateescape: a name that came from undecodable bytes hashes as those bytes (the
    # same as UTF-8 for any other name), never an error.
    digest = hashlib.blake2b(f"{seed}\0{relpath}".encode("utf-8", "surrogateescape"),
                             digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2.0**64
    return val if u < val_fraction else train
