"""Whole-image storage (``resize_mode="keep"``): the stored size (aspect kept, never upscaled,
``max_side`` / ``short_side``), fitting JPEGs stored byte for byte after a complete check, the
others re-encoded, the version-2 manifest with its size distribution, and what reads it:
``inspect`` (summary, ``--verify``, ``--json``, ``--grid``), ``convert --dry-run``,
``convert_dataset`` and TensorFlow's own reader."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from helpers import jpeg_bytes, pil_bytes, stored, tf_feature_spec
from ray_ingest.cli import main
from ray_ingest.convert.images import (
    R_CORRUPT,
    ImageRejected,
    ImageSpec,
    convert_image,
    decode_image,
)
from ray_ingest.errors import ConfigError, ManifestError, RecordMismatchError
from ray_ingest.format import manifest as mf

KEEP64 = ImageSpec(resize_mode="keep", max_side=64)


def _photo(h, w, seed=0):
    """A smooth image with some texture (JPEG-friendly, not flat)."""
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    base = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], -1)
    return np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def _with_orientation(data: bytes, orientation: int) -> bytes:
    img = Image.open(__import__("io").BytesIO(data))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return pil_bytes(img, "JPEG", quality=90, exif=exif.tobytes())


def _sof1(data: bytes) -> bytes:
    """The same baseline JPEG marked as extended sequential (SOF1): still valid."""
    i = data.index(b"\xff\xc0")
    return data[:i] + b"\xff\xc1" + data[i + 2:]


def _jpeg_size(data) -> tuple:
    import simplejpeg

    h, w, _, _ = simplejpeg.decode_jpeg_header(data)
    return h, w


# ---- the stored size ------------------------------------------------------------------------


@pytest.mark.parametrize("wh, max_side, short_side, want", [
    ((500, 375), 512, None, (500, 375)),  # fits: as it is
    ((4000, 3000), 512, None, (512, 384)),
    ((3000, 4000), 512, None, (384, 512)),
    ((4000, 3000), None, 256, (341, 256)),
    ((4000, 3000), 512, 256, (341, 256)),  # the short side needs the larger factor
    ((4000, 1000), 512, 256, (512, 128)),  # the long side needs it
    ((100, 80), None, None, (100, 80)),  # no limit: every size as it is
    ((100, 80), 4096, 4096, (100, 80)),  # never upscaled
    ((1001, 3), 64, None, (64, 1)),  # never below one pixel
])
def test_kept_size_keeps_the_aspect_and_never_upscales(wh, max_side, short_side, want):
    spec = ImageSpec(resize_mode="keep", max_side=max_side, short_side=short_side)
    got = spec.kept_size(*wh)
    assert got == want
    assert got[0] <= wh[0] and got[1] <= wh[1]
    if max_side:
        assert max(got) <= max_side
    if short_side:
        assert min(got) <= short_side


@pytest.mark.parametrize("kwargs, rule", [
    (dict(resize_mode="keep", max_side=0), "max_side must be an integer from 8"),
    (dict(resize_mode="keep", max_side=-512), "max_side must be an integer from 8"),
    (dict(resize_mode="keep", short_side=7), "short_side must be an integer from 8"),
    (dict(resize_mode="keep", max_side=512.0), "max_side must be an integer"),
    (dict(resize_mode="keep", max_side=True), "max_side must be an integer"),
    (dict(resize_mode="center-crop", max_side=512), "applies to resize_mode 'keep'"),
    (dict(resize_mode="keep", encoding="raw"), "stores whole images as JPEG"),
])
def test_bad_limits_are_refused_naming_the_rule(kwargs, rule):
    with pytest.raises(ConfigError, match=rule):
        ImageSpec(**kwargs)


# ---- byte for byte, or re-encoded -------------------------------------------------------------


def test_fitting_baseline_progressive_and_grey_jpegs_are_stored_byte_for_byte():
    baseline = jpeg_bytes(_photo(40, 60))
    progressive = pil_bytes(Image.fromarray(_photo(48, 30, 1)), "JPEG", quality=85,
                            progressive=True)
    grey = pil_bytes(Image.fromarray(_photo(50, 50, 2)[..., 0]), "JPEG", quality=90)
    # An APP segment of its own stays too: nothing is stripped.
    commented = pil_bytes(Image.fromarray(_photo(32, 64, 3)), "JPEG", comment=b"kept")
    for data, channels in ((baseline, 3), (progressive, 3), (grey, 1), (commented, 3)):
        c = convert_image(data, KEEP64)
        assert c.as_is and c.encoded == data
        assert (c.height, c.width, c.channels) == _jpeg_size(data) + (channels,)
    # With no limit at all, every JPEG that passes is stored as it is.
    big = jpeg_bytes(_photo(300, 200, 4))
    assert convert_image(big, ImageSpec(resize_mode="keep")).encoded == big


def test_what_does_not_fit_or_needs_rotation_or_is_cmyk_is_reencoded():
    large = jpeg_bytes(_photo(120, 200))
    c = convert_image(large, KEEP64)
    assert not c.as_is and (c.height, c.width) == (38, 64) == _jpeg_size(c.encoded)
    # Exif orientation 6 (held sideways): stored upright, width and height exchanged.
    rotated = _with_orientation(jpeg_bytes(_photo(40, 60)), 6)
    c = convert_image(rotated, KEEP64)
    assert not c.as_is and (c.height, c.width) == (60, 40) == _jpeg_size(c.encoded)
    ignored = convert_image(rotated, ImageSpec(resize_mode="keep", max_side=64, exif="ignore"))
    assert ignored.as_is and ignored.encoded == rotated
    cmyk = pil_bytes(Image.fromarray(_photo(40, 60)).convert("CMYK"), "JPEG")
    c = convert_image(cmyk, KEEP64)
    assert not c.as_is and c.channels == 3 and (c.height, c.width) == (40, 60)
    extended = _sof1(jpeg_bytes(_photo(40, 60)))
    c = convert_image(extended, KEEP64)
    assert not c.as_is and (c.height, c.width) == (40, 60)
    png = pil_bytes(Image.fromarray(_photo(30, 90)), "PNG")
    c = convert_image(png, KEEP64)
    assert not c.as_is and (c.height, c.width) == (21, 64) and c.note == "png->rgb"
    # The re-encoded pixels are the whole image, downscaled (not a crop).
    ref = np.asarray(Image.fromarray(_photo(120, 200)).resize((64, 38), Image.BILINEAR),
                     np.int16)
    got, _ = decode_image(convert_image(large, KEEP64).encoded, ImageSpec())
    assert np.abs(got.astype(np.int16) - ref).mean() < 6


def _damaged(data: bytes):
    """Truncations and single flipped bytes across the entropy-coded data."""
    sos = data.index(b"\xff\xda")
    yield "truncated", data[: sos + (len(data) - sos) // 2]
    yield "no end marker", data[:-2]
    for k, pos in enumerate(range(sos + 20, len(data) - 2, max(1, (len(data) - sos) // 40))):
        out = bytearray(data)
        out[pos] ^= 0xFF if k % 2 else 0x55
        yield f"byte {pos} flipped", bytes(out)


def _full_decode_verdict(data: bytes) -> bool:
    import simplejpeg

    try:
        simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
        return True
    except ValueError:
        return False


def test_damaged_jpegs_are_rejected_as_strictly_as_a_full_decode():
    """The check before storing bytes as they are (a DCT-scaled decode) rejects exactly what a
    full-size strict decode rejects, with the reason."""
    for source in (jpeg_bytes(_photo(48, 64)),
                   pil_bytes(Image.fromarray(_photo(48, 64, 5)), "JPEG", progressive=True)):
        rejected = 0
        for what, data in _damaged(source):
            try:
                c = convert_image(data, KEEP64)
                verdict = True
                assert c.as_is and c.encoded == data, what
            except ImageRejected as e:
                verdict = False
                assert e.reason == R_CORRUPT and e.message, what
                rejected += 1
            assert verdict == _full_decode_verdict(data), what
        assert rejected >= 2  # the truncations at least


# ---- end to end --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def whole_src(tmp_path_factory):
    """A class-folder tree of every kind of input: fitting JPEGs of several aspects
    (baseline, progressive, grey), too-large ones, a rotated one, CMYK, PNG, a truncated one."""
    src = tmp_path_factory.mktemp("whole-src")
    files = {
        "a/wide.jpg": jpeg_bytes(_photo(40, 60, 1)),
        "a/tall.jpg": jpeg_bytes(_photo(60, 36, 2)),
        "a/prog.jpg": pil_bytes(Image.fromarray(_photo(50, 50, 3)), "JPEG", progressive=True),
        "a/grey.jpg": pil_bytes(Image.fromarray(_photo(30, 64, 4)[..., 1]), "JPEG"),
        "b/large.jpg": jpeg_bytes(_photo(150, 200, 5)),
        "b/larger.jpg": jpeg_bytes(_photo(210, 90, 6)),
        "b/rotated.jpg": _with_orientation(jpeg_bytes(_photo(40, 60, 7)), 6),
        "b/cmyk.jpg": pil_bytes(Image.fromarray(_photo(20, 30, 8)).convert("CMYK"), "JPEG"),
        "b/drawing.png": pil_bytes(Image.fromarray(_photo(100, 40, 9)), "PNG"),
    }
    files.update({f"c/{i}.jpg": jpeg_bytes(_photo(24 + 4 * i, 32, 10 + i)) for i in range(6)})
    cut = jpeg_bytes(_photo(40, 40, 30))
    files["c/cut.jpg"] = cut[: len(cut) // 2]
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    return src, files


AS_IS = {"a/wide.jpg", "a/tall.jpg", "a/prog.jpg", "a/grey.jpg"} | {
    f"c/{i}.jpg" for i in range(6)}


@pytest.fixture(scope="module")
def whole_out(ray_session, whole_src, tmp_path_factory):
    from ray_ingest.convert import convert

    src, _ = whole_src
    out = tmp_path_factory.mktemp("whole-out")
    convert(str(src), str(out), resize_mode="keep", max_side=64, val_fraction=0.25,
            shard_size_mb=0.01, max_reject_fraction=0.2, overwrite=True)
    return out


def _records(path):
    m = mf.read_manifest(str(path))
    return m, [r for split in m.splits for r in stored(path, split)[1]]


def test_keep_end_to_end_manifest_and_records(whole_src, whole_out):
    src, files = whole_src
    m, records = _records(whole_out)
    d = m.data
    assert (d["format_version"], d["resize_mode"], d["height"], d["width"]) == (
        2, "keep", None, None)
    assert (d["max_side"], d["short_side"], d["channels"]) == (64, None, 3)
    assert m.variable_size and m.height is None and m.width is None and m.max_side == 64
    assert d["num_rejected"] == 1 and d["reject_reasons"] == {"corrupt-image": 1}
    assert len(records) == len(files) - 1
    for r in records:
        original = files[r.filename]
        h0, w0 = decode_image(original, ImageSpec(exif="apply"))[0].shape[:2] if not \
            r.filename.endswith(".png") else np.asarray(Image.open(src / r.filename)).shape[:2]
        assert (r.height, r.width) == _jpeg_size(r.encoded), r.filename
        assert max(r.height, r.width) <= 64 and r.height <= h0 and r.width <= w0  # no upscale
        if max(h0, w0) > 64:  # downscaled: the aspect within rounding
            assert abs(r.width / r.height - w0 / h0) <= w0 / h0 * (1 / min(r.height, r.width))
        assert (r.encoded == original) == (r.filename in AS_IS), r.filename
        assert r.channels == (1 if r.filename == "a/grey.jpg" else 3)
    by_name = {r.filename: r for r in records}
    assert (by_name["b/rotated.jpg"].height, by_name["b/rotated.jpg"].width) == (60, 40)
    assert (by_name["b/large.jpg"].height, by_name["b/large.jpg"].width) == (48, 64)
    heights = sorted(r.height for r in records)
    widths = sorted(r.width for r in records)
    assert d["image_sizes"] == {
        "height": {"min": heights[0], "median": heights[(len(heights) - 1) // 2],
                   "max": heights[-1]},
        "width": {"min": widths[0], "median": widths[(len(widths) - 1) // 2],
                  "max": widths[-1]},
        "stored_as_is": len(AS_IS), "reencoded": len(records) - len(AS_IS)}


def test_inspect_summary_verify_json_and_grid(whole_out, tmp_path, capsys):
    png = tmp_path / "grid.png"
    assert main(["inspect", str(whole_out), "--verify", "--grid", str(png)]) == 0
    text = capsys.readouterr().out
    assert "version 2" in text
    assert "whole, aspect kept (max side 64; never upscaled), jpeg (quality 90)" in text
    assert f"stored     {len(AS_IS)} byte for byte" in text
    assert "verify: OK" in text and "grid:" in text
    sheet = np.asarray(Image.open(png))
    assert sheet.shape[0] > 96 and sheet.std() > 10
    assert main(["inspect", str(whole_out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["manifest"]["image_sizes"]["stored_as_is"] == len(AS_IS)
    assert data["manifest"]["resize_mode"] == "keep"


def test_verify_names_a_record_over_the_limit_and_sizes_that_disagree(whole_out, tmp_path):
    from ray_ingest.format.verify import verify_output

    def edited(name, change):
        d = tmp_path / name
        shutil.copytree(whole_out, d)
        data = json.loads((d / mf.MANIFEST_NAME).read_text())
        change(data)
        (d / mf.MANIFEST_NAME).write_text(json.dumps(data))
        return d

    with pytest.raises(RecordMismatchError, match=r"exceeds the manifest's max_side 32"):
        verify_output(str(edited("small", lambda d: d.update(max_side=32))), progress=False)
    with pytest.raises(ManifestError, match="image_sizes says height"):
        verify_output(str(edited("sizes", lambda d: d["image_sizes"]["height"].update(max=1))),
                      progress=False)
    with pytest.raises(ManifestError, match="but no image_sizes"):
        verify_output(str(edited("nosizes", lambda d: d.pop("image_sizes"))), progress=False)
    with pytest.raises(ManifestError, match="whole-image shards have no one height"):
        mf.read_manifest(str(edited("height", lambda d: d.update(height=64))))
    with pytest.raises(ManifestError, match="needs manifest format version 2"):
        mf.read_manifest(str(edited("v1", lambda d: d.update(format_version=1))))
    with pytest.raises(ManifestError, match="format version 3; this ray-ingest reads versions "
                                            r"1, 2 \(re-convert the data, or upgrade"):
        mf.read_manifest(str(edited("v3", lambda d: d.update(format_version=3))))


def test_fixed_size_conversions_still_write_version_1(converted):
    m = mf.read_manifest(str(converted["jpeg"]))
    assert m.data["format_version"] == 1 and not m.variable_size
    assert (m.height, m.width) == (32, 32)
    assert "max_side" not in m.data and "image_sizes" not in m.data


def test_tensorflow_reads_whole_image_shards(whole_out):
    tf = pytest.importorskip("tensorflow")
    m, ours = _records(whole_out)
    files = [str(whole_out / s.file) for split in m.splits for s in m.shards(split)]
    spec = tf_feature_spec()
    seen = 0
    by_name = {r.filename: r for r in ours}
    import simplejpeg

    for raw in tf.data.TFRecordDataset(files):
        ex = tf.io.parse_single_example(raw, spec)
        name = ex["image/filename"].numpy().decode()
        # libjpeg's accurate integer IDCT, as our decode uses (TF's default is the fast one).
        image = tf.io.decode_jpeg(ex["image/encoded"], channels=3,
                                  dct_method="INTEGER_ACCURATE").numpy()
        r = by_name[name]
        assert ex["image/encoded"].numpy() == r.encoded
        assert image.shape == (r.height, r.width, 3)
        assert (int(ex["image/height"]), int(ex["image/width"])) == (r.height, r.width)
        np.testing.assert_array_equal(image, simplejpeg.decode_jpeg(r.encoded, colorspace="RGB"))
        seen += 1
    assert seen == len(ours)


def test_dry_run_plans_whole_images(whole_src, tmp_path, capsys):
    src, _ = whole_src
    out = tmp_path / "plan"
    assert main(["convert", str(src), str(out), "--dry-run", "--resize-mode", "keep",
                 "--max-side", "64"]) == 0
    text = capsys.readouterr().out
    assert not out.exists()
    assert "KB per record at whole images (max side 64) jpeg" in text
    assert f"whole images: {len(AS_IS)} of the {len(AS_IS) + 5} sampled inputs converted" in text


@pytest.mark.parametrize("args, message", [
    (["--encoding", "raw"], "stores whole images as JPEG"),
    (["--size", "256"], "--size sets the side of the fixed-size modes"),
    (["--max-side", "4"], "--max-side must be an integer from 8"),
    (["--short-side", "-3"], "--short-side must be an integer from 8"),
])
def test_cli_refuses_bad_whole_image_options_in_one_line(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert main(["convert", str(tmp_path), str(out), "--resize-mode", "keep", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert main(["convert", str(tmp_path), str(out), "--size", "224", "--max-side", "512"]) == 2
    assert "applies to --resize-mode 'keep'" in capsys.readouterr().err


def test_the_default_policy_is_whole_images_up_to_512():
    """No options: whole images, longer side <= 512; a size alone: fixed center-crop squares;
    0 lifts a limit; a limit of the other side replaces the default one."""
    from ray_ingest.convert import ConvertOptions

    d = ConvertOptions()
    assert (d.resize_mode, d.max_side, d.short_side, d.size) == ("keep", 512, None, None)
    assert d.image_spec().keep and d.image_spec().max_side == 512
    fixed = ConvertOptions(size=160)
    assert (fixed.resize_mode, fixed.size, fixed.max_side) == ("center-crop", 160, None)
    assert ConvertOptions(resize_mode="squash").size == 224
    assert ConvertOptions(size=64, resize_mode="pad").resize_mode == "pad"
    assert (ConvertOptions(max_side=0).max_side, ConvertOptions(max_side=0).short_side) == (
        None, None)
    assert (ConvertOptions(short_side=256).max_side, ConvertOptions(short_side=256).short_side
            ) == (None, 256)
    assert ConvertOptions(max_side=320, short_side=0).short_side is None
    with pytest.raises(ConfigError, match="size=224 sets the side of the fixed-size modes"):
        ConvertOptions(size=224, resize_mode="keep")
    with pytest.raises(ConfigError, match="applies to resize_mode 'keep'"):
        ConvertOptions(size=224, max_side=512)


def test_cli_default_is_whole_images(tmp_path, capsys):
    src = tmp_path / "src"
    for c in ("a", "b"):
        (src / c).mkdir(parents=True)
        for i in range(3):
            (src / c / f"{i}.jpg").write_bytes(jpeg_bytes(_photo(600, 400, i)))
    assert main(["convert", str(src), str(tmp_path / "plan"), "--dry-run"]) == 0
    assert "whole images (max side 512)" in capsys.readouterr().out
    assert main(["convert", str(src), str(tmp_path / "plan"), "--dry-run", "--size", "32"]) == 0
    assert "32x32" in capsys.readouterr().out


def test_convert_dataset_with_keep(ray_session, tmp_path):
    import ray

    from ray_ingest.convert.from_dataset import convert_dataset

    fitting = jpeg_bytes(_photo(40, 60, 1))
    encoded = ray.data.from_items([{"image": fitting, "label": 0, "id": "fits"},
                                   {"image": jpeg_bytes(_photo(100, 160, 2)), "label": 1,
                                    "id": "large"}])
    out = tmp_path / "out"
    convert_dataset(encoded, str(out), resize_mode="keep", max_side=64, id_column="id",
                    val_fraction=0.0, overwrite=True, show_progress=False)
    m, records = _records(out)
    assert m.data["format_version"] == 2 and m.data["image_sizes"]["stored_as_is"] == 1
    got = {r.filename: r for r in records}
    assert got["fits"].encoded == fitting
    assert (got["large"].height, got["large"].width) == (40, 64)
    # Decoded pixels (as Ray's read_images gives) are resized and encoded.
    pixels = ray.data.from_items([{"image": _photo(90, 30, 3), "label": 0, "id": "pixels"}])
    convert_dataset(pixels, str(out), resize_mode="keep", short_side=16, id_column="id",
                    val_fraction=0.0, overwrite=True, show_progress=False, shuffle=False)
    m, records = _records(out)
    assert (records[0].height, records[0].width) == (48, 16) == _jpeg_size(records[0].encoded)
    assert m.data["image_sizes"]["reencoded"] == 1 and m.short_side == 16


def test_cli_convert_prints_the_stored_sizes(ray_session, whole_src, tmp_path, capsys):
    src, _ = whole_src
    out = tmp_path / "out"
    assert main(["convert", str(src), str(out), "--resize-mode", "keep", "--short-side", "30",
                 "--max-reject-fraction", "0.2"]) == 0
    text = capsys.readouterr().out
    m, records = _records(out)
    assert all(min(r.height, r.width) <= 30 for r in records)
    as_is = sum(r.encoded == whole_src[1][r.filename] for r in records)
    assert f"whole images: {as_is} stored byte for byte, {len(records) - as_is} re-encoded" \
        in text
    assert as_is == m.data["image_sizes"]["stored_as_is"] == 3  # c/0.jpg, c/1.jpg, a/grey.jpg
