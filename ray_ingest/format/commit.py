"""Putting a shard set in place, and what a failure to write it says.

One commit serves every writer of our format: the Ray Datasink of a conversion
(:class:`~ray_ingest.convert.sink.TFRecordDatasink`) and
:class:`~ray_ingest.format.writer.ShardSetWriter`.
:func:`prepare_output` readies OUT (held under its lock): it refuses a finished output unless
overwriting, and clears what an interrupted run left. :func:`commit_output` takes the staged
shards of the writers that succeeded (:class:`~ray_ingest.format.staging.StagedResult`),
checks that every input came back exactly once and the reject limit, renames the shards to
their final names (``<split>-00000-of-000NN.tfrecord`` plus ``.idx``), moves
``rejects.jsonl`` in and writes ``manifest.json`` last. Files that no result lists (those of
failed or retried attempts) are never renamed; they go away with the staging folder.

:func:`set_aside` and :func:`restore_previous` make an overwrite atomic as a whole: the commit
moves the finished output into the staging folder, and back if the commit fails
(:func:`abort`); the next run moves it back if this one was killed in between. A run that
fails earlier, over the reject limit for instance, leaves the finished output as it was and
writes its report beside it (``rejects.failed.jsonl``). :func:`output_errors` turns the
``OSError`` of writing OUT (read-only, no permission, disk full), also one raised in a Ray
task, into one line naming OUT and the cause.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence

from ray_ingest import fs
from ray_ingest.errors import ConversionError
from ray_ingest.format import manifest as mf
from ray_ingest.format.keys import SPLITS
from ray_ingest.format.staging import StagedResult

logger = logging.getLogger("ray_ingest")

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


def prepare_output(out: str, overwrite: bool, *,
                   overwrite_hint: str = "pass --overwrite to replace it") -> None:
    """Refuses a finished output unless ``overwrite``; clears what a crashed run left behind
    (called holding OUT's lock: no other run is live, so every staging folder is a leftover),
    first moving back a finished output that a killed overwrite had set aside."""
    manifest = fs.join(out, mf.MANIFEST_NAME)
    fs.makedirs(out)
    for name in fs.list_dir(out):
        if name.startswith(mf.STAGING_PREFIX):
            leftover = fs.join(out, name)
            previous = fs.join(leftover, mf.PREVIOUS_NAME)
            if fs.exists(previous) and not fs.exists(manifest):
                logger.warning("restoring the output of %s that an interrupted overwrite had "
                               "moved to %s", out, previous)
                restore_previous(out, previous)
            logger.warning("removing %s left by an interrupted run", leftover)
            fs.delete_dir(leftover)
    if fs.exists(manifest) and not overwrite:
        raise ConversionError(
            f"{out} already holds a finished conversion ({mf.MANIFEST_NAME}); {overwrite_hint}"
        )


def abort(out: str, staging: str) -> None:
    """Removes the staging folder of a run, having first moved back a finished output that a
    failed commit had set aside (if that fails too, the folder stays for the next run to
    restore it from)."""
    previous = fs.join(staging, mf.PREVIOUS_NAME)
    if fs.exists(previous):
        restore_previous(out, previous)
    fs.delete_dir(staging)


def _merged(results: Sequence[StagedResult]) -> StagedResult:
    total = StagedResult()
    for r in results:
        total.shards.extend(r.shards)
        total.rejects.extend(r.rejects)
        total.notes.update(r.notes)
        total.class_counts.update(r.class_counts)
        total.heights.update(r.heights)
        total.widths.update(r.widths)
        total.written += r.written
        total.as_is += r.as_is
    return total


def commit_output(out: str, staging: str, results: Sequence[StagedResult], *,
                  num_inputs: int, max_reject_fraction: float, manifest_fields: Dict[str, Any],
                  ignored: Sequence[Dict[str, str]] = (), overwrite: bool,
                  limit_name: str = "--max-reject-fraction") -> Dict[str, Any]:
    """Commits the staged shards of ``results`` (the writers that succeeded) into ``out``;
    returns the manifest written. ``manifest_fields``: the manifest's header
    (:func:`~ray_ingest.format.manifest.header`); ``ignored``: inputs skipped before writing
    (listed in the rejects report, not counted as inputs). Raises :class:`ConversionError`
    (the staging folder removed, OUT as it was) when the inputs do not add up or too many
    were rejected; ``limit_name`` names the reject limit in that message."""
    r = _merged(results)
    shards, rejects, written = r.shards, r.rejects, r.written
    accounted = written + len(rejects)
    if accounted != num_inputs:
        fs.delete_dir(staging)
        raise ConversionError(
            f"{out}: {num_inputs} inputs but {written} written + {len(rejects)} "
            f"rejected = {accounted}; refusing to commit (records lost or duplicated)"
        )
    rejects.sort(key=lambda x: x["path"])
    lines = [json.dumps(x, ensure_ascii=False) for x in rejects]
    lines += [json.dumps({**x, "ignored": True}, ensure_ascii=False) for x in ignored]
    report = ("\n".join(lines) + "\n" if lines else "").encode()
    manifest_path = fs.join(out, mf.MANIFEST_NAME)
    finished = fs.exists(manifest_path)
    fraction = len(rejects) / max(1, num_inputs)
    if fraction > max_reject_fraction or written == 0:
        fs.delete_dir(staging)
        # A finished output stays as it was; the report of this run goes beside it.
        path = fs.join(out, mf.FAILED_REJECTS_NAME if finished else mf.REJECTS_NAME)
        fs.write_atomic(path, report)
        kept = f"; {out} keeps its finished output" if finished else ""
        raise ConversionError(
            f"{len(rejects)} of {num_inputs} inputs rejected ({fraction:.2%}), over "
            f"{limit_name} {max_reject_fraction:g}; no manifest written{kept}. "
            f"Reasons per input: {path}"
        )
    if finished and not overwrite:
        raise ConversionError(f"{out} gained a manifest during the run; not overwriting")
    sizes = None
    if manifest_fields.get("resize_mode") == mf.KEEP:
        sizes = mf.image_sizes(r.heights, r.widths, r.as_is, written)
    # Final names and the manifest, before anything in OUT changes.
    moves = []
    splits: Dict[str, Dict[str, Any]] = {}
    num_classes = len(manifest_fields["class_names"])
    for split in SPLITS:
        mine = sorted((s for s in shards if s.split == split), key=lambda s: (s.task, s.seq))
        entries = []
        for i, s in enumerate(mine):
            name = mf.shard_name(split, i, len(mine))
            moves += [(s.path, name), (s.index_path, mf.index_name(name))]
            entries.append({"file": name, "index": mf.index_name(name),
                            "num_records": s.num_records, "num_bytes": s.num_bytes})
            if s.sha256 is not None:
                entries[-1]["sha256"] = s.sha256
        counts = [r.class_counts.get((split, c), 0) for c in range(num_classes)]
        splits[split] = mf.split_entry(entries, class_counts=counts)
    data = _manifest(manifest_fields, splits, rejects, r.notes, written, num_inputs, ignored,
                     sizes)
    mf.validate(data, manifest_path)
    staged_report = fs.join(staging, mf.REJECTS_NAME)
    fs.write_bytes(staged_report, report)
    # 1. The old output moves aside (manifest first, so it never describes mixed files);
    # 2. the new files move in; 3. the manifest, last: the commit.
    previous = fs.join(staging, mf.PREVIOUS_NAME)
    try:
        set_aside(out, previous)
        for path, name in moves:
            fs.move(path, fs.join(out, name))
        fs.move(staged_report, fs.join(out, mf.REJECTS_NAME))
        mf.write_manifest(out, data)
    except BaseException:
        abort(out, staging)
        raise
    fs.delete_dir(staging)  # with the old output
    fs.delete_file(fs.join(out, mf.FAILED_REJECTS_NAME))
    return data


def _manifest(fields: Dict[str, Any], splits, rejects: List[Dict[str, str]], notes: Counter,
              written: int, num_inputs: int, ignored: Sequence[Dict[str, str]],
              sizes=None) -> Dict[str, Any]:
    names = fields["class_names"]
    totals = [sum(s["class_counts"][c] for s in splits.values()) for c in range(len(names))]
    data = dict(fields)
    data.update(
        splits=splits,
        num_inputs=num_inputs,
        num_written=written,
        num_rejected=len(rejects),
        num_ignored=len(ignored),
        ignored_reasons=dict(sorted(Counter(x["reason"] for x in ignored).items())),
        conversions=dict(sorted(notes.items())),
        rejects_file=mf.REJECTS_NAME,
        reject_reasons=dict(sorted(Counter(x["reason"] for x in rejects).items())),
        # Classes no record has (all their inputs rejected, or none listed).
        empty_classes=[n for n, t in zip(names, totals) if t == 0],
    )
    if sizes is not None:
        data["image_sizes"] = sizes
    return data
