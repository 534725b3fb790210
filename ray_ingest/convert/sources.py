"""What to convert: a class-folder tree, or a CSV/JSONL list of ``path,label``.

Both give a list of :class:`Input` (where to read it, its name relative to the source, its
label) plus the class names, one input per real file, and assign each input to ``train`` or
``val`` by a stable hash of its relative name and the seed, so that re-running gives the same
split.

A tree is walked by :func:`walk_files`, which reports what it does not follow (links that
loop or leave SRC, a second way into a folder, hidden folders) rather than dropping it.
"""

from __future__ import annotations

import csv
import errno
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


#: Why :func:`walk_files` did not follow an entry (the reasons ``rejects.jsonl`` reports).
SYMLINK_LOOP = "symlink-loop"
LINK_OUTSIDE = "link-outside-source"
BROKEN_LINK = "broken-link"
DUPLICATE = "duplicate"
UNREADABLE = "unreadable"
NOT_A_FILE = "not-a-regular-file"
#: A folder whose name starts with ``.`` (``.ipynb_checkpoints``, ``.git``): not entered.
HIDDEN_FOLDER = "hidden-folder"


def is_hidden(name: str) -> bool:
    """A file or folder name that starts with ``.`` (not ``.`` or ``..`` themselves)."""
    return name.startswith(".") and name not in (".", "..")


@dataclass(frozen=True)
class Skipped:
    """An entry a listing did not take: its name, a reason code and a message."""

    path: str
    reason: str
    message: str


@dataclass
class Walk:
    """:func:`walk_files`: ``files`` as ``(name relative to the root with '/' separators,
    identity)`` in listing order, and the entries that were not followed, with why."""

    files: List[Tuple[str, str]] = field(default_factory=list)
    skipped: List[Skipped] = field(default_factory=list)


def canonical(path: str) -> str:
    """The identity of a file: its real path (symlinks resolved, ``..`` and ``.`` removed;
    a missing file keeps its normalised name), or the normalised URI."""
    path = fs.normalize(path)
    if not fs.is_uri(path):
        return os.path.realpath(path)
    scheme, rest = path.split("://", 1)
    return f"{scheme}://{posixpath.normpath(rest)}"


def walk_files(root: str, *, follow_links: bool = False) -> Walk:
    """Every file below ``root``, depth first, each folder's entries by name.

    Local trees: each folder is entered once, by its real path. A link to a folder that
    contains it is a ``symlink-loop``; a second way into a folder already entered is a
    ``duplicate``; a link whose target lies outside ``root`` is not followed unless
    ``follow_links``; a broken link, an unreadable folder and anything that is neither a file
    nor a folder are reported. Object stores have no links: their keys, sorted. Hidden folders
    (:func:`is_hidden`) are reported once as ``hidden-folder`` and not entered. Names are
    :func:`ray_ingest.fs.printable`; the identities (real paths) are the names to open.
    """
    walk = Walk()
    hidden_note = "hidden folder: not entered, nothing under it is converted"
    if fs.is_uri(root):  # object stores have no links
        hidden = set()
        for rel in fs.list_files(root):
            parts = rel.split("/")
            top = next((i for i, p in enumerate(parts[:-1]) if is_hidden(p)), None)
            if top is not None:
                hidden.add("/".join(parts[: top + 1]))
                continue
            walk.files.append((rel, canonical(fs.join(root, rel))))
        walk.skipped = [Skipped(h, HIDDEN_FOLDER, hidden_note) for h in sorted(hidden)]
        return walk
    # A local tree is walked through os, not pyarrow.fs: links are a local concern that
    # pyarrow does not show (it tells no link from its target), and a name need not be UTF-8.
    top = os.path.realpath(root)
    entered = {top: "."}  # real folder -> the name it was entered under

    def inside(real: str) -> bool:
        return real == top or real.startswith(top.rstrip(os.sep) + os.sep)

    def visit(folder: str, rel_folder: str, ancestors: frozenset) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            walk.skipped.append(Skipped(rel_folder, UNREADABLE,
                                        fs.printable(f"cannot list the folder: {e}")))
            return
        for entry in entries:
            name = fs.printable(entry.name)
            rel = name if rel_folder == "." else f"{rel_folder}/{name}"
            if entry.is_symlink():
                try:
                    real = os.path.realpath(entry.path, strict=True)
                except OSError as e:
                    if e.errno == errno.ELOOP:
                        walk.skipped.append(Skipped(rel, SYMLINK_LOOP,
                                                    "the link resolves through a cycle of links"))
                    else:
                        walk.skipped.append(Skipped(rel, BROKEN_LINK, fs.printable(
                            f"broken link to {os.readlink(entry.path)!r}")))
                    continue
                if not follow_links and not inside(real):
                    walk.skipped.append(Skipped(rel, LINK_OUTSIDE, fs.printable(
                        f"link to {real}, outside the source (--follow-links follows it)")))
                    continue
                is_dir = os.path.isdir(real)
            else:
                real = entry.path  # the folder's path is real, so is its plain entry
                is_dir = entry.is_dir(follow_symlinks=False)
            if is_dir and is_hidden(entry.name):
                walk.skipped.append(Skipped(rel, HIDDEN_FOLDER, hidden_note))
            elif is_dir:
                if real in ancestors:
                    walk.skipped.append(Skipped(
                        rel, SYMLINK_LOOP,
                        ("link to the source folder itself" if entered[real] == "." else
                         f"link to {entered[real]!r}, a folder that contains it") +
                        "; not entered"))
                elif real in entered:
                    walk.skipped.append(Skipped(
                        rel, DUPLICATE, f"the same folder as {entered[real]!r} (kept)"))
                else:
                    entered[real] = rel
                    visit(real, rel, ancestors | {real})
            elif os.path.isfile(real):
                walk.files.append((rel, real))
            else:
                walk.skipped.append(Skipped(rel, NOT_A_FILE, "neither a file nor a folder"))

    visit(top, ".", frozenset([top]))
    return walk


