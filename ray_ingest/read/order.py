"""An epoch's sample order, planned once: a pure function of (the split's shards, seed, epoch).

The order is built from *pieces*, runs of ``piece_records`` consecutive records of one shard
(each read as one range request). The pieces of the whole split are shuffled together, then
taken ``window_pieces`` at a time: within such a *window* every record's place is drawn
uniformly (a random permutation of the window's records). Reads stay sequential, one ranged
read per piece, while a global batch draws its samples from the many pieces of its window,
spread over the split's shards: on shards written in class order, the label mix of each batch
comes close to that of a uniform permutation of all records once a window spans enough
pieces (measured: ``benchmarks/shuffle_bench.py``, figures in ``benchmarks/RESULTS.md``).

Global batch ``k`` of an epoch is positions ``[k*B, (k+1)*B)`` of the order, whatever the
number of workers: rank ``r`` of ``W`` trains positions ``[k*B + r*B/W, k*B + (r+1)*B/W)``,
so any ``W`` that divides ``B`` trains the same global batches, and a position in the epoch
is two integers (the epoch and the next global batch).

The order depends on the shards' record counts in manifest order, the seed and the epoch
alone: not on the number of workers or nodes, timing or Ray's scheduling. It is drawn with
NumPy's PCG64 generator; a NumPy release that changed ``Generator.permutation`` would draw
another order (a run resumed under the same environment gets the same one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from ray_ingest.errors import ConfigError

#: Keeps this generator's stream apart from the other draws made from the same (seed, epoch).
_ORDER_STREAM = 0x6F72646572  # "order"

#: Defaults, from the shuffle benchmark on shards written in class order: 16 consecutive
#: records a read, 2,048 pieces a window (32,768 records: ~360 MB of 224 px JPEG records of
#: natural photos). A global batch of 256 then draws nearly every sample from another piece,
#: and its label mix is within a few percent of a uniform permutation's.
PIECE_RECORDS = 16
WINDOW_PIECES = 2048


@dataclass(frozen=True)
class Piece:
    """Records ``[start, stop)`` of shard ``shard`` (its place in the split's shard list)."""

    shard: int
    start: int
    stop: int

    @property
    def num_records(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class EpochOrder:
    """The order of one epoch of a split: :meth:`order` gives every record's global id (its
    place in the split's records, shards in manifest order) in the order it is trained."""

    #: Records of each shard of the split, in manifest order.
    counts: Tuple[int, ...]
    seed: int
    epoch: int
    piece_records: int = PIECE_RECORDS
    window_pieces: int = WINDOW_PIECES

    def __post_init__(self):
        for name in ("piece_records", "window_pieces"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if any(not isinstance(c, int) or c < 0 for c in self.counts):
            raise ConfigError(f"record counts must be integers >= 0, got {self.counts!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not isinstance(self.epoch, int) or self.epoch < 0:
            raise ConfigError(f"epoch must be an integer >= 0, got {self.epoch!r}")

    @classmethod
    def of(cls, manifest, split: str, seed: int, epoch: int, **kwargs) -> "EpochOrder":
        """The order of ``split`` of a conversion output's manifest."""
        counts = tuple(int(s.num_records) for s in manifest.shards(split))
        return cls(counts, seed, epoch, **kwargs)

    @property
    def num_records(self) -> int:
        return sum(self.counts)

    @property
    def offsets(self) -> np.ndarray:
        """The global id of each shard's first record."""
        return np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)[:-1]]).astype(
            np.int64) if self.counts else np.zeros(0, np.int64)

    def _rng(self) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64(
            np.random.SeedSequence([self.seed, self.epoch, _ORDER_STREAM])))

    def windows(self) -> List[Tuple[List[Piece], np.ndarray]]:
        """Each window: its pieces (in read order) and the permutation of its records (an
        index into the records of those pieces, concatenated)."""
        rng = self._rng()
        pieces = [Piece(i, start, min(start + self.piece_records, n))
                  for i, n in enumerate(self.counts) for start in range(0, n, self.piece_records)]
        shuffled = [pieces[i] for i in rng.permutation(len(pieces))]
        out = []
        for w in range(0, len(shuffled), self.window_pieces):
            group = shuffled[w:w + self.window_pieces]
            out.append((group, rng.permutation(sum(p.num_records for p in group))))
        return out

    def order(self) -> np.ndarray:
        """Every record's global id, in the epoch's order (int64, one per record)."""
        offsets = self.offsets
        parts = []
        for group, perm in self.windows():
            ids = np.concatenate([np.arange(offsets[p.shard] + p.start, offsets[p.shard] + p.stop,
                                            dtype=np.int64) for p in group])
            parts.append(ids[perm])
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def locate(self, ids: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``(shard, record)`` of each global id."""
        ids = np.asarray(ids, dtype=np.int64)
        shard = np.searchsorted(np.cumsum(self.counts), ids, side="right")
        return shard, ids - self.offsets[shard]


def steps_per_epoch(num_records: int, batch_size: int) -> int:
    """Whole global batches in an epoch (a last, partial one is not trained)."""
    _check_batch(batch_size)
    return num_records // batch_size


def global_batch(order: np.ndarray, step: int, batch_size: int) -> np.ndarray:
    """The ids of global batch ``step`` (from 0) of an epoch's ``order``."""
    _check_batch(batch_size)
    if not 0 <= step < steps_per_epoch(len(order), batch_size):
        raise ConfigError(f"step must be in 0..{steps_per_epoch(len(order), batch_size) - 1}, "
                          f"got {step!r}")
    return order[step * batch_size:(step + 1) * batch_size]


def rank_slice(order: np.ndarray, step: int, batch_size: int, rank: int,
               world: int) -> np.ndarray:
    """The ids rank ``rank`` of ``world`` trains at global batch ``step``: its contiguous
    ``batch_size / world`` share of the batch."""
    if not isinstance(world, int) or world < 1 or batch_size % world:
        raise ConfigError(f"the number of workers ({world!r}) must divide the global batch "
                          f"size ({batch_size}): each worker trains an equal share of every "
                          "global batch")
    if not isinstance(rank, int) or not 0 <= rank < world:
        raise ConfigError(f"rank must be in 0..{world - 1}, got {rank!r}")
    share = batch_size // world
    batch = global_batch(order, step, batch_size)
    return batch[rank * share:(rank + 1) * share]


def _check_batch(batch_size) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")

