"""MosaicML Streaming's row: MDS shards written from the split's JPEG bytes (no compression)
into a scratch folder, read by a ``StreamingDataset`` (local only, no shuffle, one epoch
sized to cover every run) through a torch ``DataLoader`` with ``workers = cores``, decoded in
the workers with simplejpeg (the decode limit's settings)."""

from __future__ import annotations

from ray_ingest.bench.measure import Variant, timed_stream
from ray_ingest.bench.peers.common import (
    GROUP,
    loader_counts,
    loader_kwargs,
    missing_modules,
    scratch_dir,
    simplejpeg_collate,
    split_bytes,
)

ROW = "MosaicML Streaming (MDS) + simplejpeg"
#: Bytes per MDS shard (Streaming's default).
SHARD_BYTES = 1 << 26


def missing():
    return missing_modules("torch", "streaming")


def mds_collate(samples):
    """The DataLoader's ``collate_fn`` (in its workers): MDS samples decoded into one batch."""
    return simplejpeg_collate([(s["jpeg"], s["label"]) for s in samples])


def write_mds(folder: str, encoded, labels) -> None:
    from streaming import MDSWriter

    with MDSWriter(out=folder, columns={"jpeg": "bytes", "label": "int"}, compression=None,
                   size_limit=SHARD_BYTES, progress_bar=False) as writer:
        for data, label in zip(encoded, labels):
            writer.write({"jpeg": data, "label": int(label)})


def make_row(ctx) -> Variant:
    import torch.utils.data as tud
    from streaming import StreamingDataset

    from ray_ingest.runtime import usable_cores

    encoded, labels = split_bytes(ctx)
    folder, remove = scratch_dir("mds")
    write_mds(folder, encoded, labels)
    # One epoch long enough for the warm-up and the timed images of any run: the dataset
    # repeats the split (Streaming's up-sampling), with no epoch boundary inside a run.
    dataset = StreamingDataset(local=folder, batch_size=ctx.batch_size, shuffle=False,
                               epoch_size=len(encoded) * ctx.passes)

    def stream():
        kw = loader_kwargs(ctx.batch_size, usable_cores())
        kw["persistent_workers"] = False  # a fresh loader, so a fresh epoch, per run
        return loader_counts(tud.DataLoader(dataset, collate_fn=mds_collate, **kw), 1)

    return Variant(ROW, GROUP, timed_stream(stream), warmup=ctx.warmup, close=remove,
                   note="workers = cores, MDS shards of the same bytes")
