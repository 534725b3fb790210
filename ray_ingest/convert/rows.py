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

from ray_ingest.convert.images import ImageRejected, ImageSpec, process_image, process_pixels
from ray_ingest.convert.sink import (
    COL_FILENAME,
    COL_LABEL,
    COL_MESSAGE,
    COL_NOTE,
    COL_RECORD,
    COL_REJECT,
    COL_SPLIT,
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
    ]
)


def encode_rows(payloads: Sequence[Any], names: Sequence[str], labels: Sequence[Any],
                splits: Sequence[str], spec: ImageSpec, class_names: List[str]) -> pa.Table:
    """The writer's rows for one batch.

    ``payloads[i]`` is encoded image bytes (decoded, resized and re-encoded by ``spec``), a
    ``uint8`` pixel array (resized and encoded), or an :class:`ImageRejected` (a reject row).
    ``labels[i]`` is the class id of a convertible input (ignored for a rejected one).
    """
    records, kept_labels, rejects, messages, notes = [], [], [], [], []
    for payload, name, label in zip(payloads, names, labels):
        record = reject = message = note = None
        try:
            if isinstance(payload, ImageRejected):
                raise payload
            if isinstance(payload, np.ndarray):
                encoded, note = process_pixels(payload, spec)
            else:
                encoded, note = process_image(payload, spec)
            record = encode_image_example(
                encoded=encoded,
                image_format=spec.encoding,
                height=spec.size,
                width=spec.size,
                channels=3,
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
    return pa.Table.from_arrays(
        [
            pa.array(records, pa.binary()),
            pa.array(list(splits), pa.string()),
            pa.array(list(names), pa.string()),
            pa.array(kept_labels, pa.int64()),
            pa.array(rejects, pa.string()),
            pa.array(messages, pa.string()),
            pa.array(notes, pa.string()),
        ],
        schema=OUT_SCHEMA,
    )
