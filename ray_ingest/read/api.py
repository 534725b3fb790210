"""``read_records`` and ``iter_images``: the reader's public functions."""

from __future__ import annotations

from typing import Dict, Iterator, Optional, Union

import numpy as np

from ray_ingest.errors import ConfigError, ManifestError
from ray_ingest import fs
from ray_ingest.format.check import RecordSpec
from ray_ingest.format.manifest import Manifest, manifest_of
from ray_ingest.read.decode import decode_ahead
from ray_ingest.read.options import ReadOptions, block_bytes_per_row, block_rows_for
from ray_ingest.read.plan import check_files, plan_tasks


def read_records(path: Union[str, Manifest], split: str = "train", options: Optional[ReadOptions] = None,
                 **kwargs):
    """A ``ray.data.Dataset`` of ``{"image": uint8[N, H, W, C], "label": int64[N]}`` batches.

    ``path`` is a conversion output directory or URI (it must hold ``manifest.json``), or its
    :class:`~ray_ingest.format.manifest.Manifest` already read. Options
    (a :class:`ReadOptions`, or its fields as keyword arguments):
    ``verify_crc`` checks every record's CRC; ``verify_checksums`` checks each shard's
    SHA-256 against the manifest (a conversion made with checksums; read tasks then read
    whole shards and hash every byte); ``skip_corrupt`` skips damaged records instead
    of failing (each one alone: the scan resumes where the shard's ``.idx`` says the next
    record starts; a truncated shard loses the records past its end) and reports them —
    :func:`~ray_ingest.read.skips.skip_report` of the dataset gives the count and the ranges;
    ``shuffle_files`` shuffles the order of shards
    and ``shuffle_records`` the records within each read task (seeded by ``seed``; a new order
    each plan without one); ``limit`` caps the number of rows; ``repeat`` streams the split
    that many times in one execution (like ``tf.data``'s ``repeat``); ``block_rows`` is the rows
    per block (default: 256 decoded images, or ~24 MB of encoded records with
    ``decode="consumer"``; a multiple of the consumer's batch size gives copy-free batches);
    ``jpeg_dct`` is ``"fast"`` (TensorFlow's default decode, pixel for pixel) or
    ``"accurate"``; ``shard=(i, n)`` keeps a
    disjoint 1/n of the read tasks (the n shards together cover the split once);
    ``with_filename`` adds each record's ``image/filename`` as a ``filename`` column.
    ``crop`` (:class:`~ray_ingest.read.crop.RandomResizedCrop` or
    :class:`~ray_ingest.read.crop.CenterCrop`) crops while decoding: every image comes out
    ``size x size``, decoded only where its box is (the box's rows and columns, at the
    smallest DCT scale that keeps ``size`` pixels across it); boxes are drawn per record from
    ``seed`` (shard file and record number: the same box wherever it is decoded, a new one
    each epoch; no seed: a new random draw each epoch). Whole-image shards (converted with
    ``--resize-mode keep``) hold images of different sizes and need a crop to form batches.
    ``decode="workers"`` (default) decodes JPEG records in the read tasks, on any node's CPUs;
    ``decode="consumer"`` leaves them encoded (an ``encoded`` column, ~10x fewer bytes through
    the object store and the network, with ``shard`` and ``record`` columns saying where each
    came from) for :func:`iter_images` to decode in the consuming process's threads — the
    tf.data / DALI arrangement, best when the consumer's node has spare cores. Raw records are
    the same either way. ``concurrency`` and ``override_num_blocks`` go to Ray Data.
    For a shuffle across tasks, pass ``local_shuffle_buffer_size`` to ``iter_batches``.
    """
    import ray

    from ray_ingest.read.datasource import TFRecordShardDatasource
    from ray_ingest.read.skips import remember_skip_log, start_skip_log
    from ray_ingest.runtime import PIPELINE_CONTEXT, data_context, ensure_ray

    if options is not None and kwargs:
        raise TypeError("pass either options or keyword arguments, not both")
    opts = options or ReadOptions(**kwargs)
    manifest = manifest_of(path)
    check_crop_fits(manifest, opts)
    check_files(manifest, split)
    if opts.verify_checksums and any(s.sha256 is None for s in manifest.shards(split)):
        raise ManifestError(f"{manifest.path}: verify_checksums, but the shards of split "
                            f"{split!r} have no SHA-256 (convert with --checksums)")
    ensure_ray()
    skip_log = start_skip_log() if opts.skip_corrupt else None
    source = TFRecordShardDatasource(manifest, split, opts, skip_log)
    num_blocks = opts.override_num_blocks
    if num_blocks is None:
        # One block stream per planned task. Left to Ray Data, a read of fewer tasks than its
        # default of 200 blocks is sliced into small blocks.
        cpus = int(ray.cluster_resources().get("CPU", 1))
        num_blocks = len(plan_tasks(manifest, split, 2 * max(1, cpus), opts))
    spec = RecordSpec.of(manifest, opts.crop)
    with data_context(**PIPELINE_CONTEXT, target_max_block_size=target_block_bytes(spec, opts)):
        ds = ray.data.read_datasource(source, concurrency=opts.concurrency,
                                      override_num_blocks=max(1, num_blocks),
                                      runtime_env=fs.task_runtime_env())
        if opts.limit is not None:
            ds = ds.limit(opts.limit)
    if skip_log is not None:
        remember_skip_log(ds, skip_log)
    return ds


