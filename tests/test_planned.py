"""The planned read: each rank's share of every global batch, in the epoch order's sequence,
read by Ray Data read tasks; the same global batches for any number of ranks; a resumed read
from a step on; the position as two integers."""

from __future__ import annotations

import numpy as np
import pytest

from ray_ingest.errors import ConfigError
from ray_ingest.format.manifest import read_manifest
from ray_ingest.format.records import iter_records
from ray_ingest.read.order import EpochOrder, global_batch, steps_per_epoch
from ray_ingest.read.planned import PlannedPosition, read_planned

pytestmark = pytest.mark.usefixtures("ray_session")

BATCH = 16
SMALL = dict(piece_records=4, window_pieces=8)  # several windows on the small test set


def _steps(ds, share):
    """The rank's batches as the training loop iterates them: lists of file names."""
    return [b["filename"].tolist() for b in ds.iter_batches(batch_size=share,
                                                             batch_format="numpy")]


def _names(path):
    return [r.filename for r in iter_records(str(path), "train")]


@pytest.mark.parametrize("encoding", ["jpeg", "raw"])
def test_the_ranks_read_the_plans_global_batches_whatever_their_number(converted, encoding):
    path = converted[encoding]
    m = read_manifest(str(path))
    names = np.array(_names(path), dtype=object)
    order = EpochOrder.of(m, "train", 0, 1, **SMALL).order()
    steps = steps_per_epoch(len(order), BATCH)
    want = [names[global_batch(order, k, BATCH)].tolist() for k in range(steps)]
    for world in (1, 2, 4):
        share = BATCH // world
        per_rank = [_steps(read_planned(str(path), epoch=1, batch_size=BATCH, rank=r,
                                        world=world, with_filename=True, steps_per_task=3,
                                        **SMALL), share) for r in range(world)]
        assert all(len(s) == steps for s in per_rank), world
        got = [sum((per_rank[r][k] for r in range(world)), []) for k in range(steps)]
        assert got == want, world
    # Each record once in the epoch (less the last, partial batch), none twice.
    flat = sum(want, [])
    assert len(set(flat)) == len(flat) == steps * BATCH


def test_a_resumed_read_starts_at_the_next_global_batch(converted):
    path = str(converted["jpeg"])
    full = _steps(read_planned(path, epoch=0, batch_size=BATCH, with_filename=True, **SMALL),
                  BATCH)
    tail = _steps(read_planned(path, epoch=0, batch_size=BATCH, start_step=5,
                               with_filename=True, **SMALL), BATCH)
    assert tail == full[5:]
    other = _steps(read_planned(path, epoch=1, batch_size=BATCH, with_filename=True, **SMALL),
                   BATCH)
    # Another epoch, another order (and another last, partial batch left out).
    assert other != full and len(other) == len(full)
    assert set(sum(other, [])) <= set(_names(path)) and len(set(sum(other, []))) == len(
        other) * BATCH


def test_consumer_decode_and_pixels_come_in_the_same_order(converted):
    from ray_ingest.read import iter_images

    path = str(converted["jpeg"])
    planned = dict(epoch=2, batch_size=BATCH, with_filename=True, **SMALL)
    decoded = [b for b in read_planned(path, **planned).iter_batches(
        batch_size=BATCH, batch_format="numpy")]
    encoded = list(iter_images(read_planned(path, decode="consumer", **planned),
                               batch_size=BATCH))
    assert len(decoded) == len(encoded)
    for a, b in zip(decoded, encoded):
        assert a["filename"].tolist() == list(b["filename"])
        assert (a["label"] == np.asarray(b["label"])).all()
        assert (a["image"] == np.asarray(b["image"])).all()


def test_wrong_arguments_are_refused_before_any_read(converted):
    path = str(converted["jpeg"])
    with pytest.raises(ConfigError, match=r"the number of workers \(3\) must divide"):
        read_planned(path, epoch=0, batch_size=BATCH, rank=0, world=3)
    with pytest.raises(ConfigError, match="shuffle_files: not options of a planned read"):
        read_planned(path, epoch=0, batch_size=BATCH, shuffle_files=True)
    with pytest.raises(ConfigError, match=r"start_step must be in 0\.\."):
        read_planned(path, epoch=0, batch_size=BATCH, start_step=10**6)
    with pytest.raises(ConfigError, match="no split 'test'"):
        read_planned(path, epoch=0, batch_size=BATCH, split="test")


