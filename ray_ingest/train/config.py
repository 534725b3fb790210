"""Arguments of a training run, checked once."""

from __future__ import annotations

import math
import os
import shlex
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, Optional, Tuple

from ray_ingest.errors import ConfigError

FRAMEWORKS = ("tf", "torch")
#: Where training images are decoded: chosen per run (auto), in the read tasks on any node
#: (workers), by threads of each training worker (consumer), or on its GPU (gpu).
DECODE_MODES = ("auto", "workers", "consumer", "gpu")
#: The models each framework offers (``models_tf`` / ``models_torch`` build them).
MODELS_BY_FRAMEWORK = {
    "tf": ("small_cnn", "resnet18", "resnet50", "mobilenet_v2"),
    "torch": ("small_cnn", "resnet18", "resnet50", "mobilenet_v2"),
}
MODELS = tuple(dict.fromkeys(m for ms in MODELS_BY_FRAMEWORK.values() for m in ms))
#: Seconds without training progress after which a run is stopped with a stack dump of each
#: worker: long enough for the slowest first batch (stream start-up, graph compilation).
DEFAULT_STALL_TIMEOUT = 300.0
#: Random resized crop of fixed-size shards (a crop of the stored crop: object-centred data like
#: the synthetic set) and of whole-image shards (the ImageNet recipe of the reference trainers).
FIXED_CROP = (0.6, 1.1)
WHOLE_IMAGE_CROP = (0.08, 4 / 3)
#: Training resolution of whole-image shards when ``image_size`` is not given.
WHOLE_IMAGE_SIZE = 224


