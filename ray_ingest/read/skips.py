"""What a read with ``skip_corrupt`` skipped, for the caller to see.

``read_records(..., skip_corrupt=True)`` starts a small Ray actor (:class:`SkipLog`, on the
caller's node, no CPU) and its read tasks report each damaged range to it before they yield a
block, wherever they run: on other nodes, or behind a Ray Train worker's
``get_dataset_shard``. :func:`skip_report` fetches what it holds, from the dataset the read
returned or from the actor's handle (:func:`skip_log_of`), at any time; once a pass over the
data has finished, it covers that pass. A range skipped again (the next epoch, a retried task)
is counted once.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace
from typing import Callable, Iterable, List, Optional, Tuple

from ray_ingest.errors import ConfigError
from ray_ingest.format.framing import SkippedRecords


def merge_ranges(ranges: Iterable[SkippedRecords]) -> List[SkippedRecords]:
    """Overlapping or adjacent ranges of the same file as one, sorted by file and record."""
    merged: List[SkippedRecords] = []
    for r in sorted(set(ranges), key=lambda r: (r.path, r.first, r.last)):
        last = merged[-1] if merged else None
        if last is not None and last.path == r.path and r.first <= last.last + 1:
            reasons = last.reason.split("; ")
            merged[-1] = replace(
                last, last=max(last.last, r.last), offset=min(last.offset, r.offset),
                end=max(last.end, r.end),
                reason="; ".join(reasons + [r.reason] if r.reason not in reasons else reasons))
        else:
            merged.append(r)
    return merged


@dataclass(frozen=True)
class SkipReport:
    """The records a read skipped: ``ranges`` (merged, by file and record number)."""

    ranges: Tuple[SkippedRecords, ...] = ()

    @property
    def records(self) -> int:
        return sum(r.count for r in self.ranges)

    def lines(self) -> List[str]:
        return [f"{r.path}: records {r.first}..{r.last} (bytes {r.offset}..{r.end}): {r.reason}"
                for r in self.ranges]

    def summary(self, limit: int = 5) -> str:
        """One line: the count, and the first ``limit`` ranges."""
        if not self.ranges:
            return "no corrupt records skipped"
        shown = self.lines()[:limit]
        more = len(self.ranges) - len(shown)
        noun = "record" if self.records == 1 else "records"
        return (f"{self.records} corrupt {noun} skipped: " + "; ".join(shown)
                + (f"; and {more} more ranges" if more else ""))

    def to_dict(self) -> dict:
        return {"records": self.records,
                "ranges": [{"path": r.path, "first": r.first, "last": r.last,
                            "offset": r.offset, "end": r.end, "reason": r.reason}
                           for r in self.ranges]}


class SkipLog:
    """The actor behind a read's :class:`SkipReport` (created by :func:`start_skip_log`)."""

    def __init__(self):
        self._ranges: set = set()

    def add(self, ranges: List[SkippedRecords]) -> None:
        self._ranges.update(ranges)

    def ranges(self) -> List[SkippedRecords]:
        return merge_ranges(self._ranges)


def start_skip_log():
    """A new :class:`SkipLog` actor on this node (it goes when the last handle does)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    return ray.remote(SkipLog).options(num_cpus=0, scheduling_strategy=here).remote()


def reporter(log) -> Callable[[List[SkippedRecords]], None]:
    """What a read task calls with its skipped ranges: waits until the log holds them, so a
    report fetched after a pass is complete."""

    def report(ranges: List[SkippedRecords]) -> None:
        import ray

        ray.get(log.add.remote(list(ranges)))

    return report


#: The skip log of each dataset that ``read_records(..., skip_corrupt=True)`` returned, for
#: as long as that dataset object lives.
_LOGS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def remember_skip_log(dataset, log) -> None:
    """Notes ``log`` as the :class:`SkipLog` of ``dataset`` (by ``read_records``)."""
    _LOGS[dataset] = log


def skip_log_of(dataset):
    """The :class:`SkipLog` handle of a dataset that ``read_records(..., skip_corrupt=True)``
    returned, else None. A dataset derived from it (``map_batches``, ``limit``...) is a new
    object: keep this handle, or the dataset the read returned, to ask for its report."""
    try:
        return _LOGS.get(dataset)
    except TypeError:  # not weakly referable: no dataset of ours
        return None


def skip_report(source) -> SkipReport:
    """What was skipped by the read behind ``source``: the ``Dataset`` that
    ``read_records(..., skip_corrupt=True)`` returned, or the handle that :func:`skip_log_of`
    returns for it (which a dataset derived from it, or a Ray Train worker, can be asked
    with)."""
    import ray

    log: Optional[object] = source
    if not isinstance(source, ray.actor.ActorHandle):
        log = skip_log_of(source)
        if log is None:
            raise ConfigError("skip_report needs the dataset that read_records(..., "
                              "skip_corrupt=True) returned, or its skip_log_of(...) handle "
                              "(a dataset derived from it is a new object)")
    return SkipReport(tuple(ray.get(log.ranges.remote())))
