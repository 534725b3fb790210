"""The rows of the throughput study: a table from row name to the factory of its run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List

from ray_ingest import fs
from ray_ingest.bench.measure import Variant, timed_stream
from ray_ingest.bench.tfdata import (
    BATCHED_ROW,
    CACHE_ROW,
    TF_ROWS,
    has_tensorflow,
    tf_counts,
    tf_dataset,
)
from ray_ingest.format import keys
from ray_ingest.format.manifest import Manifest

LIMIT = "decode limit (every core decoding)"
RAY_STOCK = "Ray Data read_tfrecords (stock)"
OURS_ITER = "ray-ingest iter_batches"
OURS_TF = "ray-ingest iter_tf_batches"
OURS_CONSUMER = "ray-ingest iter_images consumer decode"
OURS_TRAIN = "ray-ingest Ray Train (decode in read tasks)"
OURS_TRAIN_CONSUMER = "ray-ingest Ray Train (consumer decode)"
OURS_TRAIN_GPU = "ray-ingest Ray Train (GPU decode)"
#: The Ray Train worker's row of each decode placement.
TRAIN_ROWS = {"workers": OURS_TRAIN, "consumer": OURS_TRAIN_CONSUMER, "gpu": OURS_TRAIN_GPU}
ALL_ROWS = ((LIMIT,) + TF_ROWS + (RAY_STOCK, OURS_ITER, OURS_CONSUMER, OURS_TF)
            + tuple(TRAIN_ROWS.values()))


@dataclass(frozen=True)
class Context:
    """What every row reads: the split's shards, how many passes a run needs, the batch size."""

    manifest: Manifest
    split: str
    passes: int
    batch_size: int
    warmup: int

    @property
    def files(self) -> List[str]:
        return [fs.join(self.manifest.root, s.file) for s in self.manifest.shards(self.split)]


def has_gpu_decode() -> bool:
    try:
        from ray_ingest.read.gpu import probe

        return probe("torch")[0]
    except ImportError:
        return False


def available_rows(encoding: str = keys.FORMAT_JPEG) -> List[str]:
    """The rows this machine can run on data of this encoding: tf.data rows, Ray's stock
    reader and iter_tf_batches need TensorFlow; the decode limit and the GPU row need JPEG
    records (and the GPU row a GPU decoder)."""
    rows = list(ALL_ROWS)
    if encoding != keys.FORMAT_JPEG:
        rows = [r for r in rows if r not in (LIMIT, OURS_TRAIN_GPU)]
    if not has_tensorflow():
        rows = [r for r in rows if r not in TF_ROWS + (RAY_STOCK, OURS_TF)]
    if OURS_TRAIN_GPU in rows and not has_gpu_decode():
        rows.remove(OURS_TRAIN_GPU)
    return rows


def ray_stock_dataset(files: List[str], m: Manifest, repeat: int):
    """Ray Data's own reader (one row per record, parsed in Python) + a decode in map_batches."""
    import numpy as np
    import ray

    height, width, channels, encoding = m.height, m.width, m.channels, m.encoding

    def decode(batch):
        enc = batch[keys.ENCODED]
        if encoding == keys.FORMAT_JPEG:
            import simplejpeg

            imgs = np.stack([simplejpeg.decode_jpeg(bytes(e)) for e in enc])
        else:
            imgs = np.stack([np.frombuffer(e, np.uint8).reshape(height, width, channels)
                             for e in enc])
        return {keys.IMAGE_COLUMN: imgs,
                keys.LABEL_COLUMN: np.asarray(batch[keys.LABEL], dtype=np.int64)}

    return ray.data.read_tfrecords(files * repeat).map_batches(decode, batch_format="numpy")


def _batch_counts(batches) -> Iterator[int]:
    for b in batches:
        yield int(len(b[keys.LABEL_COLUMN]))


