"""The marker segments of a JPEG, read without a decoder: its frame type (SOF), and the Exif
orientation from its APP1 segment, applied to decoded pixels as viewers show them."""

from __future__ import annotations

from typing import Tuple

import numpy as np

ORIENTATION_TAG = 0x0112
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def is_jpeg(data) -> bool:
    return len(data) >= 3 and data[0] == 0xFF and data[1] == 0xD8 and data[2] == 0xFF


def _segments(data: bytes):
    """``(marker, payload)`` of each marker segment of a JPEG up to its first scan."""
    i, n = 2, len(data)
    while i + 4 <= n and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xDA, 0xD9):  # start of scan, end of image: no metadata after it
            return
        size = int.from_bytes(data[i + 2 : i + 4], "big")
        yield marker, data[i + 4 : i + 2 + size]
        i += 2 + size


def jpeg_orientation(data) -> int:
    """The Exif orientation (1..8) of a JPEG, read from its APP1 segment; 1 when the file
    has none or it is unreadable. Walks the marker segments up to the first scan."""
    data = bytes(data[:1 << 17]) if not isinstance(data, bytes) else data
    for marker, payload in _segments(data):
        if marker == 0xE1 and payload[:6] == b"Exif\0\0":
            return _tiff_orientation(payload[6:])
    return 1


def jpeg_frame(data) -> Tuple[int, int, int]:
    """``(SOF marker, sample precision, components)`` of a JPEG's frame header; ``(0, 0, 0)``
    when no frame header precedes the first scan."""
    data = bytes(data[:1 << 17]) if not isinstance(data, bytes) else data
    for marker, payload in _segments(data):
        if marker in _SOF_MARKERS and len(payload) >= 6:
            return marker, payload[0], payload[5]
    return 0, 0, 0


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
        if int.from_bytes(entry[0:2], order) == ORIENTATION_TAG:
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


def swaps_axes(orientation: int) -> bool:
    """Orientations 5-8 store the image with width and height exchanged."""
    return orientation >= 5
