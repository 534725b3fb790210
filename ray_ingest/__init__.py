"""ray-ingest: images → TFRecord shards → streamed batches → training, on Ray.

The public API, imported lazily so that ``import ray_ingest`` stays cheap:

* ``convert(src, out, options=None, **kwargs)`` and :class:`ConvertOptions`;
* ``convert_dataset(ds, out, options=None, image_column=..., label_column=..., ...)``: any
  Ray Dataset of images and labels;
* ``read_records(path, split, options=None, **kwargs)``, :class:`ReadOptions`, the crops
  taken while decoding (:class:`RandomResizedCrop`, :class:`CenterCrop`),
  ``iter_images(dataset_or_iterator, ...)`` and ``skip_report(dataset)`` (what
  ``skip_corrupt`` skipped);
* ``train(TrainConfig(...))`` and ``evaluate(data, model, split="val")`` (a saved model);
* ``synthesize(SynthSpec(...))``;
* the errors, all subclasses of :class:`RayIngestError`, and ``find_error`` (ours inside
  Ray's wrappers).

The core (format, convert, read) needs neither TensorFlow nor torch.
"""

import importlib

from ray_ingest.errors import *  # noqa: F401,F403 - the errors import nothing heavy
from ray_ingest.errors import __all__ as _ERRORS

__version__ = "0.1.0"

_API = {
    "convert": ("ray_ingest.convert", None),  # the package is the function
    "ConvertOptions": ("ray_ingest.convert", "ConvertOptions"),
    "ConvertReport": ("ray_ingest.convert", "ConvertReport"),
    "convert_dataset": ("ray_ingest.convert.from_dataset", "convert_dataset"),
    "read_records": ("ray_ingest.read", "read_records"),
    "iter_images": ("ray_ingest.read", "iter_images"),
    "ReadOptions": ("ray_ingest.read", "ReadOptions"),
    "RandomResizedCrop": ("ray_ingest.read.crop", "RandomResizedCrop"),
    "CenterCrop": ("ray_ingest.read.crop", "CenterCrop"),
    "SkipReport": ("ray_ingest.read", "SkipReport"),
    "skip_report": ("ray_ingest.read", "skip_report"),
    "train": ("ray_ingest.train", None),  # the package is the function
    "TrainConfig": ("ray_ingest.train", "TrainConfig"),
    "evaluate": ("ray_ingest.train.evaluate", "evaluate"),
    "synthesize": ("ray_ingest.tools.synth", "synthesize"),
    "SynthSpec": ("ray_ingest.tools.synth", "SynthSpec"),
}
def __getattr__(name):
    if name in _API:
        module, attr = _API[name]
        mod = importlib.import_module(module)
        return mod if attr is None else getattr(mod, attr)
    raise AttributeError(f"module 'ray_ingest' has no attribute {name!r}")


__all__ = sorted([*_API, *_ERRORS, "__version__"])