def _ours(ctx: Context, **read_kwargs):
    """Our reader as the rows use it: blocks of the reader's default size for what they hold,
    in whole batches (batches are then slices of blocks)."""
    from ray_ingest.read import read_records
    from ray_ingest.format.check import RecordSpec
    from ray_ingest.read.options import block_rows_in_batches

    rows = block_rows_in_batches(RecordSpec.of(ctx.manifest), read_kwargs.get("decode", "workers"),
                                 ctx.batch_size)
    return read_records(ctx.manifest.root, ctx.split, repeat=ctx.passes, block_rows=rows,
                        **read_kwargs)


def _tf_row(name: str) -> Callable[[Context], Variant]:
    def make(ctx: Context) -> Variant:
        batched = name == BATCHED_ROW
        cache = name == CACHE_ROW
        n_split = ctx.manifest.num_records(ctx.split)
        return Variant(name, "tf.data", timed_stream(
            lambda: tf_counts(tf_dataset(name, ctx.files, ctx.manifest), batched)),
            warmup=max(ctx.warmup, n_split) if cache else ctx.warmup,
            note="the warm-up fills the cache (one pass)" if cache else "")
    return make


def _stock(ctx: Context) -> Variant:
    return Variant(RAY_STOCK, "ray", timed_stream(lambda: _batch_counts(
        ray_stock_dataset(ctx.files, ctx.manifest, ctx.passes).iter_batches(
            batch_size=ctx.batch_size, prefetch_batches=4, batch_format="numpy"))),
        warmup=ctx.warmup)


def _iter_batches(ctx: Context) -> Variant:
    return Variant(OURS_ITER, "ray", timed_stream(lambda: _batch_counts(_ours(ctx).iter_batches(
        batch_size=ctx.batch_size, prefetch_batches=4, batch_format="numpy"))), warmup=ctx.warmup)


def _iter_tf_batches(ctx: Context) -> Variant:
    return Variant(OURS_TF, "ray", timed_stream(lambda: _batch_counts(
        _ours(ctx).iter_tf_batches(batch_size=ctx.batch_size, prefetch_batches=4))),
        warmup=ctx.warmup)


def _consumer(ctx: Context) -> Variant:
    from ray_ingest.read import iter_images

    return Variant(OURS_CONSUMER, "ray", timed_stream(lambda: _batch_counts(iter_images(
        _ours(ctx, decode="consumer"), batch_size=ctx.batch_size, prefetch_batches=4))),
        warmup=ctx.warmup)


def _train_feed(mode: str) -> Callable[[Context], Variant]:
    def make(ctx: Context) -> Variant:
        from ray_ingest.bench.train_row import train_feed_run

        decode = "workers" if mode == "workers" else "consumer"
        return Variant(TRAIN_ROWS[mode], "ray", train_feed_run(
            lambda: _ours(ctx, decode=decode), ctx.manifest.root, ctx.batch_size, mode),
            warmup=ctx.warmup, note="timed inside a Ray Train worker")
    return make


def _limit(ctx: Context) -> Variant:
    import itertools

    from ray_ingest.bench.limit import DecodeLimit
    from ray_ingest.format.records import iter_records

    encoded = [r.encoded for r in itertools.islice(
        iter_records(ctx.manifest.root, ctx.split, manifest=ctx.manifest), 2048)]
    pool = DecodeLimit(encoded)
    return Variant(LIMIT, "limit", pool.run, warmup=ctx.warmup, close=pool.close,
                   note="one process per core decoding in-memory JPEG records, no pipeline")


#: Row name -> the factory of its Variant.
ROWS: Dict[str, Callable[[Context], Variant]] = {
    LIMIT: _limit,
    **{name: _tf_row(name) for name in TF_ROWS},
    RAY_STOCK: _stock,
    OURS_ITER: _iter_batches,
    OURS_TF: _iter_tf_batches,
    OURS_CONSUMER: _consumer,
    **{name: _train_feed(mode) for mode, name in TRAIN_ROWS.items()},
}

