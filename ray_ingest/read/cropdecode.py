"""The fused decode of a crop: per record, only the box's region of the JPEG, at the smallest
DCT scale that leaves at least ``DCT_MARGIN x S`` pixels across it, resized (bilinear,
antialiased like PIL's ``BILINEAR``) and mirrored straight into the batch's
``uint8[N, S, S, 3]``.

One call per batch into the C extension ``_jpegcrop`` (the system's libjpeg-turbo:
``jpeg_crop_scanline`` + ``jpeg_skip_scanlines``; the GIL released, several threads). Where
the extension was not built (no compiler or no libjpeg headers at install time), a fallback
decodes each record with simplejpeg at the reduced DCT scale, then crops and resizes with PIL:
the same boxes, nearly the same pixels, slower; it warns once.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import numpy as np

try:  # built by ``pip install -e .`` (setup.py) when a compiler and libjpeg headers exist
    from ray_ingest.read import _jpegcrop
except ImportError:  # pragma: no cover - depends on the install
    _jpegcrop = None

FALLBACK_HINT = ("the fused JPEG crop decoder (ray_ingest.read._jpegcrop) is not built; crops "
                 "decode through simplejpeg + PIL instead, slower. Install a C compiler and the "
                 "libjpeg-turbo headers (apt install gcc libjpeg62-turbo-dev, or dnf install "
                 "gcc libjpeg-turbo-devel) and reinstall ray-ingest (pip install -e .)")
_warned = False
#: The DCT scale leaves at least this many times ``S`` pixels across the box, and the resize
#: does the rest. libjpeg's scaled IDCT is a sharper low-pass than PIL's triangle filter: on
#: textured photos (grass, leaves), the very smallest scale with >= S pixels gave per-image
#: mean differences up to 6.5 grey levels from a full decode + PIL resize (S = 224); twice S
#: keeps the mean over images near 1 (figures in benchmarks/RESULTS.md).
DCT_MARGIN = 2.0


class CropDecodeError(ValueError):
    """Record ``index`` of the batch cannot be decoded: ``args == (index, message)``."""


def fused_available() -> bool:
    return _jpegcrop is not None


def decode_crops(data, starts: np.ndarray, ends: np.ndarray, boxes: np.ndarray,
                 flips: np.ndarray, out: np.ndarray, *, threads: int = 1, fast: bool = True,
                 fused: Optional[bool] = None) -> np.ndarray:
    """Decodes record ``i`` (``data[starts[i]:ends[i]]``), box ``boxes[i]`` = ``(y, x, h, w)``,
    mirrored where ``flips[i]``, into ``out[i]`` (``uint8[N, S, S, 3]``). Raises
    :class:`CropDecodeError` naming the first record that fails. ``fused``: force (True) or
    refuse (False) the C extension; None uses it when built."""
    starts = np.ascontiguousarray(starts, np.int64)
    ends = np.ascontiguousarray(ends, np.int64)
    boxes = np.ascontiguousarray(boxes, np.int32)
    flips = np.ascontiguousarray(flips, np.uint8)
    if out.dtype != np.uint8 or out.ndim != 4 or out.shape[1] != out.shape[2] \
            or out.shape[3] != 3 or not out.flags.c_contiguous or len(out) != len(starts):
        raise ValueError(f"out must be C-contiguous uint8[{len(starts)}, S, S, 3], got "
                         f"{out.dtype}{list(out.shape)}")
    use_c = _jpegcrop is not None if fused is None else fused
    if use_c:
        if _jpegcrop is None:
            raise RuntimeError(FALLBACK_HINT)
        try:
            _jpegcrop.decode_crop_resize(data, starts, ends, boxes, flips, out, threads, fast,
                                         DCT_MARGIN)
        except _jpegcrop.DecodeError as e:
            raise CropDecodeError(*e.args) from None
        return out
    _warn_fallback(fused)
    _decode_crops_python(data, starts, ends, boxes, flips, out, fast)
    return out


def _warn_fallback(fused: Optional[bool]) -> None:
    global _warned
    if fused is None and not _warned:
        _warned = True
        warnings.warn(FALLBACK_HINT, RuntimeWarning, stacklevel=3)


def _decode_crops_python(data, starts, ends, boxes, flips, out, fast: bool) -> None:
    import simplejpeg
    from PIL import Image

    size = out.shape[1]
    view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data
    for i in range(len(starts)):
        buf = view[int(starts[i]) : int(ends[i])]
        y, x, h, w = (int(v) for v in boxes[i])
        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(buf)
            if h < 1 or w < 1 or y < 0 or x < 0 or y + h > height or x + w > width:
                raise ValueError(f"crop box (y={y}, x={x}, h={h}, w={w}) is outside the "
                                 f"{width}x{height} image")
            # DCT scaling: the smallest output that keeps >= DCT_MARGIN x size pixels across
            # the box.
            side = DCT_MARGIN * size
            img = simplejpeg.decode_jpeg(buf, colorspace="RGB", fastdct=fast,
                                         min_height=math.ceil(side * height / h),
                                         min_width=math.ceil(side * width / w))
        except ValueError as e:
            raise CropDecodeError(i, str(e)) from None
        fy, fx = img.shape[0] / height, img.shape[1] / width
        pil = Image.fromarray(img).resize(
            (size, size), Image.BILINEAR, box=(x * fx, y * fy, (x + w) * fx, (y + h) * fy))
        pixels = np.asarray(pil)
        out[i] = pixels[:, ::-1] if flips[i] else pixels
