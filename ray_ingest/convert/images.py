"""Decode → resize → encode of single images, on a fast codec, with explicit rejects.

JPEG goes through libjpeg-turbo (simplejpeg), decoding straight to a reduced size in the DCT
domain when the output is much smaller than the input; everything else (PNG, GIF, BMP, TIFF,
WebP, CMYK JPEG, ...) goes through Pillow. The pixel count is checked from the header,
before any pixels are decoded (decompression bombs). Every image comes out as 8-bit RGB;
what had to be converted to get there is reported as a note, and what cannot be converted
raises :class:`ImageRejected` with a short reason code and a message.

``resize_mode="keep"`` stores whole images, aspect kept, downscaled (never upscaled) only as
far as ``max_side`` / ``short_side`` require. A JPEG that already fits, is baseline or
progressive 8-bit YCbCr or greyscale and needs no rotation is stored byte for byte, after a
complete decode at the smallest DCT scale (1/8) has checked it: libjpeg entropy-decodes every
coefficient at any scale, so a truncated or corrupt file is rejected exactly as at full size.

Photos are stored upright: the Exif orientation (camera held sideways, front camera
mirrored) is applied after decoding, on both paths, as every viewer and
``PIL.ImageOps.exif_transpose`` show them (``ImageSpec.exif="ignore"`` keeps the stored
pixel order). For JPEGs the tag is read straight from the APP1 segment, without a parser.
"""

from __future__ import annotations

import io
from typing import NamedTuple, Optional, Tuple

import numpy as np

from ray_ingest.convert.jpeg_markers import (  # noqa: F401 - also this module's API
    ORIENTATION_TAG,
    is_jpeg,
    jpeg_frame,
    jpeg_orientation,
    orient,
    swaps_axes,
)
from ray_ingest.convert.options import ImageSpec
from ray_ingest.format import keys

#: Frame types stored as they are: baseline and progressive Huffman (SOF0, SOF2). Extended
#: (SOF1), lossless, hierarchical and arithmetic-coded JPEGs are decoded and re-encoded.
_STORABLE_SOF = (0xC0, 0xC2)

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
    if spec.keep:  # the stored size on both sides
        kw, kh = spec.kept_size(width, height)
        return kh, kw
    s = spec.size
    if spec.resize_mode == "pad":  # the long side must stay >= size
        return (s, 0) if height >= width else (0, s)
    return s, s  # center-crop (short side >= size) and squash (both sides >= size)