def test_a_position_is_two_integers_that_round_trip():
    p = PlannedPosition(2, 7)
    assert PlannedPosition.load_state_dict(p.state_dict()) == p
    assert p.advanced(8) == PlannedPosition(3, 0) and p.advanced(9) == PlannedPosition(2, 8)
    with pytest.raises(ConfigError, match="a position is"):
        PlannedPosition.load_state_dict({"epoch": 1})
    with pytest.raises(ConfigError, match=">= 0"):
        PlannedPosition.load_state_dict({"epoch": -1, "step": 0})


def test_a_feed_resumed_from_its_state_continues_with_the_next_global_batch(converted):
    """Interrupted after 3 steps and resumed by two ranks: the global batches of the whole
    run are the uninterrupted run's, each epoch's records once."""
    from ray_ingest.read.planned import PlannedFeed

    path = str(converted["jpeg"])
    kw = dict(batch_size=BATCH, epochs=2, with_filename=True, **SMALL)
    whole = [b["filename"].tolist() for b in PlannedFeed(path, **kw)]
    first = PlannedFeed(path, **kw)
    head = []
    for b in first:
        head.append(b["filename"].tolist())
        if len(head) == 3:
            break
    state = first.state_dict()
    assert state == {"epoch": 0, "step": 3}
    ranks = [PlannedFeed(path, rank=r, world=2, position=state, **kw) for r in range(2)]
    halves = [[b["filename"].tolist() for b in f] for f in ranks]
    assert len(halves[0]) == len(halves[1]) == len(whole) - 3
    assert head + [a + b for a, b in zip(*halves)] == whole
    assert ranks[0].state_dict() == {"epoch": 2, "step": 0}
    steps = len(whole) // 2
    for epoch in (whole[:steps], whole[steps:]):
        flat = sum(epoch, [])
        assert len(set(flat)) == len(flat)


def test_options_a_planned_read_cannot_honour_are_refused(converted):
    path = str(converted["jpeg"])
    for bad in ({"verify_checksums": True}, {"shard": (0, 2)}, {"records_per_task": 8},
                {"override_num_blocks": 4}, {"skip_corrupt": True}):
        with pytest.raises(ConfigError, match="not options of a planned read"):
            read_planned(path, epoch=0, batch_size=BATCH, **bad)
    with pytest.raises(ConfigError, match=r"fewer than one global batch of 4096"):
        read_planned(path, epoch=0, batch_size=4096)


def test_a_position_at_an_epochs_end_goes_on_with_the_next_epoch(converted):
    from ray_ingest.read.planned import PlannedFeed

    path = str(converted["jpeg"])
    kw = dict(batch_size=BATCH, epochs=2, with_filename=True, **SMALL)
    whole = [b["filename"].tolist() for b in PlannedFeed(path, **kw)]
    steps = len(whole) // 2
    feed = PlannedFeed(path, position={"epoch": 0, "step": steps}, **kw)
    got, states = [], []
    for b in feed:
        got.append(b["filename"].tolist())
        states.append(feed.state_dict())
    assert got == whole[steps:]
    assert states[0] == {"epoch": 1, "step": 1} and states[-1] == {"epoch": 2, "step": 0}
    with pytest.raises(ConfigError, match="no split 'test'"):
        next(iter(PlannedFeed(path, split="test", **kw)))


def test_a_feed_caps_its_epochs_and_takes_a_batch_maker_of_ones_own(converted):
    from ray_ingest.read.planned import PlannedFeed

    path = str(converted["jpeg"])
    kw = dict(batch_size=BATCH, epochs=2, with_filename=True, **SMALL)
    whole = [b["filename"].tolist() for b in PlannedFeed(path, **kw)]
    per_epoch = len(whole) // 2
    made = []

    def batches(ds, rows):
        made.append(rows)
        return ds.iter_batches(batch_size=rows, batch_format="numpy")

    capped = PlannedFeed(path, steps_per_epoch=2, batches=batches, **kw)
    got = [b["filename"].tolist() for b in capped]
    assert got == whole[:2] + whole[per_epoch:per_epoch + 2]
    assert made == [BATCH] and capped.state_dict() == {"epoch": 2, "step": 0}


