"""Staged shards: what one writer (a Ray write task attempt, or a :class:`ShardSetWriter`)
writes under a staging folder before the commit gives the files their final names.

A :class:`StagingWriter` keeps one :class:`ShardRoller` per split; each rolls to a new file
when the next record would take the shard past ``max_bytes``, writes the shard's ``.idx``
when it closes it, and with ``checksums`` feeds every byte it writes to a SHA-256. File names
hold the task number and an attempt id drawn per writer (:func:`new_attempt`), so two
attempts of one task never write the same file. :class:`StagedResult` is what a writer hands
to the commit (:func:`~ray_ingest.format.commit.commit_output`): its closed shards and the
counts the manifest needs.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ray_ingest import fs
from ray_ingest.format import manifest as mf
from ray_ingest.format.framing import OVERHEAD, TFRecordWriter


def staging_dir(out: str, run_id: str) -> str:
    """The staging folder of run ``run_id`` inside ``out``."""
    return fs.join(out, mf.STAGING_PREFIX + run_id)


def new_attempt() -> str:
    """An id unique to one writing attempt, part of the names of the files it stages."""
    return uuid.uuid4().hex[:10]


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
class StagedResult:
    """The staged shards of one writer and what it wrote: the manifest's counts."""

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

    def add_record(self, split: str, label: int, height: Optional[int], width: Optional[int],
                   as_is: bool, note: Optional[str] = None) -> None:
        self.written += 1
        self.class_counts[(split, label)] += 1
        self.heights[height] += 1
        self.widths[width] += 1
        self.as_is += bool(as_is)
        if note:
            self.notes[note] += 1

    def add_reject(self, path: str, reason: str, message: str) -> None:
        self.rejects.append({"path": path, "reason": reason, "message": message})


class HashingStream:
    """A write-only stream that also feeds what passes through it to a SHA-256."""

    def __init__(self, stream):
        self.stream = stream
        self.hash = hashlib.sha256()

    def write(self, data) -> None:
        self.hash.update(data)
        self.stream.write(data)

    def close(self) -> None:
        self.stream.close()


class ShardRoller:
    """Writes one split's records of one writing attempt, rolling at ``max_bytes``."""

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
            self._stream = HashingStream(self._stream)
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

    def discard(self) -> None:
        """Closes an open file without finishing it, and deletes every file written."""
        stream, self._stream, self._writer = self._stream, None, None
        paths = [p for s in self.done for p in (s.path, s.index_path)]
        if stream is not None:
            paths.append(self._path)
            try:
                stream.close()
            except OSError:
                pass
        for path in paths:
            try:
                fs.delete_file(path)
            except OSError:
                pass  # the staging folder goes as a whole in any case
        self.done = []


class StagingWriter:
    """The shards of one writing attempt, one :class:`ShardRoller` per split."""

    def __init__(self, staging: str, *, task: int, max_bytes: int, checksums: bool = False,
                 attempt: Optional[str] = None):
        self.staging, self.task = staging, int(task)
        self.max_bytes, self.checksums = int(max_bytes), bool(checksums)
        self.attempt = attempt or new_attempt()
        self._rollers: Dict[str, ShardRoller] = {}

    def write(self, split: str, record) -> None:
        roller = self._rollers.get(split)
        if roller is None:
            roller = self._rollers[split] = ShardRoller(
                self.staging, split, self.task, self.attempt, self.max_bytes, self.checksums)
        roller.write(record)

    def close(self) -> List[StagedShard]:
        """Finishes every open shard; returns all shards written."""
        shards: List[StagedShard] = []
        for roller in self._rollers.values():
            roller.close()
            shards.extend(roller.done)
        return shards

    def discard(self) -> None:
        """Best effort: deletes the files of this attempt (never committed in any case)."""
        for roller in self._rollers.values():
            roller.discard()