@dataclass(frozen=True)
class TrainConfig:
    data: str
    framework: str = "tf"
    model: str = "small_cnn"
    epochs: int = 5
    batch_size: int = 128  # global: split across workers
    num_workers: int = 1
    use_gpu: Optional[bool] = None  # None: use GPUs when the cluster has them
    cpus_per_worker: Optional[float] = None  # None: chosen from the cluster (see driver)
    storage_path: str = "runs"
    name: str = "ray-ingest-train"
    resume: bool = False
    metrics_out: Optional[str] = None
    seed: int = 0
    lr: float = 3e-3  # peak, after one epoch of warm-up; cosine decay to 0 over the run
    weight_decay: float = 1e-4
    # Training resolution; None: the stored size (whole-image shards: WHOLE_IMAGE_SIZE).
    image_size: Optional[int] = None
    augment: bool = True
    # Random resized crop: smallest area fraction kept and largest aspect-ratio change.
    # None: FIXED_CROP on fixed-size shards, WHOLE_IMAGE_CROP (ImageNet's) on whole images.
    crop_scale: Optional[float] = None
    crop_ratio: Optional[float] = None
    max_failures: int = 0
    prefetch_batches: int = 4
    shuffle_buffer: int = 0  # rows of Ray Data's local shuffle buffer (0: off)
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU), fp32, bf16
    synthetic_data: bool = False  # train on one batch kept on the device (upper bound)
    steps_per_epoch: Optional[int] = None  # cap (for tests and quick looks)
    stall_timeout: float = DEFAULT_STALL_TIMEOUT  # 0: wait forever
    decode: str = "auto"  # one of DECODE_MODES
    decode_threads: Optional[int] = None  # consumer decode threads per worker (None: its share)
    # Skip damaged records of the train split (each one alone) instead of failing; the final
    # report says how many and where. Off: a damaged record stops the run, naming it.
    skip_corrupt: bool = False
    attempt_id: str = field(default="")  # set by the driver; names this fit's attempts

    def __post_init__(self):
        for name in ("lr", "weight_decay", "crop_scale", "crop_ratio", "stall_timeout",
                     "cpus_per_worker"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value}")
        if self.framework not in FRAMEWORKS:
            raise ConfigError(f"framework must be one of {FRAMEWORKS}, got {self.framework!r}")
        if self.model not in MODELS:
            raise ConfigError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.model not in MODELS_BY_FRAMEWORK[self.framework]:
            raise ConfigError(
                f"model {self.model!r} is not available with framework {self.framework!r} "
                f"(it offers {', '.join(MODELS_BY_FRAMEWORK[self.framework])})")
        if self.decode not in DECODE_MODES:
            raise ConfigError(f"decode must be one of {DECODE_MODES}, got {self.decode!r}")
        if self.decode_threads is not None and self.decode_threads < 1:
            raise ConfigError(f"decode_threads must be >= 1, got {self.decode_threads}")
        if self.stall_timeout < 0:
            raise ConfigError(f"stall_timeout must be >= 0 seconds (0: off), got "
                             f"{self.stall_timeout}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.num_workers < 1:
            raise ConfigError(f"num_workers must be >= 1, got {self.num_workers}")
        if self.batch_size < self.num_workers:
            raise ConfigError(
                f"batch_size (global) {self.batch_size} is smaller than num_workers "
                f"{self.num_workers}")
        if self.batch_size % self.num_workers:
            raise ConfigError(
                f"batch_size (global) {self.batch_size} must divide evenly across "
                f"{self.num_workers} workers")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.cpus_per_worker is not None and self.cpus_per_worker <= 0:
            raise ConfigError(f"cpus_per_worker must be positive, got {self.cpus_per_worker}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ConfigError(f"steps_per_epoch must be >= 1 (leave it out for one pass over "
                              f"the train split), got {self.steps_per_epoch}")
        if self.prefetch_batches < 0:
            raise ConfigError(f"prefetch_batches must be >= 0, got {self.prefetch_batches}")
        if self.shuffle_buffer < 0:
            raise ConfigError(f"shuffle_buffer must be >= 0 rows (0: off), got "
                              f"{self.shuffle_buffer}")
        if self.max_failures < -1:
            raise ConfigError(f"max_failures must be -1 (unlimited) or >= 0, got {self.max_failures}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.crop_scale is not None and not 0 < self.crop_scale <= 1:
            raise ConfigError(f"crop_scale must be in (0, 1], got {self.crop_scale}")
        if self.crop_ratio is not None and self.crop_ratio < 1:
            raise ConfigError(f"crop_ratio must be >= 1, got {self.crop_ratio}")
        if self.image_size is not None and self.image_size < 8:
            raise ConfigError(f"image_size must be >= 8, got {self.image_size}")
        if "/" in self.name or self.name in ("", ".", ".."):
            raise ConfigError(f"name must be a plain folder name, got {self.name!r}")

    def crop_params(self, manifest) -> Tuple[float, float]:
        """``(crop_scale, crop_ratio)``, the defaults resolved for the dataset's storage."""
        scale, ratio = WHOLE_IMAGE_CROP if manifest.variable_size else FIXED_CROP
        return (scale if self.crop_scale is None else self.crop_scale,
                ratio if self.crop_ratio is None else self.crop_ratio)

    def train_size(self, manifest) -> int:
        """The training resolution: ``image_size``, else the stored size (whole-image shards:
        WHOLE_IMAGE_SIZE)."""
        if self.image_size:
            return self.image_size
        return WHOLE_IMAGE_SIZE if manifest.variable_size else manifest.height

    def decode_crops(self, manifest):
        """``(train crop, validation crop)`` taken while decoding: on whole-image shards a
        random resized crop with the flip (or, without augmentation, the centre crop) and the
        centre crop; None, None on fixed-size shards (the device crops those)."""
        if not manifest.variable_size:
            return None, None
        from ray_ingest.read.crop import CenterCrop, RandomResizedCrop

        size = self.train_size(manifest)
        scale, ratio = self.crop_params(manifest)
        val = CenterCrop(size)
        if not self.augment:
            return val, val
        return RandomResizedCrop(size, (scale, 1.0), (1.0 / ratio, ratio), flip_prob=0.5), val

    def augment_config(self, manifest):
        """The device augmentation. Whole-image shards come cropped and flipped from the
        decode: the device keeps the colour jitter and the normalisation (an identity box)."""
        from ray_ingest.augment import AugmentConfig

        size = self.train_size(manifest)
        if manifest.variable_size:
            return AugmentConfig(size=size, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_prob=0.0,
                                 enabled=self.augment)
        scale, ratio = self.crop_params(manifest)
        return AugmentConfig(size=size, scale=(scale, 1.0), ratio=(1.0 / ratio, ratio),
                             enabled=self.augment)

    def resolved_precision(self, accelerator: bool) -> str:
        """``precision`` with ``auto`` made concrete: bf16 on an accelerator, fp32 otherwise."""
        if self.precision != "auto":
            return self.precision
        return "bf16" if accelerator else "fp32"

    @property
    def per_worker_batch(self) -> int:
        return self.batch_size // self.num_workers

    def command_line(self) -> str:
        """The ``ray-ingest train`` command of this configuration: the data, ``--epochs``,
        ``--storage-path`` and ``--name``, and every other field that differs from its default,
        as its option (``--field-name VALUE``; a flag for booleans: ``--field`` /
        ``--no-field``)."""
        default = TrainConfig(data=self.data)
        parts = ["ray-ingest", "train", shlex.quote(self.data)]
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("data", "attempt_id") or (
                    value == getattr(default, f.name)
                    and f.name not in ("epochs", "storage_path", "name")):
                continue
            option = f.name.replace("_", "-")
            if isinstance(value, bool):
                parts.append(f"--{option}" if value else f"--no-{option}")
            elif value is not None:
                parts += [f"--{option}", shlex.quote(str(value))]
        return " ".join(parts)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def absolute(self) -> "TrainConfig":
        from ray_ingest import fs

        d = self.to_dict()
        d["data"] = fs.normalize(self.data)
        d["storage_path"] = fs.normalize(self.storage_path)
        if self.metrics_out:
            d["metrics_out"] = os.path.abspath(self.metrics_out)
        return TrainConfig(**d)