def _own_loop(config):
    """A Ray Train loop of a user's own: each worker's PlannedFeed, its ids per step."""
    import json
    import os

    import ray.train

    from ray_ingest.read.planned import PlannedFeed

    ctx = ray.train.get_context()
    feed = PlannedFeed(config["data"], batch_size=BATCH, epochs=1, with_filename=True,
                       rank=ctx.get_world_rank(), world=ctx.get_world_size(), **SMALL)
    steps = [b["filename"].tolist() for b in feed]
    with open(os.path.join(config["out"], f"rank{ctx.get_world_rank()}.json"), "w") as f:
        json.dump({"steps": steps, "state": feed.state_dict()}, f)


@pytest.mark.slow
def test_a_feed_in_a_ray_train_loop_of_ones_own_gives_the_same_global_batches(converted,
                                                                              tmp_path):
    import json

    from ray.train import RunConfig, ScalingConfig
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    from ray_ingest.read.planned import PlannedFeed

    path = str(converted["jpeg"])
    want = [b["filename"].tolist() for b in PlannedFeed(path, batch_size=BATCH, epochs=1,
                                                        with_filename=True, **SMALL)]
    out = tmp_path / "ranks"
    out.mkdir()
    DataParallelTrainer(
        _own_loop, train_loop_config={"data": path, "out": str(out)},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.1}),
        run_config=RunConfig(storage_path=str(tmp_path / "runs"), name="own")).fit()
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["state"] for r in ranks] == [{"epoch": 1, "step": 0}] * 2
    assert [a + b for a, b in zip(ranks[0]["steps"], ranks[1]["steps"])] == want


def test_a_feed_in_windows_gives_the_same_global_batches(converted, monkeypatch):
    """Windows of a few steps (several per epoch, one execution each) and windows of whole
    epochs give the batches of one execution of the whole run, resumed mid-window too; a
    window is at least one read task's worth."""
    import ray_ingest.read.planned as planned

    path = str(converted["jpeg"])
    kw = dict(batch_size=BATCH, epochs=2, with_filename=True, **SMALL)
    epochs = [_steps(read_planned(path, epoch=e, batch_size=BATCH, with_filename=True,
                                  **SMALL), BATCH) for e in (0, 1)]
    whole = epochs[0] + epochs[1]
    steps = len(epochs[0])
    from ray_ingest.format.check import RecordSpec
    from ray_ingest.read.options import block_bytes_per_row

    row = block_bytes_per_row(RecordSpec.of(read_manifest(path)), "workers")
    for window_steps in (planned.STEPS_PER_TASK, steps + 1, 2 * steps):
        monkeypatch.setattr(planned, "WINDOW_BYTES", window_steps * BATCH * row)
        feed = planned.PlannedFeed(path, **kw)
        assert feed.window_steps() == window_steps
        wins = list(feed.windows(steps))
        if window_steps < steps:
            assert len(wins) > 2 and all(w[2] == 1 for w in wins)
        else:
            assert wins == [(0, 0, min(2, window_steps // steps), None)] + (
                [(1, 0, 1, None)] if window_steps // steps < 2 else [])
        assert [b["filename"].tolist() for b in feed] == whole
        resumed = planned.PlannedFeed(path, position={"epoch": 0, "step": 5}, **kw)
        assert [b["filename"].tolist() for b in resumed] == whole[5:]
    monkeypatch.setattr(planned, "WINDOW_BYTES", 1)
    assert planned.PlannedFeed(path, **kw).window_steps() == planned.STEPS_PER_TASK
    part = _steps(read_planned(path, epoch=0, batch_size=BATCH, start_step=2, end_step=5,
                               with_filename=True, **SMALL), BATCH)
    assert part == epochs[0][2:5]
    with pytest.raises(ConfigError, match="end_step must be an integer >= 1"):
        read_planned(path, epoch=0, batch_size=BATCH, end_step=0)
