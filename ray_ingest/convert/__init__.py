"""Conversion: images → TFRecord shards on Ray Data.

:mod:`options` says how the images are stored (:class:`ConvertOptions`, ``ImageSpec``),
:mod:`sources` lists the inputs and assigns the split, :mod:`images` decodes, resizes and
encodes one image (or rejects it), :mod:`rows` turns a batch of inputs into the writer's rows,
:mod:`pipeline` runs ``map_batches`` over the inputs (:func:`convert`, public as
``ray_ingest.convert_folder``), :mod:`from_dataset` does the same for the rows of any Ray
Dataset, and :mod:`sink` writes the shards in Ray write tasks (the staging, the commit and the
lock are :mod:`ray_ingest.format`'s, shared with
:class:`~ray_ingest.format.writer.ShardSetWriter`).
"""

from ray_ingest.convert.options import ConvertOptions
from ray_ingest.convert.pipeline import ConvertReport, convert

__all__ = ["ConvertOptions", "ConvertReport", "convert"]
