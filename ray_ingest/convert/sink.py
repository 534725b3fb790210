"""The TFRecord shard writer: a Ray Data :class:`~ray.data.Datasink`.

Each write task receives about one shard's worth of converted rows (``min_bytes_per_write``),
writes them to shards under a staging folder with names unique to the task *attempt*, and
rolls to a new file when a shard reaches the size limit. Bad inputs arrive as rows with a
reject reason and are returned, not written. ``on_write_complete`` (on the driver) then
checks that every input came back exactly once, enforces the reject limit, renames the staged
shards that the successful attempts reported to their final names
(``<split>-00000-of-000NN.tfrecord`` plus ``.idx``), moves ``rejects.jsonl`` in, and writes
``manifest.json`` last. Files of failed or retried attempts are never renamed, so a killed
worker can neither lose nor duplicate a record; they go away with the staging folder. With
``checksums`` each shard's SHA-256 is computed as it is written and stored in its manifest
entry.

An overwrite is atomic as a whole: the finished output (manifest first, then its shards,
indexes and rejects report) is moved into the staging folder before the new files are moved
in, and moved back if anything fails before the new manifest is written (or, if the process
was killed in between, by the next conversion into OUT: :func:`restore_previous`). A run
that fails earlier, over the reject limit for instance, leaves the finished output as it
was and writes its report beside it (``rejects.failed.jsonl``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional

from ray.data import Datasink
from ray.data.block import BlockAccessor

from ray_ingest import fs
from ray_ingest.convert.commit import restore_previous, set_aside, write_error
from ray_ingest.convert.lock import ensure_owner
from ray_ingest.errors import ConversionError
from ray_ingest.format import manifest as mf
from ray_ingest.format.arrow import binary_values
from ray_ingest.format.framing import OVERHEAD, TFRecordWriter
from ray_ingest.format.keys import SPLITS

logger = logging.getLogger("ray_ingest")

#: Columns of the converted rows the sink consumes (the conversion's ``map_batches`` output):
#: the serialized record, its split, its input's name, its class id, and for an input that
#: was not converted the reject reason and message; a conversion note (e.g. "png->rgb")
#: otherwise, the stored image's height and width, and whether the input's own bytes were
#: stored as they are (keep mode).
COL_RECORD = "record"
COL_SPLIT = "split"
COL_FILENAME = "filename"
COL_LABEL = "label"
COL_REJECT = "reject"
COL_MESSAGE = "message"
COL_NOTE = "note"
COL_HEIGHT = "height"
COL_WIDTH = "width"
COL_AS_IS = "as_is"


@dataclass
class StagedShard:
    split: str
    path: str
    index_path: str
    num_records: int
    num_bytes: int
    task: int
    seq: int
    sha256: Optional[str] = None


@dataclass
class TaskResult:
    shards: List[StagedShard] = field(default_factory=list)
    rejects: List[Dict[str, str]] = field(default_factory=list)
    notes: Counter = field(default_factory=Counter)
    #: Records written per (split, class id).
    class_counts: Counter = field(default_factory=Counter)
    written: int = 0
    #: Records written per stored height, per stored width; records stored as they are.
    heights: Counter = field(default_factory=Counter)
    widths: Counter = field(default_factory=Counter)
    as_is: int = 0


class _HashingStream:
    """A write-only stream that also feeds what passes through it to a SHA-256."""

    def __init__(self, stream):
        self.stream = stream
        self.hash = hashlib.sha256()

    def write(self, data) -> None:
        self.hash.update(data)
        self.stream.write(data)

    def close(self) -> None:
        self.stream.close()


class _ShardRoller:
    """Writes one split's records of one task attempt, rolling at ``max_bytes``."""

    def __init__(self, staging: str, split: str, task: int, attempt: str, max_bytes: int,
                 checksums: bool = False):
        self.staging, self.split, self.task, self.attempt = staging, split, task, attempt
        self.max_bytes = max_bytes
        self.checksums = checksums
        self.done: List[StagedShard] = []
        self._stream = None
        self._writer: Optional[TFRecordWriter] = None
        self._path = ""

    def _open(self) -> None:
        seq = len(self.done)
        self._path = fs.join(
            self.staging, f"{self.split}-t{self.task:06d}-{self.attempt}-{seq:04d}.tfrecord"
        )
        self._stream = fs.open_output(self._path)
        if self.checksums:
            self._stream = _HashingStream(self._stream)
        self._writer = TFRecordWriter(self._stream)

    def write(self, record) -> None:
        size = len(record) + OVERHEAD
        if self._writer is not None and self._writer.bytes_written + size > self.max_bytes:
            self.close()
        if self._writer is None:
            self._open()
        self._writer.write(record)

    def close(self) -> None:
        if self._writer is None:
            return
        self._stream.close()
        index_path = self._path[: -len(".tfrecord")] + ".idx"
        fs.write_bytes(index_path, self._writer.index_text().encode("ascii"))
        digest = self._stream.hash.hexdigest() if self.checksums else None
        self.done.append(
            StagedShard(self.split, self._path, index_path, self._writer.num_records,
                        self._writer.bytes_written, self.task, len(self.done), digest)
        )
        self._stream = self._writer = None



