"""The epoch order: a pure function of (shard record counts, seed, epoch); global batches that
do not depend on the number of workers; pieces read as consecutive ranges; a label mix close
to a uniform permutation's on shards written in class order."""

from __future__ import annotations

import numpy as np
import pytest

from ray_ingest.errors import ConfigError
from ray_ingest.read.order import EpochOrder, global_batch, rank_slice, steps_per_epoch

COUNTS = (100, 37, 250, 0, 5, 1)


def test_an_epoch_is_a_permutation_of_every_record_fixed_by_seed_and_epoch():
    o = EpochOrder(COUNTS, seed=3, epoch=1, piece_records=16, window_pieces=4)
    order = o.order()
    assert order.dtype == np.int64 and sorted(order.tolist()) == list(range(sum(COUNTS)))
    assert (EpochOrder(COUNTS, 3, 1, 16, 4).order() == order).all()
    assert not (EpochOrder(COUNTS, 3, 2, 16, 4).order() == order).all()
    assert not (EpochOrder(COUNTS, 4, 1, 16, 4).order() == order).all()


def test_pieces_are_consecutive_records_of_one_shard_each_record_in_one_piece():
    o = EpochOrder(COUNTS, seed=0, epoch=0, piece_records=16, window_pieces=3)
    seen = []
    for pieces, perm in o.windows():
        assert 1 <= len(pieces) <= 3
        assert sorted(perm.tolist()) == list(range(sum(p.num_records for p in pieces)))
        for p in pieces:
            assert 0 <= p.start < p.stop <= COUNTS[p.shard] and p.num_records <= 16
            seen.extend((p.shard, r) for r in range(p.start, p.stop))
    assert sorted(seen) == [(s, r) for s, n in enumerate(COUNTS) for r in range(n)]
    # The window's records are those of its pieces, in the permuted order.
    offsets = o.offsets
    pieces, perm = o.windows()[0]
    ids = np.concatenate([np.arange(offsets[p.shard] + p.start, offsets[p.shard] + p.stop)
                          for p in pieces])
    assert (o.order()[:len(ids)] == ids[perm]).all()


def test_locate_gives_each_ids_shard_and_record():
    o = EpochOrder(COUNTS, seed=1, epoch=0)
    shard, record = o.locate(np.arange(sum(COUNTS)))
    assert list(zip(shard.tolist(), record.tolist())) == [
        (s, r) for s, n in enumerate(COUNTS) for r in range(n)]


@pytest.mark.parametrize("world", [1, 2, 4, 8])
def test_global_batches_are_the_same_for_any_world_size_that_divides_the_batch(world):
    order = EpochOrder(COUNTS, seed=5, epoch=2).order()
    batch = 32
    for step in range(steps_per_epoch(len(order), batch)):
        parts = [rank_slice(order, step, batch, r, world) for r in range(world)]
        assert all(len(p) == batch // world for p in parts)
        assert (np.concatenate(parts) == global_batch(order, step, batch)).all()
        assert (global_batch(order, step, batch) == order[step * batch:(step + 1) * batch]).all()


def test_wrong_arguments_are_refused_with_the_rule():
    order = EpochOrder(COUNTS, seed=0, epoch=0).order()
    with pytest.raises(ConfigError, match=r"the number of workers \(3\) must divide the global "
                                          r"batch size \(32\)"):
        rank_slice(order, 0, 32, 0, 3)
    with pytest.raises(ConfigError, match=r"rank must be in 0..1, got 2"):
        rank_slice(order, 0, 32, 2, 2)
    with pytest.raises(ConfigError, match=r"step must be in 0..11, got 12"):
        global_batch(order, 12, 32)
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        steps_per_epoch(10, 0)
    for bad in ({"piece_records": 0}, {"window_pieces": 1.5}, {"seed": -1}, {"epoch": None}):
        with pytest.raises(ConfigError, match="must be"):
            EpochOrder(COUNTS, **{"seed": 0, "epoch": 0, **bad})
    with pytest.raises(ConfigError, match="record counts"):
        EpochOrder((3, -1), 0, 0)


def _mean_tv(labels, order, batch, k):
    want = np.bincount(labels, minlength=k) / len(labels)
    steps = len(order) // batch
    b = labels[order[:steps * batch]].reshape(steps, batch)
    counts = np.stack([np.bincount(x, minlength=k) for x in b])
    return float((0.5 * np.abs(counts / batch - want).sum(axis=1)).mean())


def test_on_shards_in_class_order_batches_mix_labels_almost_as_a_uniform_permutation():
    classes, per_class, shard = 200, 500, 1000
    labels = np.repeat(np.arange(classes), per_class)
    counts = (shard,) * (len(labels) // shard)
    batch = 256
    plan = np.mean([_mean_tv(labels, EpochOrder(counts, 7, e).order(), batch, classes)
                    for e in range(2)])
    uniform = np.mean([_mean_tv(labels, np.random.default_rng(e).permutation(len(labels)),
                                batch, classes) for e in range(2)])
    assert uniform / plan >= 0.95, (uniform, plan)
    # Reads of whole windows of long runs would not: the test tells the two apart.
    coarse = _mean_tv(labels, EpochOrder(counts, 7, 0, piece_records=64,
                                         window_pieces=64).order(), batch, classes)
    assert uniform / coarse < 0.6
