"""Putting a conversion's output in place, and what a failure to write it says.

:func:`set_aside` and :func:`restore_previous` make an overwrite atomic as a whole (the
commit in :mod:`~ray_ingest.convert.sink` moves the finished output into its staging folder,
and back if the commit fails; the next run moves it back if this one was killed in
between). :func:`output_errors` turns the ``OSError`` of writing OUT (read-only, no
permission, disk full), also one raised in a Ray task, into one line naming OUT and the cause.
"""

from __future__ import annotations

import contextlib
import errno
import os
from typing import Optional

from ray_ingest import fs
from ray_ingest.errors import ConversionError
from ray_ingest.format import manifest as mf

#: Storage errors that name no file but can only come from writing (the output).
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def write_error(out: str, error: OSError) -> ConversionError:
    """The one-line error of a conversion that could not write ``out`` (read-only, no
    permission, disk full): OUT, the cause and the file."""
    cause = os.strerror(error.errno) if error.errno else str(error)
    where = f": {fs.printable(str(error.filename))}" if error.filename else ""
    return ConversionError(f"{out}: cannot write the conversion output ({cause}{where}); "
                           f"nothing committed, {out} holds what it held before")


def _os_error(error: BaseException) -> Optional[OSError]:
    """The ``OSError`` that ``error`` is or that a Ray wrapper of it carries."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        cause = getattr(error, "__dict__", {}).get("cause")
        if isinstance(cause, BaseException):
            error = cause
            continue
        return error if isinstance(error, OSError) else None
    return None


@contextlib.contextmanager
def output_errors(out: str):
    """Turns an ``OSError`` of writing ``out`` (one naming a file under OUT, or a disk-full
    error) into :func:`write_error`; any other error passes unchanged."""
    out = fs.normalize(out)
    try:
        yield
    except Exception as e:  # noqa: BLE001 - re-raised unless it is a write of OUT
        os_error = _os_error(e)
        if os_error is None or isinstance(e, ConversionError):
            raise
        names = [str(n) for n in (os_error.filename, os_error.filename2) if n]
        inside = [n for n in names if n == out or n.startswith(out.rstrip("/") + "/")]
        if not inside and (names or os_error.errno not in _WRITE_ERRNOS):
            raise
        raise write_error(out, os_error) from e


def set_aside(out: str, previous: str) -> None:
    """Moves the finished output of ``out`` (manifest first, then every shard, index and the
    rejects report) into the folder ``previous``."""
    fs.makedirs(previous)
    names = fs.list_dir(out)
    if mf.MANIFEST_NAME in names:
        fs.move(fs.join(out, mf.MANIFEST_NAME), fs.join(previous, mf.MANIFEST_NAME))
    for name in names:
        if mf.SHARD_RE.match(name) or name == mf.REJECTS_NAME:
            fs.move(fs.join(out, name), fs.join(previous, name))


def restore_previous(out: str, previous: str) -> None:
    """Undoes :func:`set_aside` and what was moved in since: removes the new run's shards,
    indexes, rejects report and manifest from ``out`` and moves the old ones back (manifest
    last). Safe to repeat after a partial run of itself."""
    kept = fs.list_dir(previous)
    for name in fs.list_dir(out):
        ours = mf.SHARD_RE.match(name) or name in (mf.REJECTS_NAME, mf.MANIFEST_NAME)
        if ours and name not in kept:
            fs.delete_file(fs.join(out, name))
    for name in sorted(kept, key=lambda n: n == mf.MANIFEST_NAME):
        fs.move(fs.join(previous, name), fs.join(out, name))
