"""The streaming reader of conversion outputs, a Ray Data ``Datasource``.

:mod:`api` holds the public functions (:func:`read_records`, :func:`iter_images`),
:mod:`options` what a read may be asked for, :mod:`plan` the cut into read tasks, :mod:`task`
one read task (framing, CRC, manifest checks, blocks), :mod:`decode` JPEG decoding into batch
arrays (:mod:`gpu` on the GPU; :mod:`crop` the boxes of crops taken while decoding and
:mod:`cropdecode` their fused region decode), :mod:`collate` a ``collate_fn`` for Ray's
``iter_torch_batches``, :mod:`skips` the report of what ``skip_corrupt`` skipped,
:mod:`order` an epoch's planned sample order and :mod:`planned` the read of a rank's share of
it (:func:`read_planned`, :class:`PlannedFeed`), and :mod:`datasource` the Datasources
that tie them to Ray Data.
"""

from ray_ingest.read.api import iter_images, read_records
from ray_ingest.read.crop import CenterCrop, RandomResizedCrop
from ray_ingest.read.options import ReadOptions
from ray_ingest.read.planned import PlannedFeed, PlannedPosition, read_planned
from ray_ingest.read.skips import SkipReport, skip_report

__all__ = ["CenterCrop", "PlannedFeed", "PlannedPosition", "RandomResizedCrop", "ReadOptions",
           "SkipReport", "iter_images", "read_planned", "read_records", "skip_report"]
