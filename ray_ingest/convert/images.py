"""Decode → resize → encode of single images, on a fast codec, with explicit rejects.

JPEG goes through libjpeg-turbo (simplejpeg), decoding straight to a reduced size in the DCT
domain when the output is much smaller than the input; everything else (PNG, GIF, BMP, TIFF,
WebP, CMYK JPEG, ...) goes through Pillow. The pixel count is checked from the header,
before any pixels are decoded (decompression bombs). Every image comes out as 8-bit RGB;
what had to be converted to get there is reported as a note, and what cannot be converted
raises :class:`ImageRejected` with a short reason code and a message.

Photos are stored upright: the Exif orientation (camera held sideways, front camera
mirrored) is applied after decoding, on both paths, as every viewer and
``PIL.ImageOps.exif_transpose`` show them (``ImageSpec.exif="ignore"`` keeps the stored
pixel order). For JPEGs the tag is read straight from the APP1 segment, without a parser.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ray_ingest.errors import ConfigError
from ray_ingest.format import keys

RESIZE_MODES = ("center-crop", "squash", "pad")
EXIF_MODES = ("apply", "ignore")
_ORIENTATION_TAG = 0x0112
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit

# Reject reasons (stable codes, used in rejects.jsonl and in the summary).
R_EMPTY = "empty-file"
R_NOT_IMAGE = "not-an-image"
R_CORRUPT = "corrupt-image"
R_TOO_LARGE = "too-many-pixels"
R_TOO_SMALL = "degenerate-size"
R_READ = "read-error"


class ImageRejected(Exception):
    def __init__(self, reason: str, message: str):
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


@dataclass(frozen=True)
class ImageSpec:
    """What every converted image becomes."""

    size: int = 224
    resize_mode: str = "center-crop"
    encoding: str = keys.FORMAT_JPEG
    quality: int = 90
    max_pixels: int = DEFAULT_MAX_PIXELS
    #: "apply": store photos upright by their Exif orientation; "ignore": as stored.
    exif: str = "apply"

    def __post_init__(self):
        if not isinstance(self.size, int) or not 8 <= self.size <= 8192:
            raise ConfigError(f"size must be an integer from 8 to 8192, got {self.size!r}")
        if self.resize_mode not in RESIZE_MODES:
            raise ConfigError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if self.encoding not in keys.ENCODINGS:
            raise ConfigError(f"encoding must be one of {keys.ENCODINGS}, got {self.encoding!r}")
        if not 1 <= self.quality <= 100:
            raise ConfigError(f"quality must be from 1 to 100, got {self.quality!r}")
        if self.max_pixels < 1:
            raise ConfigError(f"max_pixels must be positive, got {self.max_pixels!r}")
        if self.exif not in EXIF_MODES:
            raise ConfigError(f"exif must be one of {EXIF_MODES}, got {self.exif!r}")

    @property
    def raw_bytes(self) -> int:
        return self.size * self.size * 3


def _check_pixels(width: int, height: int, spec: ImageSpec) -> None:
    if width < 1 or height < 1:
        raise ImageRejected(R_TOO_SMALL, f"image has size {width}x{height}")
    if width * height > spec.max_pixels:
        raise ImageRejected(
            R_TOO_LARGE,
            f"{width}x{height} = {width * height:,} pixels exceeds the limit of "
            f"{spec.max_pixels:,} (decompression bomb?)",
        )


def _min_decode_size(width: int, height: int, spec: ImageSpec) -> Tuple[int, int]:
    """The smallest (min_height, min_width) a DCT-scaled decode may produce."""
    s = spec.size
    if spec.resize_mode == "pad":  # the long side must stay >= size
        return (s, 0) if height >= width else (0, s)
    return s, s  # center-crop (short side >= size) and squash (both sides >= size)


def is_jpeg(data) -> bool:
    return len(data) >= 3 and data[0] == 0xFF and data[1] == 0xD8 and data[2] == 0xFF


def jpeg_orientation(data) -> int:
    """The Exif orientation (1..8) of a JPEG, read from its APP1 segment; 1 when the file
    has none or it is unreadable. Walks the marker segments up to the first scan."""
    data = bytes(data[:1 << 17]) if not isinstance(data, bytes) else data
    i, n = 2, len(data)
    while i + 4 <= n and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xDA, 0xD9):  # start of scan, end of image: no metadata after it
            break
        size = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == 0xE1 and data[i + 4 : i + 10] == b"Exif\0\0":
            return _tiff_orientation(data[i + 10 : i + 2 + size])
        i += 2 + size
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    """The orientation tag of a TIFF structure's first IFD (the Exif payload); 1 if absent."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    ifd = int.from_bytes(tiff[4:8], order)
    count = int.from_bytes(tiff[ifd : ifd + 2], order) if ifd + 2 <= len(tiff) else 0
    for k in range(count):
        entry = tiff[ifd + 2 + 12 * k : ifd + 14 + 12 * k]
        if len(entry) < 12:
            break
        if int.from_bytes(entry[0:2], order) == _ORIENTATION_TAG:
            if int.from_bytes(entry[2:4], order) != 3:  # SHORT
                return 1
            value = int.from_bytes(entry[8:10], order)
            return value if 1 <= value <= 8 else 1
    return 1


def orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """``arr`` (``[H, W, C]`` as stored) turned upright by its Exif orientation, as
    ``PIL.ImageOps.exif_transpose`` does (a view: flips and transposes copy nothing)."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.transpose(1, 0, 2)
    if orientation == 6:
        return arr[::-1].transpose(1, 0, 2)
    if orientation == 7:
        return arr[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:
        return arr[:, ::-1].transpose(1, 0, 2)
    return arr


def _swaps_axes(orientation: int) -> bool:
    """Orientations 5-8 store the image with width and height exchanged."""
    return orientation >= 5


def decode_image(data: bytes, spec: ImageSpec) -> Tuple[np.ndarray, Optional[str]]:
    """Decodes to ``uint8[H, W, 3]`` RGB. Returns the pixels and a conversion note (or None).

    JPEGs may come back downscaled by a power of two, never below what ``spec`` needs.
    """
    if len(data) == 0:
        raise ImageRejected(R_EMPTY, "file is empty (0 bytes)")
    if is_jpeg(data):
        import simplejpeg

        try:
            height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        except ValueError as e:
            raise ImageRejected(R_CORRUPT, f"unreadable JPEG header: {e}") from None
        orientation = jpeg_orientation(data) if spec.exif == "apply" else 1
        swap = _swaps_axes(orientation)
        # The bounds hold for the image as displayed; the decoder sees it as stored.
        shown_w, shown_h = (height, width) if swap else (width, height)
        _check_pixels(shown_w, shown_h, spec)
        if colorspace not in ("CMYK", "YCCK"):
            min_h, min_w = _min_decode_size(shown_w, shown_h, spec)
            if swap:
                min_h, min_w = min_w, min_h
            try:
                arr = simplejpeg.decode_jpeg(
                    data, colorspace="RGB", min_height=min_h, min_width=min_w, strict=True
                )
            except ValueError as e:
                raise ImageRejected(R_CORRUPT, f"corrupt JPEG: {e}") from None
            return orient(arr, orientation), ("grayscale->rgb" if colorspace == "Gray" else None)
        # CMYK/YCCK JPEGs: libjpeg-turbo cannot give RGB, Pillow can.
    return _decode_with_pillow(data, spec)


def _decode_with_pillow(data: bytes, spec: ImageSpec) -> Tuple[np.ndarray, Optional[str]]:
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # we check the limit ourselves, from the header
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageRejected(R_NOT_IMAGE, "not a recognised image format") from None
    except Exception as e:  # noqa: BLE001 - Pillow raises many types on garbage
        raise ImageRejected(R_NOT_IMAGE, f"cannot open as an image: {e}") from None
    width, height = img.size
    _check_pixels(width, height, spec)
    fmt = (img.format or "unknown").lower()
    mode = img.mode
    try:
        if fmt == "jpeg":
            img.draft("RGB", (spec.size, spec.size))  # DCT downscale for CMYK JPEGs too
        img.load()
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)  # animated GIF/WebP/TIFF: first frame
        orientation = img.getexif().get(_ORIENTATION_TAG, 1) if spec.exif == "apply" else 1
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
            img = img.convert("RGBA")
            background = Image.new("RGBA", img.size, (0, 0, 0, 255))
            img = Image.alpha_composite(background, img)
        if img.mode == "I;16" or img.mode.startswith("I;16"):
            arr16 = np.asarray(img, dtype=np.uint16)
            img = Image.fromarray((arr16 >> 8).astype(np.uint8), "L")
        elif img.mode in ("I", "F"):
            arr32 = np.asarray(img, dtype=np.float64)
            hi = max(float(arr32.max()), 1.0)
            img = Image.fromarray(np.clip(arr32 * (255.0 / hi), 0, 255).astype(np.uint8), "L")
        rgb = img.convert("RGB")
        arr = orient(np.asarray(rgb, dtype=np.uint8), orientation)
    except ImageRejected:
        raise
    except Exception as e:  # noqa: BLE001 - truncated or corrupt data surfaces here
        raise ImageRejected(R_CORRUPT, f"corrupt {fmt.upper()} image: {e}") from None
    if fmt == "jpeg" and mode == "RGB":
        note = None
    else:
        note = f"{fmt}:{mode.lower()}->rgb" if mode != "RGB" else f"{fmt}->rgb"
    return arr, note


def resize_image(arr: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """Resizes ``uint8[H, W, 3]`` to ``uint8[size, size, 3]`` by ``spec.resize_mode``."""
    from PIL import Image

    s = spec.size
    h, w = arr.shape[:2]
    if (h, w) == (s, s):
        return arr
    img = Image.fromarray(arr)
    if spec.resize_mode == "squash":
        out = img.resize((s, s), Image.BILINEAR, reducing_gap=None)
    elif spec.resize_mode == "center-crop":
        # Short side to s, then the central square: one resample of the central box.
        side = min(h, w)
        left, top = (w - side) / 2.0, (h - side) / 2.0
        out = img.resize((s, s), Image.BILINEAR, box=(left, top, left + side, top + side))
    else:  # pad: long side to s, centred on black
        scale = s / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        small = img.resize((nw, nh), Image.BILINEAR)
        out = Image.new("RGB", (s, s))
        out.paste(small, ((s - nw) // 2, (s - nh) // 2))
    return np.asarray(out, dtype=np.uint8)


def encode_pixels(arr: np.ndarray, spec: ImageSpec) -> bytes:
    if spec.encoding == keys.FORMAT_RAW:
        return np.ascontiguousarray(arr, dtype=np.uint8).tobytes()
    import simplejpeg

    return simplejpeg.encode_jpeg(
        np.ascontiguousarray(arr), quality=spec.quality, colorspace="RGB", colorsubsampling="420"
    )


def process_image(data: bytes, spec: ImageSpec) -> Tuple[bytes, Optional[str]]:
    """decode → resize → encode one image. Returns the encoded pixels and a conversion note."""
    arr, note = decode_image(data, spec)
    return encode_pixels(resize_image(arr, spec), spec), note


def pixels_to_rgb(arr, spec: ImageSpec) -> Tuple[np.ndarray, Optional[str]]:
    """An already decoded image (``uint8`` ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or
    ``[H, W, 4]``, as Ray's ``read_images`` gives) as ``uint8[H, W, 3]``, with a note when it
    had to be converted; anything else is rejected."""
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        raise ImageRejected(R_NOT_IMAGE, f"pixel array of dtype {arr.dtype}; expected uint8")
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        channels = arr.shape[2]
    elif arr.ndim == 2:
        channels = 1
    else:
        raise ImageRejected(R_NOT_IMAGE, f"pixel array of shape {tuple(arr.shape)}; expected "
                                         "[H, W], [H, W, 1], [H, W, 3] or [H, W, 4]")
    _check_pixels(arr.shape[1], arr.shape[0], spec)
    if channels == 3:
        return arr, None
    if channels == 4:  # composited on black, as RGBA files are
        from PIL import Image

        img = Image.alpha_composite(Image.new("RGBA", (arr.shape[1], arr.shape[0]),
                                              (0, 0, 0, 255)),
                                    Image.fromarray(np.ascontiguousarray(arr), "RGBA"))
        return np.asarray(img.convert("RGB"), dtype=np.uint8), "array:rgba->rgb"
    gray = arr.reshape(arr.shape[0], arr.shape[1], 1)
    return np.repeat(gray, 3, axis=2), "array:gray->rgb"


def process_pixels(arr, spec: ImageSpec) -> Tuple[bytes, Optional[str]]:
    """resize → encode one decoded image. Returns the encoded pixels and a conversion note."""
    rgb, note = pixels_to_rgb(arr, spec)
    return encode_pixels(resize_image(np.ascontiguousarray(rgb), spec), spec), note
