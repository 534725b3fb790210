"""The TFRecord shard writer of a conversion: a Ray Data :class:`~ray.data.Datasink`.

Each write task receives about one shard's worth of converted rows (``min_bytes_per_write``)
and writes them with a :class:`~ray_ingest.format.staging.StagingWriter`: shards under the
run's staging folder with names unique to the task *attempt*, rolled at the size limit, with
their ``.idx`` and, with ``checksums``, their SHA-256. Bad inputs arrive as rows with a reject
reason and are returned, not written. ``on_write_complete`` (on the driver) hands what the
successful attempts returned to :func:`~ray_ingest.format.commit.commit_output`, the commit
that every writer of the format shares: every input back exactly once, the reject limit,
final names, ``rejects.jsonl``, ``manifest.json`` last, an overwrite atomic as a whole. Files
of failed or retried attempts are never renamed, so a killed worker can neither lose nor
duplicate a record; they go away with the staging folder.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Iterable, List, Optional

from ray.data import Datasink
from ray.data.block import BlockAccessor

from ray_ingest import fs, quiet
from ray_ingest.format import commit
from ray_ingest.format.arrow import binary_values
from ray_ingest.format.commit import write_error
from ray_ingest.format.lock import ensure_owner
from ray_ingest.format.staging import StagedResult, StagingWriter, staging_dir

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


#: What one write task returns to the driver: its staged shards and counts.
TaskResult = StagedResult


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
        holds the lock of ``out`` under ``run_id`` (:mod:`~ray_ingest.format.lock`),
        checked before committing."""
        self.out = fs.normalize(out)
        self.run_id = run_id
        self.checksums = checksums
        self.locked = locked
        self.staging = staging_dir(self.out, run_id)
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
        quiet.quiet_ray_data_task()
        staged = StagingWriter(self.staging, task=int(getattr(ctx, "task_idx", 0)),
                               max_bytes=self.shard_size_bytes, checksums=self.checksums)
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
                        result.add_reject(names[i], rejects[i], messages[i])
                        continue
                    staged.write(split, records[i])
                    result.add_record(split, labels[i], heights[i], widths[i], as_is[i],
                                      notes[i])
            result.shards.extend(staged.close())
        except BaseException as e:
            staged.discard()  # best effort: a half-written attempt is never committed anyway
            if isinstance(e, OSError):
                raise write_error(self.out, e) from e
            raise
        return result

    # -- commit on the driver ------------------------------------------------------------
    def on_write_complete(self, write_result) -> None:
        if self.locked:
            ensure_owner(self.out, self.run_id)  # a run that lost its lock never commits
        returns = [r for r in write_result.write_returns if r is not None]
        self.result = commit.commit_output(
            self.out, self.staging, returns, num_inputs=self.num_inputs,
            max_reject_fraction=self.max_reject_fraction,
            manifest_fields=self.manifest_fields, ignored=self.ignored,
            overwrite=self.overwrite)

    def on_write_failed(self, error: Exception) -> None:
        self.abort()

    def abort(self) -> None:
        """Removes this run's staging folder, having first moved back a finished output that
        a failed commit had set aside (if that fails too, the folder stays for the next run
        to restore it from)."""
        commit.abort(self.out, self.staging)
