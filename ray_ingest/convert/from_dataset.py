"""``convert_dataset``: any Ray Dataset of images and labels → TFRecord shards.

The rows go through the same decode/resize/encode and reject rules as files
(:mod:`~ray_ingest.convert.rows`), the same shard writer, commit and manifest
(:func:`~ray_ingest.convert.pipeline.write_shards`). What differs is where inputs, names,
classes and splits come from:

* **image column**: encoded image bytes (JPEG, PNG, ...), a HuggingFace image struct
  (``{"bytes", "path"}``), a path or URI to read (a string), or decoded pixels
  (``uint8[H, W, 3]``, ``[H, W]``, ``[H, W, 4]``, as Ray's ``read_images`` gives);
* **label column**: integer class ids, or class names (strings; sorted to give the ids, as
  class folders are). The class list is ``class_names`` when given (then ``Dataset.count()``
  gives the number of rows), else one pass over the label column before converting (with
  column projection where the source has it, as Parquet does);
* **name** of each record (``image/filename``, and the ``path`` of a reject): the value of
  ``id_column``, else the path of a path or HuggingFace cell, else ``content:<hash>`` of the
  image bytes or pixels;
* **split**: the stable hash of that name and the seed (the same rule as for files), so
  re-running gives the same split, and identical images land in the same split.

Rows whose label is missing or not a class, or whose image is missing, are rejected with a
reason (``missing-label``, ``unknown-label``, ``missing-image``) like undecodable images.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
import uuid
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ray_ingest import fs
from ray_ingest.convert.images import R_READ, ImageRejected, ImageSpec
from ray_ingest.convert.options import ConvertOptions
from ray_ingest.convert.pipeline import ConvertReport, write_shards
from ray_ingest.convert.rows import encode_rows
from ray_ingest.convert.sink import TFRecordDatasink
from ray_ingest.convert.sources import split_of
from ray_ingest.errors import ConfigError, SourceError
from ray_ingest.format.commit import output_errors, prepare_output
from ray_ingest.format.lock import OutputLock
from ray_ingest.progress import add_count

logger = logging.getLogger("ray_ingest")

R_MISSING_LABEL = "missing-label"
R_UNKNOWN_LABEL = "unknown-label"
R_MISSING_IMAGE = "missing-image"

PARQUET_EXTENSIONS = (".parquet", ".pq")


def convert_dataset(
    ds,
    out: str,
    options: Optional[ConvertOptions] = None,
    *,
    image_column: str = "image",
    label_column: str = "label",
    id_column: Optional[str] = None,
    class_names: Optional[Sequence[str]] = None,
    shuffle: bool = True,
    source: Optional[str] = None,
    datasink_cls: type = TFRecordDatasink,
    show_progress: bool = True,
    **kwargs,
) -> ConvertReport:
    """Converts the rows of the Ray Dataset ``ds`` into TFRecord shards under ``out``.

    ``options`` (a :class:`ConvertOptions`, or its fields as keyword arguments) are those of
    :func:`~ray_ingest.convert_folder`. ``shuffle`` (default) shuffles the rows with ``seed`` before
    writing, so every shard mixes classes whatever the source's order (Ray Data's
    ``random_shuffle``: one more pass through the object store); without it, shards follow
    the source's order. ``source`` names the data in the manifest. Holds OUT's lock, as
    :func:`~ray_ingest.convert_folder` does.
    """
    if options is not None and kwargs:
        raise TypeError("pass either options or keyword arguments, not both")
    opts = options or ConvertOptions(**kwargs)
    out = fs.normalize(out)
    run_id = uuid.uuid4().hex[:12]
    with output_errors(out), OutputLock(out, run_id):
        return _convert_dataset_locked(ds, out, opts, run_id, image_column, label_column,
                                       id_column, class_names, shuffle, source, datasink_cls,
                                       show_progress)


def _convert_dataset_locked(ds, out, opts, run_id, image_column, label_column, id_column,
                            class_names, shuffle, source, datasink_cls, show_progress):
    from ray_ingest.runtime import ensure_ray

    started = time.time()
    prepare_output(out, opts.overwrite)
    ensure_ray()
    _check_columns(ds, image_column, label_column, id_column)
    if class_names is None:
        names, num_inputs = scan_labels(ds, label_column)
    else:
        names = _checked_class_names(class_names)
        num_inputs = ds.count()
    if num_inputs == 0:
        raise SourceError(f"{source or 'the dataset'}: no rows to convert")
    fn = functools.partial(
        convert_rows, image_column=image_column, label_column=label_column,
        id_column=id_column, spec=opts.image_spec(), class_names=names, seed=opts.seed,
        val_fraction=opts.val_fraction)

    def converted(counter):
        rows = ds.random_shuffle(seed=opts.seed) if shuffle else ds
        return rows.map_batches(functools.partial(fn, counter=counter),
                                batch_size=opts.batch_size, batch_format="numpy",
                                runtime_env=fs.task_runtime_env())

    return write_shards(
        converted, out, opts, run_id=run_id, num_inputs=num_inputs, class_names=names,
        source=source or f"Ray Dataset (image column {image_column!r}, label column "
                         f"{label_column!r})",
        ignored=[], datasink_cls=datasink_cls, started=started, show_progress=show_progress)


def convert_parquet(src: str, out: str, options: Optional[ConvertOptions] = None,
                    **kwargs) -> ConvertReport:
    """``convert_dataset`` of a Parquet file or folder (read with ``ray.data.read_parquet``)."""
    import ray

    from ray_ingest.runtime import ensure_ray

    src = fs.normalize(src)
    ensure_ray()
    ds = ray.data.read_parquet(src, runtime_env=fs.task_runtime_env())
    return convert_dataset(ds, out, options, source=src, **kwargs)


def is_parquet_source(src: str) -> bool:
    """A ``.parquet`` file, or a folder holding ``.parquet`` files at its top level."""
    src = fs.normalize(src)
    if src.lower().endswith(PARQUET_EXTENSIONS):
        return True
    return fs.isdir(src) and any(
        name.lower().endswith(PARQUET_EXTENSIONS) for name in fs.list_dir(src))


# ---------------------------------------------------------------------------------------------
# Driver side: columns and classes.


def _check_columns(ds, image_column: str, label_column: str, id_column: Optional[str]) -> None:
    schema = ds.schema()
    if schema is None:
        raise SourceError("the dataset has no rows to convert")
    names = list(schema.names)
    for what, col in (("image", image_column), ("label", label_column), ("id", id_column)):
        if col is not None and col not in names:
            raise ConfigError(f"the dataset has no {what} column {col!r}; its columns: {names}")


def _checked_class_names(class_names: Sequence[str]) -> List[str]:
    names = [str(c) for c in class_names]
    if not names:
        raise ConfigError("class_names is empty")
    if len(set(names)) != len(names):
        raise ConfigError(f"class_names holds duplicates: {names}")
    return names


def _label_counts(batch: pa.Table) -> pa.Table:
    """``map_batches`` function of the label pass: ``{value, count}`` of one batch."""
    col = batch.column(0)
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    counts = pc.value_counts(col)
    return pa.table({"value": counts.field("values"), "count": counts.field("counts")})


def scan_labels(ds, label_column: str) -> Tuple[List[str], int]:
    """One pass over the label column: the class names and the number of rows.

    Integer labels are class ids, named by their decimal strings (``0 .. max``); string labels
    are class names, sorted. Missing labels count as rows (they are rejected later).
    """
    counts: Counter = Counter()
    labels = ds.select_columns([label_column]).map_batches(
        _label_counts, batch_format="pyarrow", runtime_env=fs.task_runtime_env())
    for row in labels.iter_rows():
        counts[row["value"]] += int(row["count"])
    total = sum(counts.values())
    values = [v for v in counts if v is not None]
    if not values:
        raise SourceError(f"label column {label_column!r}: no labels in {total} rows")
    if all(isinstance(v, str) for v in values):
        return sorted(values), total
    ids = [_as_class_id(v) for v in values]
    if any(i is None for i in ids):
        bad = [v for v, i in zip(values, ids) if i is None][:5]
        raise SourceError(f"label column {label_column!r}: labels must be all integer class ids "
                          f"or all class names (strings), found {bad!r}")
    top = max(ids)
    if top < 0:
        raise SourceError(f"label column {label_column!r}: no class id is >= 0")
    return [str(i) for i in range(top + 1)], total


def _as_class_id(value) -> Optional[int]:
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and value == int(value):
        return int(value)
    return None


# ---------------------------------------------------------------------------------------------
# Worker side: one batch of rows → the writer's rows.


def _class_id(value, ids: Dict[str, int], num_classes: int):
    """The class id of a label value, or the :class:`ImageRejected` that rejects its row."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ImageRejected(R_MISSING_LABEL, "the row has no label")
    if isinstance(value, str):
        if value in ids:
            return ids[value]
        return ImageRejected(R_UNKNOWN_LABEL, f"label {value!r} is not one of the classes")
    cid = _as_class_id(value)
    if cid is None or not 0 <= cid < num_classes:
        return ImageRejected(R_UNKNOWN_LABEL,
                             f"label {value!r} is not a class id in 0..{num_classes - 1}")
    return cid


