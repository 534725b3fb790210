"""Consumer decode for users of Ray's own ``DataIterator.iter_torch_batches``: a
``collate_fn`` that decodes the JPEG records of a ``read_records(..., decode="consumer")``
stream straight from the Arrow buffer, in Ray's prefetch threads, into one ``uint8`` tensor
per batch; Ray then pins it and moves it to the device.

    ds = ray_ingest.read_records(path, "train", decode="consumer")
    for batch in ds.iter_torch_batches(batch_size=256, collate_fn=JpegCollate(),
                                       prefetch_batches=4, pin_memory=True):
        batch["image"]  # uint8 [N, H, W, 3] on the training device

(``iter_tf_batches`` takes no ``collate_fn`` in Ray 2.60; TensorFlow users iterate
:func:`~ray_ingest.read.iter_images`, which decodes the same way, and convert its numpy
batches with ``tf.convert_to_tensor``.)
"""

from __future__ import annotations

import warnings
from typing import Dict

from ray.data.collate_fn import ArrowBatchCollateFn

from ray_ingest.read.decode import IMAGE, LABEL, as_numpy, check_dct, decode_batch, is_encoded


class JpegCollate(ArrowBatchCollateFn):
    """Decodes an encoded Arrow batch into ``{"image": uint8 tensor [N, H, W, 3], "label":
    int64 tensor [N]}``; batches that already hold pixels are converted as they are."""

    def __init__(self, dct: str = "fast"):
        super().__init__()
        check_dct(dct)
        self.dct = dct

    def __call__(self, batch) -> Dict[str, "torch.Tensor"]:  # noqa: F821
        import torch

        d = decode_batch(batch, self.dct) if is_encoded(batch) else as_numpy(batch)
        with warnings.catch_warnings():  # pass-through pixels are read-only views; none writes
            warnings.simplefilter("ignore", UserWarning)
            return {IMAGE: torch.from_numpy(d[IMAGE]), LABEL: torch.from_numpy(d[LABEL])}
