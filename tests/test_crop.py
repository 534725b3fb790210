"""Crops taken while decoding: the boxes (torchvision's algorithm, seeded per record), the
fused region decode against a full decode + crop + PIL resize, and both reader placements on
whole-image and fixed-size shards."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest

from ray_ingest.errors import ConfigError, ExampleDecodeError
from ray_ingest.read import cropdecode
from ray_ingest.read.crop import CenterCrop, RandomResizedCrop, draw_boxes, record_keys, \
    uniforms
from tests.helpers import jpeg_bytes, pil_bytes, write_whole_image_shards


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth image with some texture (JPEG-friendly, like a photo)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([np.sin(xx / 17.0 + seed) * 60 + 120 + yy / 5,
                    np.cos(yy / 23.0) * 70 + 100 + 20 * np.sin((xx + yy) / 9.0),
                    (xx + yy) / (h + w) * 200 + 20], -1)
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def _reference(data: bytes, box, size: int, flip: bool) -> np.ndarray:
    """Full decode -> crop -> PIL BILINEAR resize of the same box."""
    from PIL import Image

    y, x, h, w = (int(v) for v in box)
    img = Image.open(io.BytesIO(data)).convert("RGB")
    out = np.asarray(img.resize((size, size), Image.BILINEAR, box=(x, y, x + w, y + h)))
    return out[:, ::-1] if flip else out


# -- boxes ---------------------------------------------------------------------------------


def test_crops_are_checked_at_construction():
    with pytest.raises(ConfigError, match="scale must be"):
        RandomResizedCrop(224, scale=(0.5, 0.1))
    with pytest.raises(ConfigError, match="ratio must be"):
        RandomResizedCrop(224, ratio=(0, 1))
    with pytest.raises(ConfigError, match="crop size must be a positive int"):
        CenterCrop(0)
    with pytest.raises(ConfigError, match="CenterCrop: ratio"):
        CenterCrop(224, ratio=1.5)
    assert RandomResizedCrop(8, scale=[0.1, 1], ratio=[1, 2]).scale == (0.1, 1.0)


def test_random_boxes_fit_are_seeded_per_record_and_vectorized():
    crop = RandomResizedCrop(32)
    n = 5000
    rng = np.random.default_rng(0)
    hs, ws = rng.integers(20, 600, n), rng.integers(20, 600, n)
    keys = record_keys(7, rng.integers(0, 2**32, n), np.arange(n))
    boxes, flips = crop.boxes(hs, ws, keys)
    y, x, h, w = boxes.T
    assert (h > 0).all() and (w > 0).all() and (y >= 0).all() and (x >= 0).all()
    assert (y + h <= hs).all() and (x + w <= ws).all()
    assert not flips.any()  # flip_prob 0
    # The same record under the same seed: the same box, whatever else is in the batch.
    again, _ = crop.boxes(hs[::-1], ws[::-1], keys[::-1])
    assert (again[::-1] == boxes).all()
    other, _ = crop.boxes(hs, ws, record_keys(8, rng.integers(0, 2**32, n), np.arange(n)))
    assert (other != boxes).any(axis=1).mean() > 0.9  # a new seed (epoch): new boxes
    frac = (h * w) / (hs * ws)
    assert frac.max() <= 1 and np.median(frac) > 0.08
    flipped = RandomResizedCrop(32, flip_prob=0.5).boxes(hs, ws, keys)[1]
    assert 0.45 < flipped.mean() < 0.55


def test_fallback_is_the_clamped_centre_crop():
    # ratio (2, 2) with scale (1, 1) never fits a square image: w = round(sqrt(2 A)) > W.
    boxes = draw_boxes([100, 100, 300], [100, 400, 100], (1.0, 1.0), (2.0, 2.0),
                       uniforms(np.arange(3, dtype=np.uint64), 40))
    # Square (in_ratio 1 < 2): w = W, h = round(W / 2), centred.
    assert boxes[0].tolist() == [25, 0, 50, 100]
    # 400 wide, 100 high (in_ratio 4 > 2): h = H, w = round(H * 2), centred.
    assert boxes[1].tolist() == [0, 100, 100, 200]
    # Tall: in_ratio 1/3 < 2: w = W, h = 50.
    assert boxes[2].tolist() == [125, 0, 50, 100]
    # A ratio range holding the image's own aspect: the whole image.
    whole = draw_boxes([100], [120], (1.0, 1.0), (1.2, 1.2), uniforms(np.zeros(1, np.uint64),
                                                                       40))
    assert whole[0].tolist() in ([0, 0, 100, 120],)


def test_center_crop_boxes():
    boxes, flips = CenterCrop(224).boxes([375, 500], [500, 375])
    side = round(375 * 0.875)
    assert boxes.tolist() == [[round((375 - side) / 2), round((500 - side) / 2), side, side],
                              [round((500 - side) / 2), round((375 - side) / 2), side, side]]
    assert not flips.any()


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    return float(np.max(np.abs(np.searchsorted(a, grid, "right") / len(a)
                               - np.searchsorted(b, grid, "right") / len(b))))


def test_boxes_follow_torchvision_get_params():
    torch = pytest.importorskip("torch")
    transforms = pytest.importorskip("torchvision.transforms")
    n, (H, W) = 10_000, (375, 500)
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    torch.manual_seed(0)
    img = torch.empty(3, H, W)
    ref = np.array([transforms.RandomResizedCrop.get_params(img, list(scale), list(ratio))
                    for _ in range(n)], np.float64)  # (i, j, h, w)
    ours = RandomResizedCrop(224, scale, ratio).boxes(
        np.full(n, H), np.full(n, W), record_keys(1, np.zeros(n), np.arange(n)))[0].astype(
        np.float64)
    critical = 1.63 * math.sqrt(2 / n)  # alpha = 0.01
    for name, f in (("area fraction", lambda b: b[:, 2] * b[:, 3] / (H * W)),
                    ("log aspect", lambda b: np.log(b[:, 3] / b[:, 2])),
                    ("row", lambda b: b[:, 0]), ("column", lambda b: b[:, 1])):
        d = _ks(f(ours), f(ref))
        assert d < critical, f"{name}: KS statistic {d:.4f} >= {critical:.4f}"
    # And the test has power: a different scale range is told apart.
    wrong = RandomResizedCrop(224, (0.25, 1.0), ratio).boxes(
        np.full(n, H), np.full(n, W), record_keys(1, np.zeros(n), np.arange(n)))[0]
    assert _ks(wrong[:, 2] * wrong[:, 3] / (H * W), ref[:, 2] * ref[:, 3] / (H * W)) > critical


# -- the fused decode ----------------------------------------------------------------------


def _batch(items):
    data = b"".join(items)
    sizes = np.array([len(d) for d in items], np.int64)
    ends = np.cumsum(sizes)
    return data, ends - sizes, ends


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "fallback"])
def test_crop_decode_matches_full_decode_crop_resize(fused):
    if fused and not cropdecode.fused_available():
        pytest.fail("the C extension ray_ingest.read._jpegcrop is not built "
                    "(pip install -e . with gcc and libjpeg headers)")
    from PIL import Image

    colour = _photo(375, 500, 1)
    items = [jpeg_bytes(colour), pil_bytes(Image.fromarray(_photo(300, 200, 2)[..., 1]),
                                           "JPEG", quality=90)]  # greyscale JPEG
    rng = np.random.default_rng(0)
    crops = [RandomResizedCrop(64, flip_prob=0.5), RandomResizedCrop(224), CenterCrop(96)]
    for crop in crops:
        n = 12
        chosen = [items[i % 2] for i in range(n)]
        hs = np.array([375 if i % 2 == 0 else 300 for i in range(n)])
        ws = np.array([500 if i % 2 == 0 else 200 for i in range(n)])
        boxes, flips = crop.boxes(hs, ws, record_keys(3, np.zeros(n), rng.integers(0, 1e6, n)))
        out = np.zeros((n, crop.size, crop.size, 3), np.uint8)
        cropdecode.decode_crops(*_batch(chosen), boxes, flips, out, threads=2, fused=fused,
                                fast=False)
        for i in range(n):
            ref = _reference(chosen[i], boxes[i], crop.size, bool(flips[i]))
            mad = np.abs(ref.astype(np.int16) - out[i]).mean()
            assert mad <= 3, f"{crop}, record {i}, box {boxes[i]}: MAD {mad:.2f}"
        if isinstance(crop, RandomResizedCrop) and crop.flip_prob:
            assert 0 < flips.sum() < n


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "fallback"])
def test_crop_decode_names_the_bad_record(fused):
    if fused and not cropdecode.fused_available():
        pytest.fail("the C extension ray_ingest.read._jpegcrop is not built")
    good = jpeg_bytes(_photo(64, 64))
    box = np.array([[0, 0, 64, 64]] * 3, np.int32)
    out = np.zeros((3, 16, 16, 3), np.uint8)
    for bad in (b"not a jpeg at all", good[: len(good) // 2]):
        with pytest.raises(cropdecode.CropDecodeError) as e:
            cropdecode.decode_crops(*_batch([good, good, bad]), box, np.zeros(3), out,
                                    fused=fused)
        assert e.value.args[0] == 2
    with pytest.raises(cropdecode.CropDecodeError, match="outside the 64x64 image"):
        cropdecode.decode_crops(*_batch([good]), np.array([[10, 0, 64, 64]]), np.zeros(1),
                                out[:1], fused=fused)


def test_fallback_warns_once(monkeypatch):
    monkeypatch.setattr(cropdecode, "_jpegcrop", None)
    monkeypatch.setattr(cropdecode, "_warned", False)
    good = jpeg_bytes(_photo(64, 64))
    out = np.zeros((1, 16, 16, 3), np.uint8)
    args = (*_batch([good]), np.array([[0, 0, 64, 64]]), np.zeros(1), out)
    with pytest.warns(RuntimeWarning, match="libjpeg-turbo headers"):
        cropdecode.decode_crops(*args)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cropdecode.decode_crops(*args)


# -- the reader ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def whole_images(tmp_path_factory):
    """Whole-image shards: 48 JPEGs of 5 sizes (some grey), 3 classes."""
    from PIL import Image

    sizes = [(375, 500), (500, 375), (120, 90), (64, 200), (333, 333)]
    items = []
    for i in range(48):
        h, w = sizes[i % len(sizes)]
        img = _photo(h, w, i)
        data = pil_bytes(Image.fromarray(img[..., 0]), "JPEG", quality=90) if i % 7 == 3 \
            else jpeg_bytes(img)
        items.append((data, i % 3))
    root = write_whole_image_shards(tmp_path_factory.mktemp("whole"),
                                    {"train": items[:40], "val": items[40:]},
                                    ["a", "b", "c"], records_per_shard=16)
    return root, items


def _by_name(ds_batches):
    out = {}
    for b in ds_batches:
        for name, img in zip(b["filename"], b["image"]):
            out[str(name)] = img
    return out


def test_whole_image_read_needs_a_crop(ray_session, whole_images):
    from ray_ingest import read_records

    with pytest.raises(ConfigError, match=r"different sizes.*CenterCrop\(224\)"):
        read_records(str(whole_images[0]), "train")


def test_crop_in_both_placements_gives_the_same_pixels(ray_session, whole_images):
    from ray_ingest import iter_images, read_records

    root, items = whole_images
    crop = RandomResizedCrop(48, flip_prob=0.5)
    kw = dict(crop=crop, seed=5, with_filename=True, block_rows=16)
    workers = list(read_records(str(root), "train", **kw).iter_batches(batch_size=16))
    consumer_ds = read_records(str(root), "train", decode="consumer", **kw)
    consumer = list(iter_images(consumer_ds, batch_size=16, decode_threads=2))
    assert all(b["image"].shape[1:] == (48, 48, 3) for b in workers + consumer)
    a, b = _by_name(workers), _by_name(consumer)
    assert len(a) == len(b) == 40
    for name in a:
        assert (a[name] == b[name]).all(), name  # the same box and flip in both placements
    # The boxes are the reader's: compare each image with the reference of its own box.
    from ray_ingest.read.decode import crop_boxes

    fresh = read_records(str(root), "train", decode="consumer", **kw)  # its first epoch again
    table = next(iter(fresh.iter_batches(batch_size=40, batch_format="pyarrow")))
    boxes = crop_boxes(table)
    files = table.column("filename").to_pylist()
    by_file = {f"train/{k}/{j}.jpg": items[16 * k + j][0] for k in range(3) for j in range(16)}
    mads = [np.abs(_reference(by_file[f], boxes[i, :4], 48, bool(boxes[i, 4])).astype(np.int16)
                   - a[f]).mean() for i, f in enumerate(files)]
    assert max(mads) <= 3, mads
    # A new epoch (a new execution of the same dataset) draws new boxes.
    again = crop_boxes(next(iter(fresh.iter_batches(batch_size=40, batch_format="pyarrow"))))
    assert (again[:, :4] != boxes[:, :4]).any(axis=1).mean() > 0.8


def test_center_crop_and_collate(ray_session, whole_images):
    torch = pytest.importorskip("torch")
    from ray_ingest import read_records
    from ray_ingest.read.collate import JpegCollate

    root, items = whole_images
    ds = read_records(str(root), "val", decode="consumer", crop=CenterCrop(32))
    batches = list(ds.iter_torch_batches(batch_size=8, collate_fn=JpegCollate()))
    images = torch.cat([b["image"] for b in batches]).numpy()
    assert images.shape == (8, 32, 32, 3)
    for i, (data, _) in enumerate(items[40:]):
        box = CenterCrop(32).boxes(*[[v] for v in _size(data)])[0][0]
        mad = np.abs(_reference(data, box, 32, False).astype(np.int16) - images[i]).mean()
        assert mad <= 3


def _size(data):
    import simplejpeg

    h, w, _, _ = simplejpeg.decode_jpeg_header(data)
    return h, w


def test_crop_of_fixed_size_shards_and_the_bad_record(ray_session, converted, tmp_path):
    from ray_ingest import read_records

    ds = read_records(str(converted["jpeg"]), "train", crop=RandomResizedCrop(24), seed=1)
    batch = next(iter(ds.iter_batches(batch_size=8)))
    assert batch["image"].shape == (8, 24, 24, 3)
    with pytest.raises(ConfigError, match="crop= decodes JPEG records"):
        read_records(str(converted["raw"]), "train", crop=CenterCrop(24))
    with pytest.raises(ConfigError, match="crop must be"):
        read_records(str(converted["jpeg"]), "train", crop=(24, 24))


def test_training_takes_the_standard_recipe_on_whole_images_only():
    from ray_ingest.format.manifest import Manifest
    from ray_ingest.train.config import TrainConfig
    from ray_ingest.train.evaluate import eval_crop

    whole = Manifest("/d", {"resize_mode": "keep", "height": None, "width": None})
    fixed = Manifest("/d", {"resize_mode": "center-crop", "height": 64, "width": 64})
    cfg = TrainConfig(data="/d")
    train_crop, val_crop = cfg.decode_crops(whole)
    assert train_crop == RandomResizedCrop(224, (0.08, 1.0), (3 / 4, 4 / 3), flip_prob=0.5)
    assert val_crop == CenterCrop(224)
    aug = cfg.augment_config(whole)  # no second crop or flip on the device; jitter stays
    assert (aug.size, aug.scale, aug.ratio, aug.flip_prob) == (224, (1.0, 1.0), (1.0, 1.0), 0)
    assert aug.brightness > 0
    assert cfg.decode_crops(fixed) == (None, None)
    aug = cfg.augment_config(fixed)
    assert (aug.size, aug.scale, aug.ratio[1], aug.flip_prob) == (64, (0.6, 1.0), 1.1, 0.5)
    custom = TrainConfig(data="/d", image_size=160, crop_scale=0.25, crop_ratio=1.5,
                         augment=False)
    assert custom.decode_crops(whole) == (CenterCrop(160), CenterCrop(160))
    assert TrainConfig(data="/d", image_size=160, crop_scale=0.25).decode_crops(whole)[0] \
        == RandomResizedCrop(160, (0.25, 1.0), (3 / 4, 4 / 3), flip_prob=0.5)
    assert eval_crop(whole, {"image_size": 192}) == CenterCrop(192)
    assert eval_crop(whole, None) == CenterCrop(224) and eval_crop(fixed, None) is None


def test_inspect_grid_centre_crops_whole_images(whole_images, tmp_path):
    from PIL import Image

    from ray_ingest.tools.inspect import write_grid

    root, items = whole_images
    png = tmp_path / "grid.png"
    classes, shown = write_grid(str(root), str(png), per_class=2, thumb=40)
    assert (classes, shown) == (3, 6)
    sheet = np.asarray(Image.open(png).convert("RGB"))
    # The first cell is the first record of class 0 (a 375x500 photo), centre-cropped.
    cell = sheet[24 : 24 + 40, 150 : 150 + 40]
    box = CenterCrop(40).boxes([375], [500])[0][0]
    assert np.abs(cell.astype(np.int16) - _reference(items[0][0], box, 40, False)).mean() <= 3


def test_the_throughput_study_refuses_whole_images(whole_images):
    from ray_ingest.bench.job import BenchConfig, run_bench

    with pytest.raises(ConfigError, match="crop_bench.py"):
        run_bench(BenchConfig(data=str(whole_images[0])))


def test_dalis_random_crop_peer_reads_our_whole_image_shards(whole_images):
    """The crop benchmark's DALI row: our shards and .idx files, every record, 224x224 RGB."""
    pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed")
    import os

    from ray_ingest.bench.peers import dali

    root, items = whole_images
    from ray_ingest.format.manifest import read_manifest

    m = read_manifest(str(root))
    train = m.shards("train")
    pipe = dali.pipeline([os.path.join(root, s.file) for s in train],
                         [os.path.join(root, s.index) for s in train], 40, 1,
                         decode=dali.decode_random_crop(24))
    images, labels = pipe.run()
    batch = np.array(images.as_tensor())
    assert batch.shape == (40, 24, 24, 3) and batch.dtype == np.uint8
    assert sorted(int(v) for v in np.array(labels.as_tensor()).ravel()) == \
        sorted(label for _, label in items[:40])
