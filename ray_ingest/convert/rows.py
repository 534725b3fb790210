"""One batch of inputs → the rows the shard writer takes: for each input, its serialized
record, or the reason and message why it was not converted.

Both conversions end here: from files (:mod:`~ray_ingest.convert.pipeline` reads their bytes
first) and from a Ray Dataset (:mod:`~ray_ingest.convert.from_dataset`, whose rows hold encoded
image bytes or decoded pixel arrays). An input that cannot be read arrives as an
:class:`~ray_ingest.convert.images.ImageRejected` and leaves as a reject row; nothing is
dropped.
"""

from __future__ import annotations

from typing import Any, List, Sequence

import numpy as np
import pyarrow as pa

from ray_ingest.convert.images import ImageRejected, ImageSpec, convert_image, convert_pixels
from ray_ingest.convert.sink import (
    COL_AS_IS,
    COL_FILENAME,
    COL_HEIGHT,
    COL_LABEL,
    COL_MESSAGE,
    COL_NOTE,
    COL_RECORD,
    COL_REJECT,
    COL_SPLIT,
    COL_WIDTH,
)
from ray_ingest.format.example import encode_image_example

#: Reject reason of an unexpected error while converting one input (the message names it).
R_ERROR = "error"

OUT_SCHEMA = pa.schema(
    [
        (COL_RECORD, pa.binary()),
        (COL_SPLIT, pa.string()),
        (COL_FILENAME, pa.string()),
        (COL_LABEL, pa.int64()),
        (COL_REJECT, pa.string()),
        (COL_MESSAGE, pa.string()),
        (COL_NOTE, pa.string()),
        (COL_HEIGHT, pa.int32()),
        (COL_WIDTH, pa.int32()),
        (COL_AS_IS, pa.bool_()),
    ]
)


def encode_rows(payloads: Sequence[Any], names: Sequence[str], labels: Sequence[Any],
                splits: Sequence[str], spec: ImageSpec, class_names: List[str]) -> pa.Table:
    """The writer's rows for one batch.

    ``payloads[i]`` is encoded image bytes (decoded, resized and re-encoded by ``spec``, or in
    keep mode stored as they are when they may be), a ``uint8`` pixel array (resized and
    encoded), or an :class:`ImageRejected` (a reject row).
    ``labels[i]`` is the class id of a convertible input (ignored for a rejected one).
    """
    records, kept_labels, rejects, messages, notes = [], [], [], [], []
    heights, widths, as_is = [], [], []
    for payload, name, label in zip(payloads, names, labels):
        record = reject = message = note = c = None
        try:
            if isinstance(payload, ImageRejected):
                raise payload
            if isinstance(payload, np.ndarray):
                c = convert_pixels(payload, spec)
            else:
                c = convert_image(payload, spec)
            note = c.note
            record = encode_image_example(
                encoded=c.encoded,
                image_format=spec.encoding,
                height=c.height,
                width=c.width,
                channels=c.channels,
                label=label,
                class_text=class_names[label],
                filename=name,
            )
        except ImageRejected as e:
            reject, message = e.reason, e.message
        except Exception as e:  # noqa: BLE001 - one bad input never kills the job
            reject, message = R_ERROR, f"{type(e).__name__}: {e}"
        records.append(record)
        kept_labels.append(None if record is None else int(label))
        rejects.append(reject)
        messages.append(message)
        notes.append(note)
        ok = record is not None
        heights.append(c.height if ok else None)
        widths.append(c.width if ok else None)
        as_is.append(c.as_is if ok else None)
    return pa.Table.from_arrays(
        [
            pa.array(records, pa.binary()),
            pa.array(list(splits), pa.string()),
            pa.array(list(names), pa.string()),
            pa.array(kept_labels, pa.int64()),
            pa.array(rejects, pa.string()),
            pa.array(messages, pa.string()),
            pa.array(notes, pa.string()),
            pa.array(heights, pa.int32()),
            pa.array(widths, pa.int32()),
            pa.array(as_is, pa.bool_()),
        ],
        schema=OUT_SCHEMA,
    )
