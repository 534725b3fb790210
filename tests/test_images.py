"""decode → resize → encode of single images, and every kind of bad input."""

from __future__ import annotations

import io
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
    with pytest.raises(ValueError, match="exif"):
        ImageSpec(exif="rotate")


# ---- Exif orientation ------------------------------------------------------------------------

# What each path decodes: simplejpeg for a plain JPEG; Pillow for PNG and CMYK JPEG.
_EXIF_KINDS = {
    "jpeg": lambda img, exif: pil_bytes(img, "JPEG", quality=95, exif=exif),
    "png": lambda img, exif: pil_bytes(img, "PNG", exif=exif),
    "cmyk-jpeg": lambda img, exif: pil_bytes(img.convert("CMYK"), "JPEG", quality=95, exif=exif),
}


def _with_orientation(kind: str, orientation: int, h: int = 48, w: int = 80) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "ray-ingest test camera"  # another tag before it, as cameras write
    return _EXIF_KINDS[kind](Image.fromarray(_smooth(h, w)), exif.tobytes())


@pytest.mark.parametrize("kind", sorted(_EXIF_KINDS))
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow(kind, orientation):
    from PIL import ImageOps

    data = _with_orientation(kind, orientation)
    arr, _ = decode_image(data, ImageSpec(size=48))  # 48: no DCT downscale
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert arr.shape == upright.shape == ((80, 48, 3) if orientation >= 5 else (48, 80, 3))
    diff = np.abs(arr.astype(int) - upright.astype(int))
    assert diff.mean() < 1.0 and diff.max() <= 8, (diff.mean(), diff.max())  # codec rounding
    as_stored, _ = decode_image(data, ImageSpec(size=48, exif="ignore"))
    assert as_stored.shape == (48, 80, 3)


@pytest.mark.parametrize("orientation", [6, 8])
@pytest.mark.parametrize("mode", ["center-crop", "pad"])
def test_exif_rotation_with_dct_scaled_decode(orientation, mode):
    """A 64x256 photo stored sideways: decoded at a reduced scale, it must come out upright
    (256 tall) and never below what the resize needs."""
    from PIL import ImageOps

    data = _with_orientation("jpeg", orientation, h=64, w=256)
    spec = ImageSpec(size=16, resize_mode=mode)
    arr, _ = decode_image(data, spec)
    h, w = arr.shape[:2]
    assert h == 4 * w and h < 256  # upright, and reduced in the DCT domain
    assert (min(h, w) if mode == "center-crop" else max(h, w)) >= 16
    out, _ = process_image(data, ImageSpec(size=16, resize_mode=mode, encoding="raw"))
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    expected = resize_image(np.asarray(upright), ImageSpec(size=16, resize_mode=mode))
    got = np.frombuffer(out, np.uint8).reshape(16, 16, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 4


def test_jpeg_orientation_parser_reads_both_byte_orders_and_survives_garbage():
    from ray_ingest.convert.images import jpeg_orientation

    plain = jpeg_bytes(_smooth(16, 16))
    assert jpeg_orientation(plain) == 1
    assert jpeg_orientation(_with_orientation("jpeg", 7)) == 7  # Pillow writes little endian
    # The same Exif segment in big-endian ("MM") order.
    tiff = (b"MM\x00\x2a\x00\x00\x00\x08" + b"\x00\x01" + b"\x01\x12\x00\x03\x00\x00\x00\x01"
            + b"\x00\x03\x00\x00" + b"\x00\x00\x00\x00")
    app1 = b"\xff\xe1" + (len(tiff) + 8).to_bytes(2, "big") + b"Exif\x00\x00" + tiff
    assert jpeg_orientation(plain[:2] + app1 + plain[2:]) == 3
    for junk in (tiff[:9], b"XX" + tiff[2:], tiff[:8] + b"\xff\xff"):
        app1 = b"\xff\xe1" + (len(junk) + 8).to_bytes(2, "big") + b"Exif\x00\x00" + junk
        assert jpeg_orientation(plain[:2] + app1 + plain[2:]) == 1
    assert jpeg_orientation(b"\xff\xd8\xff\xe1\x00") == 1