def decode_image(data: bytes, spec: ImageSpec) -> Tuple[np.ndarray, Optional[str]]:
    """Decodes to ``uint8[H, W, 3]`` RGB. Returns the pixels and a conversion note (or None).

    JPEGs may come back downscaled by a power of two, never below what ``spec`` needs; in keep
    mode every image comes back at its stored size.
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
        swap = swaps_axes(orientation)
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
            arr = _to_kept_size(orient(arr, orientation), shown_w, shown_h, spec)
            return arr, ("grayscale->rgb" if colorspace == "Gray" else None)
        # CMYK/YCCK JPEGs: libjpeg-turbo cannot give RGB, Pillow can.
    return _decode_with_pillow(data, spec)


def _to_kept_size(arr: np.ndarray, width: int, height: int, spec: ImageSpec) -> np.ndarray:
    """Keep mode: ``arr`` (the image of ``width`` x ``height`` as shown, perhaps decoded at a
    reduced DCT scale) at its stored size, computed from the full size so that the scale's
    rounding never shifts it; other modes: ``arr`` as it is."""
    if not spec.keep:
        return arr
    kw, kh = spec.kept_size(width, height)
    if arr.shape[:2] == (kh, kw):
        return arr
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(arr)).resize((kw, kh), Image.BILINEAR),
                      dtype=np.uint8)


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
        if fmt == "jpeg":  # DCT downscale for CMYK JPEGs too
            min_h, min_w = _min_decode_size(width, height, spec) if spec.keep else (
                spec.size, spec.size)
            img.draft("RGB", (min_w, min_h))
        img.load()
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)  # animated GIF/WebP/TIFF: first frame
        orientation = img.getexif().get(ORIENTATION_TAG, 1) if spec.exif == "apply" else 1
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
        shown = (height, width) if swaps_axes(orientation) else (width, height)
        arr = _to_kept_size(arr, *shown, spec)
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
    """Resizes ``uint8[H, W, 3]`` to ``uint8[size, size, 3]`` by ``spec.resize_mode`` (keep
    mode: to :meth:`ImageSpec.kept_size`, the aspect kept)."""
    from PIL import Image

    s = spec.size
    h, w = arr.shape[:2]
    if spec.keep:
        return _to_kept_size(arr, w, h, spec)
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


class Converted(NamedTuple):
    """One converted image: what its record stores."""

    encoded: bytes
    height: int
    width: int
    #: Components of the stored image: 1 for a greyscale JPEG stored as it is, else 3.
    channels: int
    #: The input's own bytes, stored as they are (keep mode).
    as_is: bool
    note: Optional[str]


def _encoded(arr: np.ndarray, spec: ImageSpec, note: Optional[str]) -> Converted:
    return Converted(encode_pixels(arr, spec), arr.shape[0], arr.shape[1], 3, False, note)


def _stored_as_is(data, spec: ImageSpec) -> Optional[Converted]:
    """Keep mode: the JPEG ``data`` itself, when it may be stored as it is (it fits the limits,
    is baseline or progressive 8-bit YCbCr or greyscale, needs no rotation) and decodes
    completely; None when it must be re-encoded. Rejects what :func:`decode_image` rejects."""
    import simplejpeg

    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as e:
        raise ImageRejected(R_CORRUPT, f"unreadable JPEG header: {e}") from None
    _check_pixels(width, height, spec)
    sof, precision, _ = jpeg_frame(data)
    if (colorspace not in ("YCbCr", "Gray") or sof not in _STORABLE_SOF or precision != 8
            or spec.kept_size(width, height) != (width, height)
            or (spec.exif == "apply" and jpeg_orientation(data) != 1)):
        return None
    try:  # every coefficient is entropy-decoded at 1/8 scale too; only the luma's IDCT runs
        simplejpeg.decode_jpeg(data, colorspace="GRAY", fastdct=True, fastupsample=True,
                               min_height=1, min_width=1, strict=True)
    except ValueError as e:
        raise ImageRejected(R_CORRUPT, f"corrupt JPEG: {e}") from None
    return Converted(bytes(data), height, width, 1 if colorspace == "Gray" else 3, True, None)


def convert_image(data, spec: ImageSpec) -> Converted:
    """One encoded image → what its record stores: decoded, resized and encoded by ``spec``,
    or (keep mode) a fitting JPEG's own bytes."""
    if spec.keep and len(data) > 0 and is_jpeg(data):
        kept = _stored_as_is(data, spec)
        if kept is not None:
            return kept
    arr, note = decode_image(data, spec)
    return _encoded(resize_image(arr, spec), spec, note)


def process_image(data: bytes, spec: ImageSpec) -> Tuple[bytes, Optional[str]]:
    """decode → resize → encode one image. Returns the encoded pixels and a conversion note."""
    c = convert_image(data, spec)
    return c.encoded, c.note


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


def convert_pixels(arr, spec: ImageSpec) -> Converted:
    """One decoded image → what its record stores (resized and encoded by ``spec``)."""
    rgb, note = pixels_to_rgb(arr, spec)
    return _encoded(resize_image(np.ascontiguousarray(rgb), spec), spec, note)


def process_pixels(arr, spec: ImageSpec) -> Tuple[bytes, Optional[str]]:
    """resize → encode one decoded image. Returns the encoded pixels and a conversion note."""
    c = convert_pixels(arr, spec)
    return c.encoded, c.note
