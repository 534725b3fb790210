"""Conversion: images → TFRecord shards on Ray Data.

:mod:`sources` lists the inputs and assigns the split, :mod:`images` decodes, resizes and
encodes one image (or rejects it), :mod:`rows` turns a batch of inputs into the writer's rows,
:mod:`lock` keeps one writer per output, :mod:`pipeline` runs ``map_batches`` over the inputs,
:mod:`from_dataset` does the same for the rows of any Ray Dataset, and :mod:`sink` writes and
commits the shards. The package is also the function:
``ray_ingest.convert(src, out, ...)`` is :func:`pipeline.convert`.
"""

from ray_ingest._callable import make_package_callable
from ray_ingest.convert.pipeline import ConvertOptions, ConvertReport, convert

make_package_callable(__name__, convert)

__all__ = ["ConvertOptions", "ConvertReport", "convert"]