#: Why a file under SRC was not taken (the listing's own reasons; those of links and folders
#: come from :func:`walk_files`).
R_HIDDEN = "hidden-file"
R_HIDDEN_FOLDER = HIDDEN_FOLDER
R_NO_CLASS = "outside-class-folder"
R_NOT_IMAGE = "not-an-image-extension"
R_DUPLICATE = DUPLICATE


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
    ignored: List[Skipped] = field(default_factory=list)


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
    walk = walk_files(src, follow_links=follow_links)
    ignored = list(walk.skipped)
    taken: List[Tuple[str, str, str]] = []  # (relpath, identity, class name)
    for rel, real in walk.files:
        name = posixpath.basename(rel)
        is_image = posixpath.splitext(name)[1].lower() in IMAGE_EXTENSIONS
        if name.startswith("."):
            ignored.append(Skipped(rel, R_HIDDEN, "hidden file"))
        elif not is_image:
            ignored.append(Skipped(rel, R_NOT_IMAGE, "not an image file by its extension"))
        elif "/" not in rel:
            ignored.append(Skipped(rel, R_NO_CLASS, "image outside any class folder"))
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
            ignored: List[Skipped]) -> List[Input]:
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
        ignored.append(Skipped(item.relpath, R_DUPLICATE, message))
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
    ignored: List[Skipped] = []
    for lineno, p, label in rows:
        if fs.is_uri(p):
            full = rel = canonical(p)
        else:
            # Normalised name: 'a.jpg', './a.jpg' and 'x/../a.jpg' are all 'a.jpg'.
            rel = posixpath.normpath(p.replace(os.sep, "/"))
            full = p if posixpath.isabs(p) else fs.join(base, p)
        identity = canonical(full)
        hidden = _hidden_part(rel, identity, canonical(base))
        if hidden is not None:  # not an input, as in a folder listing: no class either
            ignored.append(Skipped(rel, hidden[0], f"line {lineno} ({p!r}): {hidden[1]}"))
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
    folder = next((p for p in parts[:-1] if is_hidden(p)), None)
    if folder is not None:
        return R_HIDDEN_FOLDER, f"under the hidden folder {folder!r}"
    if is_hidden(parts[-1]):
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
