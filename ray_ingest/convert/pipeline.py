"""``ray-ingest convert SRC OUT``: images → TFRecord shards on Ray Data.

The driver takes OUT's one-writer lock (:mod:`~ray_ingest.format.lock`), lists the inputs
(class folders or a CSV/JSONL list, one per real file), splits them train/val by a
stable hash, shuffles their order (so every shard mixes classes) and hands them to Ray Data in
blocks; ``map_batches`` reads, decodes, resizes and encodes many images per call on CPU
workers; :class:`~ray_ingest.convert.sink.TFRecordDatasink` writes the shards and commits them.
How the images are stored is :class:`~ray_ingest.convert.options.ConvertOptions`.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import math
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import pyarrow as pa

from ray_ingest import fs, quiet
from ray_ingest.convert.images import ImageRejected, ImageSpec, R_READ
from ray_ingest.convert.options import ConvertOptions
from ray_ingest.convert.rows import encode_rows
from ray_ingest.convert.sink import TFRecordDatasink
from ray_ingest.convert.sources import list_source, split_of
from ray_ingest.errors import ConversionError
from ray_ingest.format import manifest as mf
from ray_ingest.format.commit import output_errors, prepare_output
from ray_ingest.format.lock import OutputLock
from ray_ingest.progress import add_count, plural

logger = logging.getLogger("ray_ingest")


@dataclass
class ConvertReport:
    out: str
    num_inputs: int
    num_written: int
    num_rejected: int
    num_ignored: int
    num_shards: int
    num_bytes: int
    seconds: float
    manifest: Dict[str, Any]

    @property
    def images_per_second(self) -> float:
        return self.num_inputs / self.seconds if self.seconds > 0 else float("nan")

    def summary_line(self) -> str:
        return (
            f"convert: {self.num_inputs} images in, {self.num_written} written, "
            f"{self.num_rejected} rejected ({self.num_ignored} other files ignored), "
            f"{plural(self.num_shards, 'shard')}, {self.num_bytes / 1e6:.1f} MB, "
            f"{self.images_per_second:.0f} images/s in {self.seconds:.1f} s -> {self.out}"
        )


# ---------------------------------------------------------------------------------------------
# Worker side: one batch of inputs → one batch of records or rejects.


def _read_all(paths: List[str], threads: int) -> List[Any]:
    """Bytes of each path, or the exception that reading it raised."""

    def read(p):
        try:
            return fs.read_bytes(p)
        except Exception as e:  # noqa: BLE001 - reported per input
            return e

    if threads <= 1 or len(paths) <= 1:
        return [read(p) for p in paths]
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(read, paths))


def convert_batch(batch: pa.Table, spec: ImageSpec, class_names: List[str],
                  counter=None) -> pa.Table:
    """``map_batches`` function: reads, decodes, resizes and encodes each input of the batch
    (and adds their number to ``counter``, a :class:`~ray_ingest.progress.RemoteProgress`
    counter, when given)."""
    quiet.quiet_ray_data_task()
    paths = [p.decode("utf-8", "surrogateescape") for p in batch.column("path").to_pylist()]
    remote = bool(paths) and fs.is_uri(paths[0])
    contents = [ImageRejected(R_READ, f"cannot read: {data}") if isinstance(data, Exception)
                else data for data in _read_all(paths, 16 if remote else 1)]
    rows = encode_rows(contents, batch.column("relpath").to_pylist(),
                       batch.column("label").to_pylist(), batch.column("split").to_pylist(),
                       spec, class_names)
    add_count(counter, len(paths))
    return rows


# ---------------------------------------------------------------------------------------------
# Driver side.



def _input_table(inputs, seed: int, val_fraction: float) -> pa.Table:
    order = list(range(len(inputs)))
    random.Random(seed).shuffle(order)  # mix classes across shards
    return pa.table(
        {
            # Bytes: a local file name need not be UTF-8 (Python holds its undecodable bytes
            # as surrogate escapes, which Arrow strings cannot carry); the stored name is
            # printable (fs.printable).
            "path": pa.array([inputs[i].path.encode("utf-8", "surrogateescape") for i in order],
                             pa.binary()),
            "relpath": [inputs[i].relpath for i in order],
            "label": pa.array([inputs[i].label for i in order], pa.int64()),
            "split": [split_of(inputs[i].relpath, seed, val_fraction) for i in order],
        }
    )


def convert(
    src: str,
    out: str,
    options: Optional[ConvertOptions] = None,
    *,
    datasink_cls: type = TFRecordDatasink,
    show_progress: bool = True,
    **kwargs,
) -> ConvertReport:
    """Converts SRC (class folders or a CSV/JSONL list) into TFRecord shards under OUT.

    Holds OUT's lock from before the listing to the end: a second conversion into OUT fails
    at once, naming this one. ``show_progress``: one progress display of the images converted
    (on stderr). ``datasink_cls`` exists for fault-injection tests (a subclass of
    ``TFRecordDatasink``).
    """
    if options is not None and kwargs:
        raise TypeError("pass either options or keyword arguments, not both")
    opts = options or ConvertOptions(**kwargs)
    src, out = fs.normalize(src), fs.normalize(out)
    run_id = uuid.uuid4().hex[:12]
    with output_errors(out), OutputLock(out, run_id):
        return _convert_locked(src, out, opts, run_id, datasink_cls, show_progress)


def _convert_locked(src: str, out: str, opts: ConvertOptions, run_id: str,
                    datasink_cls: type, show_progress: bool) -> ConvertReport:
    import ray

    from ray_ingest.runtime import ensure_ray

    started = time.time()
    prepare_output(out, opts.overwrite)
    listing = list_source(src, follow_links=opts.follow_links, num_classes=opts.num_classes)
    n = len(listing.inputs)
    spec = opts.image_spec()
    ensure_ray()

    table = _input_table(listing.inputs, opts.seed, opts.val_fraction)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    rows_per_block = max(opts.batch_size, min(1024, math.ceil(n / (4 * cpus))))
    blocks = [table.slice(i, rows_per_block) for i in range(0, n, rows_per_block)]

    def converted(counter):
        return ray.data.from_arrow(blocks).map_batches(
            functools.partial(convert_batch, spec=spec, class_names=listing.class_names,
                              counter=counter),
            batch_size=opts.batch_size,
            batch_format="pyarrow",
            zero_copy_batch=True,
            runtime_env=fs.task_runtime_env(),
        )

    ignored = [{"path": x.path, "reason": x.reason, "message": x.message}
               for x in listing.ignored]
    return write_shards(converted, out, opts, run_id=run_id, num_inputs=n,
                        class_names=listing.class_names, source=src, ignored=ignored,
                        datasink_cls=datasink_cls, started=started,
                        show_progress=show_progress,
                        manifest_extra={"follow_links": opts.follow_links})


def write_shards(converted: Callable[[Any], Any], out: str, opts: ConvertOptions, *,
                 run_id: str, num_inputs: int, class_names: List[str], source: str,
                 ignored: List[Dict[str, str]], datasink_cls: type = TFRecordDatasink,
                 started: Optional[float] = None, show_progress: bool = True,
                 manifest_extra: Optional[Dict[str, Any]] = None) -> ConvertReport:
    """Writes and commits the shards of one conversion (either kind of source), holding OUT's
    lock for run ``run_id`` (the caller took it).

    ``converted(counter)`` builds the Ray Dataset of the writer's rows (see
    :mod:`~ray_ingest.convert.rows`) that ``num_inputs`` inputs become, its tasks adding the
    inputs they did to ``counter`` (the progress display's); it is called inside our Ray Data
    settings, which a Dataset captures when it is built.
    """
    from ray_ingest.progress import RemoteProgress
    from ray_ingest.runtime import PIPELINE_CONTEXT, data_context

    started = time.time() if started is None else started
    manifest_fields = mf.header(
        source=source, encoding=opts.encoding, size=opts.size, resize_mode=opts.resize_mode,
        quality=opts.quality, seed=opts.seed, val_fraction=opts.val_fraction,
        shard_size_mb=opts.shard_size_mb, class_names=class_names,
        max_side=opts.max_side, short_side=opts.short_side,
        exif_orientation=opts.exif, **(manifest_extra or {}))
    sink = datasink_cls(
        out=out,
        run_id=run_id,
        shard_size_bytes=int(opts.shard_size_mb * 1e6),
        num_inputs=num_inputs,
        max_reject_fraction=opts.max_reject_fraction,
        manifest_fields=manifest_fields,
        ignored=ignored,
        overwrite=opts.overwrite,
        checksums=opts.checksums,
        locked=True,
    )
    if len(class_names) == 1:
        logger.warning("%s: one class only (%r): a classifier learns nothing from it", source,
                       class_names[0])
    try:
        with data_context(**PIPELINE_CONTEXT), RemoteProgress(
                "convert", total=num_inputs, unit="images", enabled=show_progress) as progress:
            env = fs.task_runtime_env()
            converted(progress.counter).write_datasink(
                sink, ray_remote_args={"runtime_env": env} if env else None)
    except BaseException:
        sink.abort()  # Ray Data did on an error, not on Ctrl-C; twice is harmless
        raise
    data = sink.result
    if data is None:
        raise ConversionError(f"{out}: the shard writer finished without committing")
    if data["empty_classes"]:
        empty = data["empty_classes"]
        logger.warning("%s: %d of %d classes have no images (all their inputs rejected, or none "
                       "listed): %s", out, len(empty), len(class_names),
                       ", ".join(map(repr, empty[:10])) + (", ..." if len(empty) > 10 else ""))
    shards = sum(len(s["shards"]) for s in data["splits"].values())
    nbytes = sum(s["num_bytes"] for s in data["splits"].values())
    return ConvertReport(
        out=out,
        num_inputs=num_inputs,
        num_written=data["num_written"],
        num_rejected=data["num_rejected"],
        num_ignored=data["num_ignored"],
        num_shards=shards,
        num_bytes=nbytes,
        seconds=time.time() - started,
        manifest=data,
    )
