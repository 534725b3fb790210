"""How a conversion stores the images, checked once.

:class:`ImageFields` declares how each image is stored (size, resize mode, limits, encoding,
Exif) once, for both :class:`ImageSpec` (what every image becomes, in the workers) and
:class:`ConvertOptions` (a whole conversion, as users give it); each resolves what is left out
its own way. The fields that ``ray-ingest convert`` sets declare their option here
(:func:`~ray_ingest.flags.opt`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional, Tuple

from ray_ingest.errors import ConfigError, FieldName
from ray_ingest.flags import opt
from ray_ingest.format import keys
from ray_ingest.format.manifest import KEEP

#: "keep" stores whole images (aspect kept, bounded by ``max_side`` / ``short_side``); the
#: others make every image ``size`` x ``size``.
FIXED_RESIZE_MODES = ("center-crop", "squash", "pad")
RESIZE_MODES = FIXED_RESIZE_MODES + (KEEP,)
MAX_JPEG_SIDE = 65535
EXIF_MODES = ("apply", "ignore")
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit
#: The default storage policy: whole images whose longer side is at most this.
DEFAULT_MAX_SIDE = 512
#: The fixed-size modes' default side, and the mode a ``size`` alone asks for.
DEFAULT_SIZE = 224
FIXED_DEFAULT_MODE = "center-crop"


@dataclass(frozen=True)
class ImageFields:
    """How each image is stored: the fields :class:`ImageSpec` and :class:`ConvertOptions`
    share. None of ``size`` / ``resize_mode`` / ``max_side`` / ``short_side``: resolved by the
    class (see each)."""

    #: The side of the fixed-size modes (default 224 there; not used by "keep").
    size: Optional[int] = opt(None, help=(
        f"store fixed SIZE x SIZE squares (center-crop unless --resize-mode names another "
        f"fixed mode; default of the fixed modes: {DEFAULT_SIZE})"))
    #: "keep" (whole images), or a fixed-size mode.
    resize_mode: Optional[str] = opt(None, choices=RESIZE_MODES, help=(
        "keep (the default unless --size is given): store whole images, aspect kept (fitting "
        "JPEGs byte for byte), bounded by --max-side / --short-side; center-crop: crop to a "
        "square, then resize; squash: resize the whole image; pad: fit inside the square and "
        "pad"))
    #: resize_mode "keep" (whole images): the largest longer / shorter side stored.
    max_side: Optional[int] = opt(None, help=(
        f"keep: downscale so that the longer side is at most this (never upscaled; default "
        f"{DEFAULT_MAX_SIDE} unless --short-side is given; 0: no limit)"))
    short_side: Optional[int] = opt(None, help=(
        "keep: downscale so that the shorter side is at most this (never upscaled; default: "
        "no limit)"))
    encoding: str = opt(keys.FORMAT_JPEG, choices=keys.ENCODINGS,
                        help="how records store the pixels: JPEG bytes or raw uint8 HxWx3")
    quality: int = opt(90, help="JPEG quality")
    max_pixels: int = opt(DEFAULT_MAX_PIXELS,
                          help="reject images with more pixels, before decoding")
    #: "apply": store photos upright by their Exif orientation; "ignore": as stored.
    exif: str = opt("apply", choices=EXIF_MODES,
                    help="apply the Exif orientation (photos stored upright), or ignore it")

    @property
    def keep(self) -> bool:
        return self.resize_mode == KEEP


@dataclass(frozen=True)
class ImageSpec(ImageFields):
    """What every converted image becomes. Left out: ``size`` 224, ``resize_mode``
    "center-crop"; ``max_side`` / ``short_side`` None: no limit."""

    def __post_init__(self):
        if self.size is None:
            object.__setattr__(self, "size", DEFAULT_SIZE)
        if self.resize_mode is None:
            object.__setattr__(self, "resize_mode", FIXED_DEFAULT_MODE)
        if not isinstance(self.size, int) or not 8 <= self.size <= 8192:
            raise ConfigError(FieldName("size"), f" must be an integer from 8 to 8192, got "
                              f"{self.size!r}")
        if self.resize_mode not in RESIZE_MODES:
            raise ConfigError(FieldName("resize_mode"), f" must be one of {RESIZE_MODES}, got "
                              f"{self.resize_mode!r}")
        if self.encoding not in keys.ENCODINGS:
            raise ConfigError(FieldName("encoding"), f" must be one of {keys.ENCODINGS}, got "
                              f"{self.encoding!r}")
        for name in ("max_side", "short_side"):
            value = getattr(self, name)
            if value is None:
                continue
            if self.resize_mode != KEEP:
                raise ConfigError(FieldName(name), " applies to ", FieldName("resize_mode"),
                                  f" 'keep' (whole images), not {self.resize_mode!r}; "
                                  "fixed-size modes take ", FieldName("size"))
            if (not isinstance(value, int) or isinstance(value, bool)
                    or not 8 <= value <= MAX_JPEG_SIDE):
                raise ConfigError(FieldName(name), f" must be an integer from 8 to "
                                  f"{MAX_JPEG_SIDE}, got {value!r}")
        if self.resize_mode == KEEP and self.encoding != keys.FORMAT_JPEG:
            raise ConfigError(FieldName("resize_mode"), " 'keep' stores whole images as JPEG; ",
                              FieldName("encoding"), f" {self.encoding!r} applies to the "
                              "fixed-size modes")
        if not 1 <= self.quality <= 100:
            raise ConfigError(FieldName("quality"), f" must be from 1 to 100, got "
                              f"{self.quality!r}")
        if self.max_pixels < 1:
            raise ConfigError(FieldName("max_pixels"), f" must be positive, got "
                              f"{self.max_pixels!r}")
        if self.exif not in EXIF_MODES:
            raise ConfigError(FieldName("exif"), f" must be one of {EXIF_MODES}, got "
                              f"{self.exif!r}")

    @property
    def raw_bytes(self) -> int:
        return self.size * self.size * 3

    def kept_size(self, width: int, height: int) -> Tuple[int, int]:
        """Keep mode: the ``(width, height)`` an image of ``width`` x ``height`` is stored at,
        downscaled by the largest factor that ``max_side`` and ``short_side`` need (never
        upscaled; the limits are integers, so rounding never exceeds them)."""
        f = 1.0
        if self.max_side is not None:
            f = min(f, self.max_side / max(width, height))
        if self.short_side is not None:
            f = min(f, self.short_side / min(width, height))
        if f >= 1.0:
            return width, height
        return max(1, round(width * f)), max(1, round(height * f))


@dataclass(frozen=True)
class ConvertOptions(ImageFields):
    """How ``convert_folder`` / ``convert_dataset`` store the images.

    The default policy stores whole images (``resize_mode="keep"``), aspect kept, the longer
    side at most :data:`DEFAULT_MAX_SIDE` (512): what the standard random-resized-crop recipe
    trains from. A ``size`` alone asks for fixed ``size`` x ``size`` squares (``center-crop``
    unless ``resize_mode`` names another fixed mode). In ``keep`` mode, ``max_side`` /
    ``short_side`` bound the stored sides (neither given: ``max_side=512``; ``0``: no limit).
    The fields hold the resolved values after construction.
    """

    shard_size_mb: float = opt(100.0, help="largest size of a shard file")
    val_fraction: float = opt(0.1, help="share of the inputs in the val split (a stable hash "
                                        "of each name)")
    seed: int = opt(0, help="seed of the split and of the order of the inputs in the shards")
    max_reject_fraction: float = opt(0.01, help="fail (and write no manifest) when more inputs "
                                                "than this are rejected")
    batch_size: int = opt(32, help="images per map_batches call")
    overwrite: bool = opt(False, help="replace a finished output")
    #: Follow links (to folders or files) whose target lies outside SRC.
    follow_links: bool = opt(False, help="follow links whose target lies outside SRC "
                                         "(reported and skipped otherwise)")
    #: The number of classes; integer labels may then leave ids unused (else dense 0..K-1).
    num_classes: Optional[int] = opt(None, help="number of classes, when integer labels leave "
                                                "some ids unused")
    #: Store each shard's SHA-256 in the manifest (computed while writing).
    checksums: bool = opt(False, help="store each shard's SHA-256 in the manifest")

    def __post_init__(self):
        self._resolve_policy()
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(FieldName("val_fraction"), f" must be in [0, 1), got "
                              f"{self.val_fraction}")
        if not 0.0 <= self.max_reject_fraction <= 1.0:
            raise ConfigError(FieldName("max_reject_fraction"), f" must be in [0, 1], got "
                              f"{self.max_reject_fraction}")
        if not 0.01 <= self.shard_size_mb <= 10_000:
            raise ConfigError(FieldName("shard_size_mb"), f" must be from 0.01 to 10000, got "
                              f"{self.shard_size_mb}")
        if self.batch_size < 1:
            raise ConfigError(FieldName("batch_size"), f" must be positive, got "
                              f"{self.batch_size}")
        if self.num_classes is not None and self.num_classes < 1:
            raise ConfigError(FieldName("num_classes"), f" must be positive, got "
                              f"{self.num_classes}")
        self.image_spec()  # validates size, mode, encoding, quality, max_pixels, limits

    def _resolve_policy(self) -> None:
        mode = self.resize_mode
        if mode is None:
            mode = KEEP if self.size is None else FIXED_DEFAULT_MODE
        max_side, short_side, size = self.max_side, self.short_side, self.size
        if mode == KEEP:
            if size is not None:
                raise ConfigError(
                    FieldName("size"), f"={size} sets the side of the fixed-size modes "
                    f"({', '.join(FIXED_RESIZE_MODES)}); whole images (", FieldName("resize_mode"),
                    " 'keep') are bounded by ", FieldName("max_side"), " / ",
                    FieldName("short_side"))
            if max_side is None and short_side is None:
                max_side = DEFAULT_MAX_SIDE
            max_side = None if max_side == 0 else max_side
            short_side = None if short_side == 0 else short_side
        elif size is None:
            size = DEFAULT_SIZE
        for name, value in (("resize_mode", mode), ("size", size), ("max_side", max_side),
                            ("short_side", short_side)):
            object.__setattr__(self, name, value)

    def image_spec(self) -> ImageSpec:
        return ImageSpec(**{f.name: getattr(self, f.name) for f in fields(ImageFields)})
