"""ray-ingest: images → TFRecord shards → streamed batches → training, on Ray.

The public API, imported lazily so that ``import ray_ingest`` stays cheap:

* ``convert_folder(src, out, options=None, **kwargs)`` and :class:`ConvertOptions`;
* ``convert_dataset(ds, out, options=None, image_column=..., label_column=..., ...)``: any
  Ray Dataset of images and labels;
* :class:`ShardSetWriter`: shards written from any Python loop, without Ray;
* ``read_records(path, split, options=None, **kwargs)``, :class:`ReadOptions`, the crops
  taken while decoding (:class:`RandomResizedCrop`, :class:`CenterCrop`),
  ``iter_images(dataset_or_iterator, ...)`` and ``skip_report(dataset)`` (what
  ``skip_corrupt`` skipped);
* ``fit(TrainConfig(...))`` and ``evaluate(data, model, split="val")`` (a saved model);
* ``synthesize(SynthSpec(...))``;
* the errors, all subclasses of :class:`RayIngestError`, and ``find_error`` (ours inside
  Ray's wrappers).

The core (format, convert, read) needs neither TensorFlow nor torch.
"""

import importlib
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from ray_ingest.errors import *  # noqa: F401,F403 - the errors import nothing heavy
from ray_ingest.errors import __all__ as _ERRORS

if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
    from ray_ingest.convert.from_dataset import convert_dataset  # noqa: F401
    from ray_ingest.convert.options import ConvertOptions
    from ray_ingest.convert.pipeline import ConvertReport
    from ray_ingest.format.writer import ShardSetWriter  # noqa: F401
    from ray_ingest.read import (ReadOptions, SkipReport, iter_images,  # noqa: F401
                                 read_records, skip_report)
    from ray_ingest.read.crop import CenterCrop, RandomResizedCrop  # noqa: F401
    from ray_ingest.tools.synth import SynthSpec, synthesize  # noqa: F401
    from ray_ingest.train.config import TrainConfig
    from ray_ingest.train.evaluate import evaluate  # noqa: F401

__version__ = "0.1.0"


def convert_folder(src: str, out: str, options: "Optional[ConvertOptions]" = None,
                   **kwargs: Any) -> "ConvertReport":
    """Converts SRC (class folders or a CSV/JSONL list of path,label; a path or URI) into
    TFRecord shards under OUT, stored as ``options`` (or the :class:`ConvertOptions` that
    ``kwargs`` make: ``convert_folder(src, out, size=224)``) say. Returns the report; OUT's
    ``manifest.json`` is written last. The function behind ``ray-ingest convert``."""
    from ray_ingest.convert.pipeline import convert

    return convert(src, out, options, **kwargs)


def fit(config: "TrainConfig", progress: Callable[[str], None] = print) -> Dict[str, Any]:
    """Trains as ``config`` says on Ray Train; returns the final metrics, with the best and
    latest checkpoints and the command that resumes the run. ``progress`` gets the lines to
    show (a table row per epoch, a summary). The function behind ``ray-ingest train``."""
    from ray_ingest.train.driver import train

    return train(config, progress)


_API = {
    "ConvertOptions": ("ray_ingest.convert.options", "ConvertOptions"),
    "ConvertReport": ("ray_ingest.convert.pipeline", "ConvertReport"),
    "convert_dataset": ("ray_ingest.convert.from_dataset", "convert_dataset"),
    "ShardSetWriter": ("ray_ingest.format.writer", "ShardSetWriter"),
    "read_records": ("ray_ingest.read", "read_records"),
    "iter_images": ("ray_ingest.read", "iter_images"),
    "ReadOptions": ("ray_ingest.read", "ReadOptions"),
    "RandomResizedCrop": ("ray_ingest.read.crop", "RandomResizedCrop"),
    "CenterCrop": ("ray_ingest.read.crop", "CenterCrop"),
    "SkipReport": ("ray_ingest.read", "SkipReport"),
    "skip_report": ("ray_ingest.read", "skip_report"),
    "PlannedFeed": ("ray_ingest.read", "PlannedFeed"),
    "read_planned": ("ray_ingest.read", "read_planned"),
    "TrainConfig": ("ray_ingest.train.config", "TrainConfig"),
    "evaluate": ("ray_ingest.train.evaluate", "evaluate"),
    "synthesize": ("ray_ingest.tools.synth", "synthesize"),
    "SynthSpec": ("ray_ingest.tools.synth", "SynthSpec"),
}


def __getattr__(name):
    if name in _API:
        module, attr = _API[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'ray_ingest' has no attribute {name!r}")


__all__ = sorted([*_API, *_ERRORS, "__version__", "convert_folder", "fit"])
