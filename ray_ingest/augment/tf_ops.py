"""The augmentation as batched TensorFlow ops (NHWC), placed on the GPU when there is one."""

from __future__ import annotations

from typing import Dict

import tensorflow as tf

from ray_ingest.augment import GREY_WEIGHTS, AugmentConfig, params_from_uniforms


class TFOps:
    exp, sqrt, minimum = staticmethod(tf.exp), staticmethod(tf.sqrt), staticmethod(tf.minimum)

    @staticmethod
    def stack(values, axis):
        return tf.stack(values, axis=axis)


def sample_params(n, cfg: AugmentConfig, seed) -> Dict[str, tf.Tensor]:
    """Per-sample parameters from a stateless seed (a shape-[2] int tensor), on the device."""
    u = tf.random.stateless_uniform([n, 8], seed=seed, dtype=tf.float32)
    return params_from_uniforms(u, cfg, TFOps)


def _normalize(x, cfg: AugmentConfig):
    mean = tf.constant(cfg.mean, tf.float32) * 255.0
    inv_std = 1.0 / (tf.constant(cfg.std, tf.float32) * 255.0)
    return (x - mean) * inv_std


def apply(images, params: Dict, cfg: AugmentConfig):
    """``uint8[N, H, W, 3]`` + parameters → normalised ``float32[N, S, S, 3]``."""
    x = tf.cast(images, tf.float32)
    n = tf.shape(x)[0]
    boxes = tf.convert_to_tensor(params["boxes"], tf.float32)
    x = tf.image.crop_and_resize(x, boxes, tf.range(n), (cfg.size, cfg.size), method="bilinear")
    flip = tf.reshape(tf.convert_to_tensor(params["flip"], tf.bool), [-1, 1, 1, 1])
    x = tf.where(flip, tf.reverse(x, axis=[2]), x)
    weights = tf.constant(GREY_WEIGHTS, tf.float32)

    def factor(name):
        return tf.reshape(tf.convert_to_tensor(params[name], tf.float32), [-1, 1, 1, 1])

    x = tf.clip_by_value(x * factor("brightness"), 0.0, 255.0)
    grey_mean = tf.reduce_mean(tf.tensordot(x, weights, axes=[[3], [0]]), axis=[1, 2])
    c = factor("contrast")
    x = tf.clip_by_value(c * x + (1.0 - c) * tf.reshape(grey_mean, [-1, 1, 1, 1]), 0.0, 255.0)
    grey = tf.tensordot(x, weights, axes=[[3], [0]])[..., None]
    s = factor("saturation")
    x = tf.clip_by_value(s * x + (1.0 - s) * grey, 0.0, 255.0)
    return _normalize(x, cfg)


def augment(images, cfg: AugmentConfig, seed):
    """Training transform: fresh per-sample parameters from ``seed``, then :func:`apply`."""
    if not cfg.enabled:
        return evaluate(images, cfg)
    return apply(images, sample_params(tf.shape(images)[0], cfg, seed), cfg)


def evaluate(images, cfg: AugmentConfig):
    """Validation transform: the whole image resized to ``S x S`` (bilinear), normalised."""
    x = tf.cast(images, tf.float32)
    if images.shape[1] != cfg.size or images.shape[2] != cfg.size:
        x = tf.image.resize(x, (cfg.size, cfg.size), method="bilinear", antialias=True)
    return _normalize(x, cfg)
