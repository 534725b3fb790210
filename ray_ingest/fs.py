"""Paths and URIs: local paths, ``file://``, ``s3://``, ``gs://``, ``hdfs://`` through pyarrow's
native filesystems, and any other fsspec protocol (``memory://``, ``az://``, ...) through
pyarrow's fsspec handler. Everything passes URIs as strings between processes and resolves them
where they are used (cached per process).

S3 is configured the standard way of the AWS SDKs, by environment: ``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL`` for an S3-compatible server (MinIO, Ceph, ...), ``AWS_REGION``, the
credential chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, an instance
role). pyarrow reads them when it resolves a URI. The non-secret ones (:data:`STORAGE_ENV_VARS`)
travel with every Ray task and worker this package starts (:func:`task_runtime_env`), so a
setting made in the calling process holds in the workers too, however Ray was started.
"""

from __future__ import annotations

import errno
import functools
import os
import posixpath
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import pyarrow.fs as pafs

_NATIVE = {"file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss"}


def is_uri(path: str) -> bool:
    return "://" in path


def normalize(path: str) -> str:
    """Local paths become absolute; URIs are kept (without a trailing slash)."""
    path = os.fspath(path)
    if is_uri(path):
        scheme, rest = path.split("://", 1)
        if scheme == "file":
            return os.path.abspath("/" + rest.lstrip("/"))
        return f"{scheme}://{rest.rstrip('/')}" if rest.rstrip("/") else path
    return os.path.abspath(os.path.expanduser(path))


_BUCKETED = {"s3", "gs", "gcs"}

#: Where object storage is and how to reach it, as the AWS SDKs and pyarrow read them from the
#: environment: copied into the runtime environment of our Ray tasks and training workers.
#: Credentials are not copied (a runtime environment is visible in Ray's dashboard and state
#: API): each node takes them from its own chain (variables where Ray was started, a
#: credentials file, an instance role), or a job passes them in its own runtime environment.
STORAGE_ENV_VARS = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CA_BUNDLE",
)


def storage_env() -> Dict[str, str]:
    """The :data:`STORAGE_ENV_VARS` set in this process."""
    return {k: os.environ[k] for k in STORAGE_ENV_VARS if os.environ.get(k)}


def task_runtime_env() -> Optional[Dict[str, Any]]:
    """The runtime environment of the Ray tasks and workers that touch storage: this
    process's storage settings (Ray merges it into the job's), or None when none is set."""
    env = storage_env()
    return {"env_vars": env} if env else None


def _bucket_filesystem(scheme: str, bucket: str) -> pafs.FileSystem:
    # Keyed by the storage settings too: a filesystem resolved before a change of endpoint
    # must not be reused after it.
    return _cached_bucket_filesystem(scheme, bucket, tuple(sorted(storage_env().items())))


@functools.lru_cache(maxsize=64)
def _cached_bucket_filesystem(scheme: str, bucket: str, _settings) -> pafs.FileSystem:
    fs, _ = pafs.FileSystem.from_uri(f"{scheme}://{bucket}")
    return fs


@functools.lru_cache(maxsize=16)
def _fsspec_filesystem(scheme: str) -> pafs.FileSystem:
    import fsspec

    return pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem(scheme)))


def filesystem_to_hand_over(path: str) -> Tuple[Optional[pafs.FileSystem], str]:
    """``(filesystem, path within it)`` for a library that would otherwise resolve the URI
    itself in other processes (Ray Train's ``storage_filesystem``): for an object store, the
    filesystem resolved here, which keeps its endpoint and region when pickled; for anything
    else ``(None, path)``."""
    path = normalize(path)
    if is_uri(path) and path.split("://", 1)[0] in _BUCKETED:
        return resolve(path)
    return None, path


def resolve(path: str) -> Tuple[pafs.FileSystem, str]:
    """``(filesystem, path within it)`` for a local path or URI (filesystems cached)."""
    path = normalize(path)
    if not is_uri(path):
        return _local(), path
    scheme, rest = path.split("://", 1)
    if scheme in _BUCKETED:
        return _bucket_filesystem(scheme, rest.split("/", 1)[0]), rest
    if scheme in _NATIVE:
        return pafs.FileSystem.from_uri(path)
    return _fsspec_filesystem(scheme), rest


@functools.lru_cache(maxsize=1)
def _local() -> pafs.LocalFileSystem:
    return pafs.LocalFileSystem()


