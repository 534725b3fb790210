"""Paths and URIs: local paths, ``file://``, ``s3://``, ``gs://``, ``hdfs://`` through pyarrow's
native filesystems, and any other fsspec protocol (``memory://``, ``az://``, ...) through
pyarrow's fsspec handler. Everything passes URIs as strings between processes and resolves them
where they are used (cached per process).

Every operation on folders and names (listing, info, moves, deletes) takes one path through
``pyarrow.fs``: a local path (or ``file://``) resolves to :class:`pyarrow.fs.LocalFileSystem`, so
a local folder and a bucket behave alike. A local file's bytes are read and written by Python's
own files: their errors carry the file name and the system's reason (a folder where a file was
expected, a full disk) and are said once, where Arrow's local streams name no file, print a
failed write again from their destructor, and cannot open a name whose bytes are not UTF-8.
Arrow's local errors elsewhere are raised again as Python's own (same class and ``errno``, the
system's message, ``filename``).

S3 is configured the standard way of the AWS SDKs, by environment: ``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL`` for an S3-compatible server (MinIO, Ceph, ...), ``AWS_REGION``, the
credential chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, an instance
role). pyarrow reads them when it resolves a URI. The non-secret ones (:data:`STORAGE_ENV_VARS`)
travel with every Ray task and worker this package starts (:func:`task_runtime_env`), so a
setting made in the calling process holds in the workers too, however Ray was started.
"""

from __future__ import annotations

import contextlib
import functools
import os
import posixpath
import uuid
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


@contextlib.contextmanager
def _named(path: str, other: Optional[str] = None):
    """Arrow's errors of the operating system name no file (``filename`` is None, the path is
    only in their text): raised again as Python raises them, with the ``errno``, the system's
    message and the normalised ``path`` (``OSError`` picks the class by ``errno``), since
    callers tell a failed write of OUT by the file it names. Errors without an ``errno`` (an
    object store's) pass unchanged."""
    try:
        yield
    except OSError as e:
        if not e.errno or e.filename is not None:
            raise
        raise OSError(e.errno, os.strerror(e.errno), normalize(path), None,
                      other and normalize(other)) from e


def join(base: str, *parts: str) -> str:
    if is_uri(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def read_bytes(path: str) -> bytes:
    fs, inner = resolve(path)
    if isinstance(fs, pafs.LocalFileSystem):  # Python's own file (see the module's text)
        with open(inner, "rb") as f:
            return f.read()
    with _named(path), fs.open_input_stream(inner, compression=None) as f:
        return f.read()


def read_ranges(path: str, ranges: List[Tuple[int, int]]) -> List[bytes]:
    """The bytes of each ``(offset, length)`` range of one file, the file opened once (a
    range past the end comes back short)."""
    fs, inner = resolve(path)
    if isinstance(fs, pafs.LocalFileSystem):
        with open(inner, "rb") as f:
            return [os.pread(f.fileno(), length, offset) for offset, length in ranges]
    with _named(path), fs.open_input_file(inner) as f:
        return [f.read_at(length, offset) for offset, length in ranges]


def read_range(path: str, offset: int, length: int) -> bytes:
    fs, inner = resolve(path)
    if isinstance(fs, pafs.LocalFileSystem):
        with open(inner, "rb") as f:
            return os.pread(f.fileno(), length, offset)
    with _named(path), fs.open_input_file(inner) as f:
        return f.read_at(length, offset)


def _info(path: str) -> pafs.FileInfo:
    fs, inner = resolve(path)
    with _named(path):
        return fs.get_file_info(inner)


def exists(path: str) -> bool:
    return _info(path).type != pafs.FileType.NotFound


def isdir(path: str) -> bool:
    return _info(path).type == pafs.FileType.Directory


def makedirs(path: str) -> None:
    fs, inner = resolve(path)
    with _named(path):
        fs.create_dir(inner, recursive=True)


def open_output(path: str):
    """A binary output stream, buffered; what it wrote is at ``path`` once it is closed (on an
    object store, not before)."""
    fs, inner = resolve(path)
    if isinstance(fs, pafs.LocalFileSystem):
        # Python's own file: its errors name the file, and one whose write failed (a full
        # disk) is closed without Arrow's destructor printing the error again on stderr.
        return open(inner, "wb", buffering=1 << 20)
    with _named(path):
        return fs.open_output_stream(inner, compression=None, buffer_size=1 << 20)


def write_bytes(path: str, data: bytes) -> None:
    with open_output(path) as f:
        f.write(data)


#: Stores that make an object visible whole when its output stream closes (one upload): a
#: reader sees the old object or the new one, never part of one, with nothing to rename.
_WHOLE_OBJECTS = _BUCKETED | {"abfs", "abfss", "az", "memory"}


def write_atomic(path: str, data: bytes) -> None:
    """Puts ``data`` at ``path`` so that a reader finds the old content or the new, never part
    of it: on an object store one upload; on a file system (local, HDFS, ...) a temporary name
    in the same folder, then renamed over ``path``."""
    path = normalize(path)
    if is_uri(path) and path.split("://", 1)[0] in _WHOLE_OBJECTS:
        write_bytes(path, data)
        return
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        write_bytes(tmp, data)
        move(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # leave nothing behind; the first error is raised
            delete_file(tmp)
        raise


def move(src: str, dst: str) -> None:
    """Renames ``src`` to ``dst``, replacing a file there (locally a rename; an object store
    copies and deletes)."""
    fs, a = resolve(src)
    _, b = resolve(dst)
    with _named(src, dst):
        fs.move(a, b)


def delete_file(path: str, missing_ok: bool = True) -> None:
    fs, inner = resolve(path)
    try:
        with _named(path):
            fs.delete_file(inner)
    except FileNotFoundError:
        if not missing_ok:
            raise


def delete_dir(path: str) -> None:
    """Removes the folder and all under it; nothing to do if it does not exist. Any other
    failure raises (no permission, not a folder, a file that stays)."""
    fs, inner = resolve(path)
    try:
        with _named(path):
            fs.delete_dir(inner)
    except FileNotFoundError:
        pass


def list_dir(path: str) -> List[str]:
    """Names (not paths) directly under ``path``, sorted; empty if it does not exist. Any
    other failure raises (no permission, not a folder)."""
    fs, inner = resolve(path)
    with _named(path):
        infos = fs.get_file_info(pafs.FileSelector(inner, allow_not_found=True))
    return sorted(posixpath.basename(i.path) for i in infos)


def list_files(root: str) -> List[str]:
    """The names relative to ``root`` (``/``-separated) of every file below it, sorted;
    empty if it does not exist. No link handling: a source tree is walked by
    :func:`ray_ingest.convert.sources.walk_files`."""
    return sorted(file_sizes(root))


def file_sizes(root: str) -> Dict[str, int]:
    """``{name relative to root: size in bytes}`` of every file below ``root`` (empty if it
    does not exist)."""
    fs, inner = resolve(root)
    with _named(root):
        infos = fs.get_file_info(pafs.FileSelector(inner, recursive=True, allow_not_found=True))
    base = inner.strip("/")
    prefix = base + "/" if base else ""
    out = {}
    for info in infos:
        path = info.path.lstrip("/")  # fsspec's memory:// lists "/bucket/key"
        if info.type == pafs.FileType.File and path.startswith(prefix):
            out[path[len(prefix):]] = info.size
    return out


def printable(name: str) -> str:
    """``name`` as valid UTF-8 text: the bytes of a local file name that are not UTF-8 (which
    Python holds as surrogate escapes, see :func:`os.fsencode`) written as ``\\xNN``."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no file name decodes to
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


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
