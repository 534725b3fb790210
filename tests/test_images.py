"""decode → resize → encode of single images, and every kind of bad input."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from PIL import Image

from helpers import huge_jpeg_header, jpeg_bytes, pil_bytes, random_rgb
from ray_ingest.convert.images import (
    ImageRejected,
    ImageSpec,
    R_CORRUPT,
    R_EMPTY,
    R_NOT_IMAGE,
    R_TOO_LARGE,
    decode_image,
    process_image,
    resize_image,
)

SPEC = ImageSpec(size=32)


def _smooth(h, w):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], -1).astype(np.uint8)


def test_jpeg_decodes_to_rgb_with_dct_downscale_never_below_target():
    data = jpeg_bytes(_smooth(300, 400))
    arr, note = decode_image(data, SPEC)
    assert arr.dtype == np.uint8 and arr.shape[2] == 3 and note is None
    assert min(arr.shape[:2]) >= 32 and arr.shape[0] < 300  # downscaled in the DCT domain
    arr, _ = decode_image(data, ImageSpec(size=300))
    assert arr.shape == (300, 400, 3)


def _photo_like(h, w, seed=0):
    """Smooth structure at several scales plus fine texture, as a camera photo has."""
    rng = np.random.default_rng(seed)
    from PIL import Image

    img = np.zeros((h, w, 3), np.float32)
    for cells, amp in ((4, 80.0), (32, 40.0), (256, 40.0)):
        coarse = rng.uniform(-amp, amp, (cells, cells * w // h + 1, 3)).astype(np.float32)
        img += np.stack([np.asarray(Image.fromarray(coarse[..., c]).resize((w, h), Image.BICUBIC))
                         for c in range(3)], -1)
    img += 128 + rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("mode", ["center-crop", "squash", "pad"])
def test_dct_scaled_decode_matches_a_full_decode_and_resize(mode):
    """A large photo is decoded at the smallest DCT scale that still covers the target (1/4
    here: 1200x1600 -> 300x400 for 224), then resized: within JPEG noise of decoding every
    pixel first, in every resize mode."""
    import simplejpeg

    data = jpeg_bytes(_photo_like(1200, 1600), quality=92)
    spec = ImageSpec(size=224, resize_mode=mode, encoding="raw")
    scaled, _ = decode_image(data, spec)
    assert scaled.shape[0] < 1200 and min(scaled.shape[:2]) >= 224  # scaled, never below
    ours = np.frombuffer(process_image(data, spec)[0], np.uint8).reshape(224, 224, 3)
    full = resize_image(simplejpeg.decode_jpeg(data, colorspace="RGB"), spec)
    diff = np.abs(ours.astype(int) - full.astype(int))
    # (decoding one DCT scale further, 1/8, then upscaling, is off by 2.6-5.6 on average)
    assert diff.mean() < 2.0 and np.percentile(diff, 99) <= 8, (diff.mean(), diff.max())


@pytest.mark.parametrize("mode", ["center-crop", "squash", "pad"])
def test_resize_modes_give_square_output(mode):
    spec = ImageSpec(size=40, resize_mode=mode)
    out = resize_image(_smooth(60, 120), spec)
    assert out.shape == (40, 40, 3) and out.dtype == np.uint8
    if mode == "pad":  # 60x120 -> 20x40 centred: top and bottom rows are black
        assert out[:9].max() == 0 and out[-9:].max() == 0 and out[20].max() > 0
    if mode == "center-crop":  # the central square: the red ramp x*255/120 for x in 30..90
        assert 60 <= int(out[:, 0, 0].mean()) <= 68 and 184 <= int(out[:, -1, 0].mean()) <= 192


def test_center_crop_matches_crop_then_resize():
    img = _smooth(64, 128)
    out = resize_image(img, ImageSpec(size=64))
    assert np.abs(out.astype(int) - img[:, 32:96].astype(int)).max() <= 1


@pytest.mark.parametrize("encoding", ["jpeg", "raw"])
def test_process_image_encodings(encoding):
    enc, note = process_image(jpeg_bytes(_smooth(50, 70)), ImageSpec(size=24, encoding=encoding))
    if encoding == "raw":
        assert len(enc) == 24 * 24 * 3
    else:
        import simplejpeg

        assert simplejpeg.decode_jpeg(enc).shape == (24, 24, 3)


def _reject(data, spec=SPEC):
    with pytest.raises(ImageRejected) as e:
        process_image(data, spec)
    return e.value


def test_bad_inputs_are_rejected_with_reasons():
    assert _reject(b"").reason == R_EMPTY
    assert _reject(b"hello, I am a text file named .jpg\n").reason == R_NOT_IMAGE
    full = jpeg_bytes(random_rgb(64, 64))
    assert _reject(full[: len(full) // 2]).reason == R_CORRUPT  # truncated JPEG
    assert _reject(b"\xff\xd8\xff\xe0garbage").reason == R_CORRUPT
    png = pil_bytes(Image.fromarray(random_rgb(40, 40)), "PNG")
    assert _reject(png[: len(png) // 2]).reason == R_CORRUPT  # truncated PNG


def test_decompression_bombs_rejected_before_decoding(monkeypatch):
    import simplejpeg

    def boom(*a, **k):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(simplejpeg, "decode_jpeg", boom)
    e = _reject(huge_jpeg_header(30000, 30000))
    assert e.reason == R_TOO_LARGE and "900,000,000" in e.message
    # PNG: the header says 20000x20000; Pillow must not load it.
    big = Image.new("L", (1, 1))
    data = bytearray(pil_bytes(big, "PNG"))
    data[16:24] = (20000).to_bytes(4, "big") + (20000).to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # IHDR's CRC
    e = _reject(bytes(data))
    assert e.reason == R_TOO_LARGE, e.message
    # A custom limit applies too.
    monkeypatch.undo()
    assert _reject(jpeg_bytes(random_rgb(64, 64)), ImageSpec(size=32, max_pixels=1000)).reason == R_TOO_LARGE


@pytest.mark.parametrize(
    "make, note",
    [
        (lambda: Image.fromarray(random_rgb(40, 50)).convert("L").save, "jpeg-gray"),
        (None, "cmyk"),
        (None, "rgba-png"),
        (None, "palette-png"),
        (None, "gray16-png"),
        (None, "gif"),
        (None, "bmp"),
        (None, "webp"),
    ],
)
def test_non_rgb_inputs_are_converted_and_noted(make, note):
    rgb = Image.fromarray(random_rgb(40, 50))
    if note == "jpeg-gray":
        data = pil_bytes(rgb.convert("L"), "JPEG", quality=90)
        expected = "grayscale->rgb"
    elif note == "cmyk":
        data = pil_bytes(rgb.convert("CMYK"), "JPEG", quality=90)
        expected = "jpeg:cmyk->rgb"
    elif note == "rgba-png":
        data = pil_bytes(rgb.convert("RGBA"), "PNG")
        expected = "png:rgba->rgb"
    elif note == "palette-png":
        data = pil_bytes(rgb.convert("P"), "PNG")
        expected = "png:p->rgb"
    elif note == "gray16-png":
        data = pil_bytes(Image.fromarray((np.arange(2000, dtype=np.uint16).reshape(40, 50) * 30)), "PNG")
        expected = "png:i;16->rgb"
    elif note == "gif":
        data = pil_bytes(rgb.convert("P"), "GIF")
        expected = "gif:p->rgb"
    elif note == "bmp":
        data = pil_bytes(rgb, "BMP")
        expected = "bmp->rgb"
    else:
        data = pil_bytes(rgb, "WEBP")
        expected = "webp->rgb"
    arr, got = decode_image(data, SPEC)
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    assert got == expected
    enc, _ = process_image(data, SPEC)
    assert len(enc) > 0


def test_cmyk_colors_come_out_right():
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 220  # red
    data = pil_bytes(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95)
    arr, _ = decode_image(data, ImageSpec(size=32))
    r, g, b = arr.reshape(-1, 3).mean(0)
    assert r > 180 and g < 50 and b < 50


def test_spec_validation_names_the_value():
    with pytest.raises(ValueError, match="resize_mode"):
        ImageSpec(resize_mode="stretch")
    with pytest.raises(ValueError, match="encoding"):
        ImageSpec(encoding="png")
    with pytest.raises(ValueError, match="quality"):
        ImageSpec(quality=0)
    with pytest.raises(ValueError, match="size"):
        ImageSpec(size=2)