def join(base: str, *parts: str) -> str:
    if is_uri(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def read_bytes(path: str) -> bytes:
    if not is_uri(path):
        with open(path, "rb") as f:
            return f.read()
    fs, inner = resolve(path)
    with fs.open_input_stream(inner) as f:
        return f.read()


def read_range(path: str, offset: int, length: int) -> bytes:
    if not is_uri(path):
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(length)
    fs, inner = resolve(path)
    with fs.open_input_file(inner) as f:
        return f.read_at(length, offset)


def file_size(path: str) -> int:
    if not is_uri(path):
        return os.path.getsize(path)
    fs, inner = resolve(path)
    info = fs.get_file_info(inner)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(path)
    return info.size


def exists(path: str) -> bool:
    if not is_uri(path):
        return os.path.exists(path)
    fs, inner = resolve(path)
    return fs.get_file_info(inner).type != pafs.FileType.NotFound


def isdir(path: str) -> bool:
    if not is_uri(path):
        return os.path.isdir(path)
    fs, inner = resolve(path)
    return fs.get_file_info(inner).type == pafs.FileType.Directory


def makedirs(path: str) -> None:
    if not is_uri(path):
        os.makedirs(path, exist_ok=True)
        return
    fs, inner = resolve(path)
    fs.create_dir(inner, recursive=True)


def open_output(path: str):
    """A binary output stream (local: a buffered file)."""
    if not is_uri(path):
        return open(path, "wb", buffering=1 << 20)
    fs, inner = resolve(path)
    return fs.open_output_stream(inner)


def write_bytes(path: str, data: bytes) -> None:
    with open_output(path) as f:
        f.write(data)


def write_atomic(path: str, data: bytes) -> None:
    """Writes to a temporary name beside ``path`` and renames it into place."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        write_bytes(tmp, data)
        move(tmp, path)
    except BaseException:
        try:
            delete_file(tmp)
        except OSError:
            pass
        raise


def move(src: str, dst: str) -> None:
    if not is_uri(src):
        os.replace(src, dst)
        return
    fs, a = resolve(src)
    _, b = resolve(dst)
    fs.move(a, b)


def delete_file(path: str, missing_ok: bool = True) -> None:
    try:
        if not is_uri(path):
            os.remove(path)
            return
        fs, inner = resolve(path)
        fs.delete_file(inner)
    except FileNotFoundError:
        if not missing_ok:
            raise


def delete_dir(path: str) -> None:
    if not is_uri(path):
        import shutil

        shutil.rmtree(path, ignore_errors=True)
        return
    fs, inner = resolve(path)
    try:
        fs.delete_dir(inner)
    except FileNotFoundError:
        pass


def list_dir(path: str) -> List[str]:
    """Names (not paths) directly under ``path``; empty if it does not exist."""
    if not is_uri(path):
        try:
            return sorted(os.listdir(path))
        except FileNotFoundError:
            return []
    fs, inner = resolve(path)
    infos = fs.get_file_info(pafs.FileSelector(inner, allow_not_found=True))
    return sorted(posixpath.basename(i.path) for i in infos)


#: Why :func:`walk_files` did not follow an entry (the reasons ``rejects.jsonl`` reports).
SYMLINK_LOOP = "symlink-loop"
LINK_OUTSIDE = "link-outside-source"
BROKEN_LINK = "broken-link"
DUPLICATE = "duplicate"
UNREADABLE = "unreadable"
NOT_A_FILE = "not-a-regular-file"
#: A folder whose name starts with ``.`` (``.ipynb_checkpoints``, ``.git``): not entered.
HIDDEN_FOLDER = "hidden-folder"


def printable(name: str) -> str:
    """``name`` as valid UTF-8 text: the bytes of a local file name that are not UTF-8 (which
    Python holds as surrogate escapes, see :func:`os.fsencode`) written as ``\\xNN``."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no file name decodes to
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


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
    path = normalize(path)
    if not is_uri(path):
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
    :func:`printable`; the identities (real paths) are the names to open.
    """
    walk = Walk()
    hidden_note = "hidden folder: not entered, nothing under it is converted"
    if is_uri(root):
        fs, inner = resolve(root)
        infos = fs.get_file_info(pafs.FileSelector(inner, recursive=True))
        base = inner.strip("/") + "/"
        hidden = set()
        for info in infos:
            path = info.path.lstrip("/")  # fsspec's memory:// lists "/bucket/key"
            if info.type == pafs.FileType.File and path.startswith(base):
                rel = path[len(base):]
                parts = rel.split("/")
                top = next((i for i, p in enumerate(parts[:-1]) if is_hidden(p)), None)
                if top is not None:
                    hidden.add("/".join(parts[: top + 1]))
                    continue
                walk.files.append((rel, canonical(join(root, rel))))
        walk.files.sort()
        walk.skipped = [Skipped(h, HIDDEN_FOLDER, hidden_note) for h in sorted(hidden)]
        return walk
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
                                        printable(f"cannot list the folder: {e}")))
            return
        for entry in entries:
            name = printable(entry.name)
            rel = name if rel_folder == "." else f"{rel_folder}/{name}"
            if entry.is_symlink():
                try:
                    real = os.path.realpath(entry.path, strict=True)
                except OSError as e:
                    if e.errno == errno.ELOOP:
                        walk.skipped.append(Skipped(rel, SYMLINK_LOOP,
                                                    "the link resolves through a cycle of links"))
                    else:
                        walk.skipped.append(Skipped(rel, BROKEN_LINK, printable(
                            f"broken link to {os.readlink(entry.path)!r}")))
                    continue
                if not follow_links and not inside(real):
                    walk.skipped.append(Skipped(rel, LINK_OUTSIDE, printable(
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


def check_report_file(option: str, path: str) -> None:
    """Refuses (:class:`ConfigError`, naming ``option``), before any work, a local report file
    that could not be written at the end: a folder, or a file in a folder that is missing or
    not writable."""
    from ray_ingest.errors import ConfigError

    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ConfigError(f"{option} {path}: a folder; name a file")
    if not os.path.isdir(folder):
        raise ConfigError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{option} {path}: the folder {folder} is not writable")
