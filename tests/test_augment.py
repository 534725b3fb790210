"""Augmentation: shapes, dtypes, ranges, per-sample randomness, seeds, identity, and the
framework implementations against each other."""

from __future__ import annotations

import numpy as np
import pytest

from ray_ingest.augment import AugmentConfig, identity_params, sample_params

CFG = AugmentConfig(size=24)


def _images(n=16, h=40, w=40, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // w, y * 255 // h, (x + y) * 127 // (h + w)], -1)
    imgs = np.stack([np.roll(base, rng.integers(0, w), axis=1) for _ in range(n)])
    return imgs.astype(np.uint8)


def test_numpy_params_ranges_and_seed():
    p = sample_params(1000, AugmentConfig(scale=(0.25, 1.0), ratio=(0.75, 4 / 3)), seed=1)
    b = p["boxes"]
    assert b.shape == (1000, 4) and b.dtype == np.float32
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
    assert (b[:, 2] <= 1 + 1e-6).all() and (b[:, 3] <= 1 + 1e-6).all()
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    assert area.min() >= 0.25 * 0.74 and area.max() <= 1.0 + 1e-6
    assert 0.4 < p["flip"].mean() < 0.6
    assert 0.7 <= p["brightness"].min() and p["brightness"].max() <= 1.3
    for k, v in sample_params(8, CFG, seed=1).items():
        assert np.array_equal(v, sample_params(8, CFG, seed=1)[k])
    assert not np.array_equal(sample_params(8, CFG, 1)["boxes"], sample_params(8, CFG, 2)["boxes"])


def test_config_validation_names_the_value():
    with pytest.raises(ValueError, match="scale"):
        AugmentConfig(scale=(0.5, 1.5))
    with pytest.raises(ValueError, match="brightness"):
        AugmentConfig(brightness=1.5)
    with pytest.raises(ValueError, match="flip_prob"):
        AugmentConfig(flip_prob=2)


@pytest.mark.tf
def test_tf_shapes_dtypes_ranges_and_per_sample_randomness():
    tf = pytest.importorskip("tensorflow")
    from ray_ingest.augment import tf_ops

    imgs = _images()
    out = tf_ops.augment(imgs, CFG, tf.constant([3, 4], tf.int64)).numpy()
    assert out.shape == (16, 24, 24, 3) and out.dtype == np.float32
    lo = (0 - np.array(CFG.mean)) / np.array(CFG.std)
    hi = (1 - np.array(CFG.mean)) / np.array(CFG.std)
    assert (out >= lo - 1e-4).all() and (out <= hi + 1e-4).all()
    # The same image repeated gets different parameters per sample.
    same = np.repeat(imgs[:1], 8, axis=0)
    o = tf_ops.augment(same, CFG, tf.constant([3, 4], tf.int64)).numpy()
    assert len({o[i].tobytes() for i in range(8)}) == 8
    # Seeded: the same seed gives the same batch, another seed another.
    again = tf_ops.augment(imgs, CFG, tf.constant([3, 4], tf.int64)).numpy()
    other = tf_ops.augment(imgs, CFG, tf.constant([3, 5], tf.int64)).numpy()
    assert np.array_equal(out, again) and not np.allclose(out, other)


@pytest.mark.tf
def test_tf_identity_params_and_disabled_mean_no_change():
    tf = pytest.importorskip("tensorflow")
    from ray_ingest.augment import tf_ops

    imgs = _images(h=24, w=24)
    cfg = AugmentConfig(size=24)
    expected = (imgs / 255.0 - np.array(cfg.mean)) / np.array(cfg.std)
    ident = tf_ops.apply(imgs, identity_params(len(imgs)), cfg).numpy()
    assert np.abs(ident - expected).max() < 1e-4
    off = tf_ops.augment(imgs, AugmentConfig(size=24, enabled=False), tf.constant([1, 2], tf.int64))
    assert np.abs(off.numpy() - expected).max() < 1e-4
    assert np.abs(tf_ops.evaluate(imgs, cfg).numpy() - expected).max() < 1e-4


@pytest.mark.tf
def test_tf_flip_and_crop_do_what_they_say():
    pytest.importorskip("tensorflow")
    from ray_ingest.augment import tf_ops

    imgs = _images(n=2, h=32, w=32)
    cfg = AugmentConfig(size=16, brightness=0, contrast=0, saturation=0)
    p = identity_params(2)
    # crop_and_resize maps a box coordinate c to pixel c * (side - 1): these boxes sample
    # exactly pixels 0..15 and 16..31.
    p["boxes"] = np.array([[0, 0, 15 / 31, 15 / 31], [16 / 31, 16 / 31, 1, 1]], np.float32)
    p["flip"] = np.array([False, True])
    out = tf_ops.apply(imgs, p, cfg).numpy()
    raw = out * np.array(cfg.std) * 255 + np.array(cfg.mean) * 255
    assert np.abs(raw[0] - imgs[0, :16, :16]).max() < 0.01
    assert np.abs(raw[1] - imgs[1, 16:, 16:][:, ::-1]).max() < 0.01


@pytest.mark.torch
def test_torch_shapes_ranges_randomness_and_seed():
    torch = pytest.importorskip("torch")
    from ray_ingest.augment import torch_ops

    imgs = torch.from_numpy(_images())
    g = torch.Generator().manual_seed(3)
    out = torch_ops.augment(imgs, CFG, g)
    assert out.shape == (16, 3, 24, 24) and out.dtype == torch.float32
    lo = torch.tensor([(0 - m) / s for m, s in zip(CFG.mean, CFG.std)]).view(1, 3, 1, 1)
    hi = torch.tensor([(1 - m) / s for m, s in zip(CFG.mean, CFG.std)]).view(1, 3, 1, 1)
    assert bool((out >= lo - 1e-4).all()) and bool((out <= hi + 1e-4).all())
    same = imgs[:1].repeat(8, 1, 1, 1)
    o = torch_ops.augment(same, CFG, torch.Generator().manual_seed(3))
    assert len({o[i].numpy().tobytes() for i in range(8)}) == 8
    again = torch_ops.augment(imgs, CFG, torch.Generator().manual_seed(3))
    other = torch_ops.augment(imgs, CFG, torch.Generator().manual_seed(4))
    assert torch.equal(out, again) and not torch.allclose(out, other)
    off = torch_ops.augment(imgs[:, :24, :24], AugmentConfig(size=24, enabled=False), g)
    expected = (imgs[:, :24, :24].permute(0, 3, 1, 2).float() / 255.0
                - torch.tensor(CFG.mean).view(1, 3, 1, 1)) / torch.tensor(CFG.std).view(1, 3, 1, 1)
    assert torch.allclose(off, expected, atol=1e-4)


@pytest.mark.tf
@pytest.mark.torch
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_torch_and_tensorflow_agree_for_the_same_parameters(seed):
    """Same crop boxes, flips and colour factors give the same pixels in both frameworks."""
    tf = pytest.importorskip("tensorflow")
    torch = pytest.importorskip("torch")
    from ray_ingest.augment import tf_ops, torch_ops

    imgs = np.random.default_rng(seed).integers(0, 256, (12, 45, 37, 3), dtype=np.uint8)
    cfg = AugmentConfig(size=29, scale=(0.1, 1.0))
    params = sample_params(12, cfg, seed)
    assert params["flip"].any() and not params["flip"].all()
    a = tf_ops.apply(imgs, params, cfg).numpy()
    b = torch_ops.apply(torch.from_numpy(imgs), {k: torch.from_numpy(v) for k, v in params.items()},
                        cfg).permute(0, 2, 3, 1).numpy()
    assert np.abs(a - b).max() < 1e-3  # float32 rounding; 1/255 of a pixel level is ~0.017
    # And the on-device samplers draw from the same distribution formula.
    p = torch_ops.sample_params(1000, cfg, torch.Generator().manual_seed(seed))
    q = tf_ops.sample_params(1000, cfg, tf.constant([seed, 0], tf.int64))
    for x in (p["boxes"].numpy(), q["boxes"].numpy()):
        area = (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
        assert area.min() >= 0.1 * 0.74 and area.max() <= 1.0 + 1e-6