def _content_name(data) -> str:
    h = hashlib.blake2b(digest_size=8)
    if isinstance(data, np.ndarray):
        h.update(repr(data.shape).encode())
        h.update(np.ascontiguousarray(data).tobytes())
    else:
        h.update(data)
    return f"content:{h.hexdigest()}"


def _image_payload(cell) -> Tuple[Any, Optional[str]]:
    """``(payload for encode_rows, name from the cell or None)`` of one image cell."""
    if isinstance(cell, dict):  # a HuggingFace image: {"bytes": ..., "path": ...}
        data, path = cell.get("bytes"), cell.get("path")
        if data is not None:
            return data, None
        cell = path
    if cell is None:
        return ImageRejected(R_MISSING_IMAGE, "the row has no image"), None
    if isinstance(cell, str):
        try:
            return fs.read_bytes(cell), cell
        except Exception as e:  # noqa: BLE001 - reported per row
            return ImageRejected(R_READ, f"cannot read: {e}"), cell
    if isinstance(cell, np.ndarray) and cell.dtype == object:
        return ImageRejected(R_MISSING_IMAGE, f"unsupported image value of shape "
                                              f"{cell.shape}"), None
    if isinstance(cell, (bytes, bytearray, memoryview, np.ndarray)):
        return cell, None
    return ImageRejected(R_MISSING_IMAGE,
                         f"unsupported image value of type {type(cell).__name__}"), None