class TFRecordDatasink(Datasink):
    def __init__(
        self,
        *,
        out: str,
        run_id: str,
        shard_size_bytes: int,
        num_inputs: int,
        max_reject_fraction: float,
        manifest_fields: Dict[str, Any],
        ignored: List[Dict[str, str]],
        overwrite: bool,
        checksums: bool = False,
        locked: bool = False,
    ):
        """``checksums``: store each shard's SHA-256 in the manifest. ``locked``: the caller
        holds the lock of ``out`` under ``run_id`` (:mod:`~ray_ingest.convert.lock`),
        checked before committing."""
        self.out = fs.normalize(out)
        self.run_id = run_id
        self.checksums = checksums
        self.locked = locked
        self.staging = fs.join(self.out, mf.STAGING_PREFIX + run_id)
        self.shard_size_bytes = int(shard_size_bytes)
        self.num_inputs = int(num_inputs)
        self.max_reject_fraction = float(max_reject_fraction)
        self.manifest_fields = manifest_fields
        self.ignored = ignored
        self.overwrite = overwrite
        self.result: Optional[Dict[str, Any]] = None
        self._started = time.time()

    # -- lifecycle ----------------------------------------------------------------------
    def on_write_start(self, schema=None) -> None:
        fs.makedirs(self.staging)

    @property
    def min_bytes_per_write(self) -> int:
        return self.shard_size_bytes

    def get_name(self) -> str:
        return "TFRecordShards"

    # -- one write task -----------------------------------------------------------------
    def write(self, blocks: Iterable, ctx) -> TaskResult:
        attempt = uuid.uuid4().hex[:10]
        task = int(getattr(ctx, "task_idx", 0))
        rollers: Dict[str, _ShardRoller] = {}
        result = TaskResult()
        try:
            for block in blocks:
                table = BlockAccessor.for_block(block).to_arrow()
                if table.num_rows == 0:
                    continue
                records = binary_values(table.column(COL_RECORD))
                splits = table.column(COL_SPLIT).to_pylist()
                rejects = table.column(COL_REJECT).to_pylist()
                notes = table.column(COL_NOTE).to_pylist()
                names = table.column(COL_FILENAME).to_pylist()
                messages = table.column(COL_MESSAGE).to_pylist()
                labels = table.column(COL_LABEL).to_pylist()
                heights = table.column(COL_HEIGHT).to_pylist()
                widths = table.column(COL_WIDTH).to_pylist()
                as_is = table.column(COL_AS_IS).to_pylist()
                for i, split in enumerate(splits):
                    if rejects[i]:
                        result.rejects.append(
                            {"path": names[i], "reason": rejects[i], "message": messages[i]}
                        )
                        continue
                    roller = rollers.get(split)
                    if roller is None:
                        roller = rollers[split] = _ShardRoller(
                            self.staging, split, task, attempt, self.shard_size_bytes,
                            self.checksums)
                    roller.write(records[i])
                    result.written += 1
                    result.class_counts[(split, labels[i])] += 1
                    result.heights[heights[i]] += 1
                    result.widths[widths[i]] += 1
                    result.as_is += bool(as_is[i])
                    if notes[i]:
                        result.notes[notes[i]] += 1
            for roller in rollers.values():
                roller.close()
                result.shards.extend(roller.done)
        except BaseException as e:
            # Best effort: a half-written attempt is never committed in any case.
            for roller in rollers.values():
                for s in roller.done:
                    fs.delete_file(s.path)
                    fs.delete_file(s.index_path)
            if isinstance(e, OSError):
                raise write_error(self.out, e) from e
            raise
        return result

    # -- commit on the driver ------------------------------------------------------------
    def on_write_complete(self, write_result) -> None:
        if self.locked:
            ensure_owner(self.out, self.run_id)  # a run that lost its lock never commits
        returns = [r for r in write_result.write_returns if r is not None]
        shards = [s for r in returns for s in r.shards]
        rejects = [x for r in returns for x in r.rejects]
        notes: Counter = Counter()
        class_counts: Counter = Counter()
        heights: Counter = Counter()
        widths: Counter = Counter()
        for r in returns:
            notes.update(r.notes)
            class_counts.update(r.class_counts)
            heights.update(r.heights)
            widths.update(r.widths)
        written = sum(r.written for r in returns)
        sizes = None
        if self.manifest_fields.get("resize_mode") == mf.KEEP:
            sizes = mf.image_sizes(heights, widths, sum(r.as_is for r in returns), written)
        self._commit(shards, rejects, notes, written, class_counts, sizes)

    def on_write_failed(self, error: Exception) -> None:
        self.abort()

    def abort(self) -> None:
        """Removes this run's staging folder, having first moved back a finished output that
        a failed commit had set aside (if that fails too, the folder stays for the next run
        to restore it from)."""
        previous = fs.join(self.staging, mf.PREVIOUS_NAME)
        if fs.exists(previous):
            restore_previous(self.out, previous)
        fs.delete_dir(self.staging)

    def _commit(self, shards, rejects, notes, written, class_counts, sizes=None) -> None:
        out = self.out
        accounted = written + len(rejects)
        if accounted != self.num_inputs:
            fs.delete_dir(self.staging)
            raise ConversionError(
                f"{out}: {self.num_inputs} inputs but {written} written + {len(rejects)} "
                f"rejected = {accounted}; refusing to commit (records lost or duplicated)"
            )
        rejects.sort(key=lambda r: r["path"])
        lines = [json.dumps(r, ensure_ascii=False) for r in rejects]
        lines += [json.dumps({**r, "ignored": True}, ensure_ascii=False) for r in self.ignored]
        report = ("\n".join(lines) + "\n" if lines else "").encode()
        manifest_path = fs.join(out, mf.MANIFEST_NAME)
        finished = fs.exists(manifest_path)
        fraction = len(rejects) / max(1, self.num_inputs)
        if fraction > self.max_reject_fraction or written == 0:
            fs.delete_dir(self.staging)
            # A finished output stays as it was; the report of this run goes beside it.
            path = fs.join(out, mf.FAILED_REJECTS_NAME if finished else mf.REJECTS_NAME)
            fs.write_atomic(path, report)
            kept = f"; {out} keeps its finished output" if finished else ""
            raise ConversionError(
                f"{len(rejects)} of {self.num_inputs} inputs rejected ({fraction:.2%}), over "
                f"--max-reject-fraction {self.max_reject_fraction:g}; no manifest written{kept}. "
                f"Reasons per input: {path}"
            )
        if finished and not self.overwrite:
            raise ConversionError(f"{out} gained a manifest during the run; not overwriting")
        # Final names and the manifest, before anything in OUT changes.
        moves = []
        splits: Dict[str, Dict[str, Any]] = {}
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
            counts = [class_counts.get((split, c), 0)
                      for c in range(len(self.manifest_fields["class_names"]))]
            splits[split] = mf.split_entry(entries, class_counts=counts)
        data = self._manifest(splits, rejects, notes, written, sizes)
        mf.validate(data, manifest_path)
        staged_report = fs.join(self.staging, mf.REJECTS_NAME)
        fs.write_bytes(staged_report, report)
        # 1. The old output moves aside (manifest first, so it never describes mixed files);
        # 2. the new files move in; 3. the manifest, last: the commit.
        previous = fs.join(self.staging, mf.PREVIOUS_NAME)
        try:
            set_aside(out, previous)
            for path, name in moves:
                fs.move(path, fs.join(out, name))
            fs.move(staged_report, fs.join(out, mf.REJECTS_NAME))
            mf.write_manifest(out, data)
        except BaseException:
            self.abort()
            raise
        fs.delete_dir(self.staging)  # with the old output
        fs.delete_file(fs.join(out, mf.FAILED_REJECTS_NAME))
        self.result = data

    def _manifest(self, splits, rejects, notes, written, sizes=None) -> Dict[str, Any]:
        names = self.manifest_fields["class_names"]
        totals = [sum(s["class_counts"][c] for s in splits.values()) for c in range(len(names))]
        data = dict(self.manifest_fields)
        data.update(
            splits=splits,
            num_inputs=self.num_inputs,
            num_written=written,
            num_rejected=len(rejects),
            num_ignored=len(self.ignored),
            ignored_reasons=dict(sorted(Counter(r["reason"] for r in self.ignored).items())),
            conversions=dict(sorted(notes.items())),
            rejects_file=mf.REJECTS_NAME,
            reject_reasons=dict(sorted(Counter(r["reason"] for r in rejects).items())),
            # Classes no record has (all their inputs rejected, or none listed).
            empty_classes=[n for n, t in zip(names, totals) if t == 0],
        )
        if sizes is not None:
            data["image_sizes"] = sizes
        return data
