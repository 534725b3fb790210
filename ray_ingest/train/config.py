"""Arguments of a training run, checked once."""

from __future__ import annotations

import math
import os
import shlex
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Tuple

from ray_ingest.errors import ConfigError, FieldName
from ray_ingest.flags import no_flag, opt, option_words

FRAMEWORKS = ("tf", "torch")
#: Where training images are decoded: chosen per run (auto), in the read tasks on any node
#: (workers), by threads of each training worker (consumer), or on its GPU (gpu).
DECODE_MODES = ("auto", "workers", "consumer", "gpu")
#: The models; both frameworks build each of them (``models_tf`` / ``models_torch``).
MODELS = ("small_cnn", "resnet18", "resnet50", "mobilenet_v2")
#: The training order: planned once from the manifest, the seed and the epoch (global batches
#: that do not depend on the number of workers, resumable at any step), or Ray Data's
#: streaming_split of a shuffled read (blocks handed to the workers as they come).
ORDERS = ("planned", "stream")
#: auto: bf16 on an accelerator, fp32 on CPUs.
PRECISIONS = ("auto", "fp32", "bf16")
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
    data: str = opt(help="a conversion output (path or URI)", positional=True)
    framework: str = opt("tf", choices=FRAMEWORKS, help=(
        "TensorFlow/Keras (MultiWorkerMirroredStrategy) or PyTorch (DDP)"))
    model: str = opt("small_cnn", choices=MODELS, help="model architecture")
    epochs: int = opt(5, help="passes over the train split")
    batch_size: int = opt(128, help="global batch size")  # split across workers
    num_workers: int = opt(1, help="Ray Train workers (data-parallel replicas)")
    use_gpu: Optional[bool] = opt(None, help="default: use GPUs when the cluster has one per "
                                             "worker")
    # None: chosen from the cluster (see driver).
    cpus_per_worker: Optional[float] = opt(None, help="default: chosen from the cluster")
    storage_path: str = opt("runs", help="folder or URI of the runs (checkpoints, TensorBoard "
                                         "logs)")
    name: str = opt("ray-ingest-train", help="run name (folder under --storage-path)")
    resume: bool = opt(False, help="continue the run from its last checkpoint")
    metrics_out: Optional[str] = opt(None, help="write the final metrics to this JSON file")
    seed: int = opt(0, help="seed of the shuffling, the augmentation and the initial weights")
    # Peak, after one epoch of warm-up; cosine decay to 0 over the run.
    lr: float = opt(3e-3, help="peak learning rate")
    weight_decay: float = opt(1e-4, help="AdamW's weight decay")
    # Training resolution; None: the stored size (whole-image shards: WHOLE_IMAGE_SIZE).
    image_size: Optional[int] = opt(None, help=(
        f"training resolution (default: the stored size; whole-image shards: "
        f"{WHOLE_IMAGE_SIZE})"))
    augment: bool = opt(True, help=(
        "train on the stored images as they are (default: random resized crop, flip and "
        "colour jitter)"))
    # Random resized crop: smallest area fraction kept and largest aspect-ratio change.
    # None: FIXED_CROP on fixed-size shards, WHOLE_IMAGE_CROP (ImageNet's) on whole images.
    crop_scale: Optional[float] = opt(None, help=(
        f"random resized crop: smallest area fraction (default: {FIXED_CROP[0]} of a "
        f"fixed-size stored image; {WHOLE_IMAGE_CROP[0]} of a whole image, cropped while "
        f"decoding)"))
    crop_ratio: Optional[float] = opt(None, help=(
        f"random resized crop: largest aspect-ratio change (default: {FIXED_CROP[1]}; 4/3 on "
        f"whole-image shards)"))
    max_failures: int = opt(0, help="worker-group restarts allowed (-1: unlimited)")
    prefetch_batches: int = opt(4, help="batches each worker's stream prepares ahead of the "
                                        "step")
    shuffle_buffer: int = opt(0, help="rows of Ray Data's local shuffle buffer (0: off)")
    precision: str = opt("auto", choices=PRECISIONS, help="auto: bf16 on an accelerator, fp32 "
                                                          "on CPUs")
    synthetic_data: bool = opt(False, help="train on one batch kept on the device: the step's "
                                           "upper bound")
    # A cap (for tests and quick looks).
    steps_per_epoch: Optional[int] = opt(None, help=(
        "steps per epoch (default: one pass over each worker's part of the train split)"))
    stall_timeout: float = opt(DEFAULT_STALL_TIMEOUT, help=(
        "seconds without training progress before the run is stopped with a stack dump of "
        "each worker (0: wait forever)"))
    decode: str = opt("auto", choices=DECODE_MODES, help=(
        "where JPEG records are decoded: in the read tasks (workers), in threads of each "
        "training worker (consumer), on its GPU (gpu), or chosen from the cluster (auto)"))
    decode_threads: Optional[int] = opt(None, help=(
        "consumer decode threads per training worker (default: its share of the node's "
        "cores)"))
    # Skip damaged records of the train split (each one alone) instead of failing; the final
    # report says how many and where. Off: a damaged record stops the run, naming it.
    skip_corrupt: bool = opt(False, help=(
        "skip damaged records of the train split instead of stopping; the final report says "
        "how many and where"))
    order: str = opt("planned", choices=ORDERS, help=(
        "planned: one order of the whole split per epoch, the same global batches for any "
        "--num-workers, resumable at any step; stream: Ray Data's streaming_split of a "
        "shuffled read (needed by --skip-corrupt and --shuffle-buffer)"))
    checkpoint_every_steps: Optional[int] = opt(None, help=(
        "also checkpoint every N global steps inside an epoch: model, optimizer, learning-rate "
        "schedule and the data position (--order planned)"))
    checkpoint_every_minutes: Optional[float] = opt(None, help=(
        "also checkpoint inside an epoch when M minutes have passed since the last checkpoint "
        "(--order planned)"))
    sample_log: Optional[str] = opt(None, help=(
        "append one JSON line per worker and step to this file: epoch, step, rank, world and "
        "the image/filename of each sample trained"))
    attempt_id: str = no_flag("")  # set by the driver; names this fit's attempts

    def __post_init__(self):
        for name in ("lr", "weight_decay", "crop_scale", "crop_ratio", "stall_timeout",
                     "cpus_per_worker"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ConfigError(FieldName(name), f" must be a finite number, got {value}")
        if self.framework not in FRAMEWORKS:
            raise ConfigError(FieldName("framework"), f" must be one of {FRAMEWORKS}, got "
                              f"{self.framework!r}")
        if self.model not in MODELS:
            raise ConfigError(FieldName("model"), f" must be one of {MODELS}, got "
                              f"{self.model!r}")
        if self.decode not in DECODE_MODES:
            raise ConfigError(FieldName("decode"), f" must be one of {DECODE_MODES}, got "
                              f"{self.decode!r}")
        if self.decode_threads is not None and self.decode_threads < 1:
            raise ConfigError(FieldName("decode_threads"), f" must be >= 1, got "
                              f"{self.decode_threads}")
        if self.stall_timeout < 0:
            raise ConfigError(FieldName("stall_timeout"), f" must be >= 0 seconds (0: off), "
                              f"got {self.stall_timeout}")
        if self.epochs < 1:
            raise ConfigError(FieldName("epochs"), f" must be >= 1, got {self.epochs}")
        if self.num_workers < 1:
            raise ConfigError(FieldName("num_workers"), f" must be >= 1, got "
                              f"{self.num_workers}")
        if self.batch_size < self.num_workers:
            raise ConfigError(FieldName("batch_size"), f" (global) {self.batch_size} is "
                              "smaller than ", FieldName("num_workers"), f" {self.num_workers}")
        if self.batch_size % self.num_workers:
            raise ConfigError(FieldName("batch_size"), f" (global) {self.batch_size} must "
                              f"divide evenly across {self.num_workers} workers")
        if self.lr <= 0:
            raise ConfigError(FieldName("lr"), f" must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(FieldName("weight_decay"), f" must be >= 0, got "
                              f"{self.weight_decay}")
        if self.cpus_per_worker is not None and self.cpus_per_worker <= 0:
            raise ConfigError(FieldName("cpus_per_worker"), f" must be positive, got "
                              f"{self.cpus_per_worker}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ConfigError(FieldName("steps_per_epoch"), " must be >= 1 (leave it out for "
                              f"one pass over the train split), got {self.steps_per_epoch}")
        if self.prefetch_batches < 0:
            raise ConfigError(FieldName("prefetch_batches"), f" must be >= 0, got "
                              f"{self.prefetch_batches}")
        if self.shuffle_buffer < 0:
            raise ConfigError(FieldName("shuffle_buffer"), f" must be >= 0 rows (0: off), got "
                              f"{self.shuffle_buffer}")
        if self.max_failures < -1:
            raise ConfigError(FieldName("max_failures"), f" must be -1 (unlimited) or >= 0, "
                              f"got {self.max_failures}")
        if self.precision not in PRECISIONS:
            raise ConfigError(FieldName("precision"), f" must be auto, fp32 or bf16, got "
                              f"{self.precision!r}")
        if self.crop_scale is not None and not 0 < self.crop_scale <= 1:
            raise ConfigError(FieldName("crop_scale"), f" must be in (0, 1], got "
                              f"{self.crop_scale}")
        if self.crop_ratio is not None and self.crop_ratio < 1:
            raise ConfigError(FieldName("crop_ratio"), f" must be >= 1, got {self.crop_ratio}")
        if self.image_size is not None and self.image_size < 8:
            raise ConfigError(FieldName("image_size"), f" must be >= 8, got {self.image_size}")
        if self.order not in ORDERS:
            raise ConfigError(FieldName("order"), f" must be one of {ORDERS}, got "
                              f"{self.order!r}")
        for name in ("skip_corrupt", "shuffle_buffer"):
            if self.order == "planned" and getattr(self, name):
                raise ConfigError(FieldName(name), " needs ", FieldName("order"), " stream (a "
                                  "planned order trains every record it lists, in its order)")
        if self.checkpoint_every_steps is not None and self.checkpoint_every_steps < 1:
            raise ConfigError(FieldName("checkpoint_every_steps"), f" must be >= 1, got "
                              f"{self.checkpoint_every_steps}")
        minutes = self.checkpoint_every_minutes
        if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
            raise ConfigError(FieldName("checkpoint_every_minutes"), f" must be a positive "
                              f"number, got {minutes}")
        if self.sample_log and self.synthetic_data:
            raise ConfigError(FieldName("sample_log"), " needs real data (",
                              FieldName("synthetic_data"), " trains one batch without file "
                              "names)")
        if self.sample_log and "://" in self.sample_log:
            raise ConfigError(FieldName("sample_log"), f" is a local file (each node appends "
                              f"to its own), got {self.sample_log!r}")
        if self.order == "stream" and (self.checkpoint_every_steps or minutes):
            raise ConfigError(FieldName("checkpoint_every_steps" if self.checkpoint_every_steps
                                        else "checkpoint_every_minutes"), " needs ",
                              FieldName("order"), " planned (a streaming_split run cannot say "
                              "which samples it has seen)")
        if "/" in self.name or self.name in ("", ".", ".."):
            raise ConfigError(FieldName("name"), f" must be a plain folder name, got "
                              f"{self.name!r}")

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
        ``--storage-path`` and ``--name``, and the option of every other field that differs
        from its default (the options the CLI generates from the same fields)."""
        words = option_words(self, always=("epochs", "storage_path", "name"))
        return " ".join(["ray-ingest", "train", *map(shlex.quote, words)])

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def absolute(self) -> "TrainConfig":
        from ray_ingest import fs

        d = self.to_dict()
        d["data"] = fs.normalize(self.data)
        d["storage_path"] = fs.normalize(self.storage_path)
        for name in ("metrics_out", "sample_log"):
            if d[name]:
                d[name] = os.path.abspath(d[name])
        return TrainConfig(**d)