def convert_rows(batch: Dict[str, np.ndarray], *, image_column: str, label_column: str,
                 id_column: Optional[str], spec: ImageSpec, class_names: List[str], seed: int,
                 val_fraction: float, counter=None):
    """``map_batches`` function (numpy batches): names, splits, labels and pixels of each row
    (their number added to ``counter``, the progress display's, when given)."""
    images = batch[image_column]
    labels = batch[label_column]
    ids = {name: i for i, name in enumerate(class_names)}
    payloads, names, class_ids, splits = [], [], [], []
    for i in range(len(labels)):
        payload, name = _image_payload(images[i])
        if id_column is not None:
            key = batch[id_column][i]
            name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        elif name is None:
            name = (_content_name(payload) if not isinstance(payload, ImageRejected)
                    else "(a row without image or id)")
        cid = _class_id(labels[i].item() if isinstance(labels[i], np.generic) else labels[i],
                        ids, len(class_names))
        if isinstance(cid, ImageRejected) and not isinstance(payload, ImageRejected):
            payload, cid = cid, None
        payloads.append(payload)
        names.append(name)
        class_ids.append(None if isinstance(cid, ImageRejected) else cid)
        splits.append(split_of(name, seed, val_fraction))
    rows = encode_rows(payloads, names, class_ids, splits, spec, class_names)
    add_count(counter, len(labels))
    return rows