def target_block_bytes(spec: RecordSpec, opts: ReadOptions) -> int:
    """Ray Data's ``target_max_block_size`` for a read: each block goes out as the read task
    yields it. With the default 128 MB target, Ray Data would concatenate a task's blocks
    into one (a copy, and nothing out of the task until it ends) and a consumer would have to
    re-cut batches across block edges (another copy). Encoded records vary in size: a target
    a little under a block's mean size still emits each block alone (Ray Data splits only
    blocks over 1.5x its target)."""
    row = block_bytes_per_row(spec, opts.decode)
    block_bytes = block_rows_for(spec, opts.block_rows, opts.decode) * row
    if row != spec.row_bytes:
        block_bytes = block_bytes * 9 // 10
    return max(1 << 20, block_bytes)


def check_crop_fits(manifest, opts: ReadOptions) -> None:
    """Whole-image shards need a crop (their images differ in size); a crop needs JPEG
    records."""
    if opts.crop is not None and manifest.encoding != "jpeg":
        raise ConfigError(f"{manifest.path}: crop= decodes JPEG records; this dataset stores "
                          f"{manifest.encoding!r} records")
    if opts.crop is None and manifest.variable_size:
        raise ConfigError(
            f"{manifest.path}: whole-image shards (resize_mode 'keep') hold images of "
            "different sizes, which cannot form a batch: read them with a crop, e.g. "
            "crop=ray_ingest.RandomResizedCrop(224) to train or "
            "crop=ray_ingest.CenterCrop(224) to evaluate")


def iter_images(source, *, batch_size: int = 256, prefetch_batches: int = 4,
                decode_threads: Optional[int] = None, jpeg_dct: str = "fast",
                drop_last: bool = False, local_shuffle_buffer_size: Optional[int] = None,
                local_shuffle_seed: Optional[int] = None) -> Iterator[Dict[str, np.ndarray]]:
    """``{"image": uint8[N, H, W, C], "label": int64[N]}`` numpy batches from ``source`` (a
    ``Dataset`` or a ``DataIterator`` such as a Ray Train worker's ``get_dataset_shard``).

    Batches of a read with ``decode="consumer"`` are decoded here by ``decode_threads``
    threads (libjpeg-turbo releases the GIL; default: this machine's cores, at most 8), several
    batches ahead of the consumer and in order; batches that already hold pixels pass through.
    """
    # Arrow batches: encoded ones are decoded straight from their buffer, pixel ones become
    # numpy views.
    batches = source.iter_batches(batch_size=batch_size, prefetch_batches=prefetch_batches,
                                  batch_format="pyarrow", drop_last=drop_last,
                                  local_shuffle_buffer_size=local_shuffle_buffer_size,
                                  local_shuffle_seed=local_shuffle_seed)
    return decode_ahead(batches, threads=decode_threads, dct=jpeg_dct)
