"""The augmentation as batched TensorFlow ops (NHWC), placed on the GPU when there is one."""

from __future__ import annotations

from typing import Dict

import tensorflow as tf

from ray_ingest.augment import (
    GREY_WEIGHTS,
    AugmentConfig,
    clip_range,
    color_transform,
    params_from_uniforms,
)


class TFOps:
    exp, sqrt, minimum = staticmethod(tf.exp), staticmethod(tf.sqrt), staticmethod(tf.minimum)

    @staticmethod
    def stack(values, axis):
        return tf.stack(values, axis=axis)

    @staticmethod
    def reshape(x, shape):
        return tf.reshape(x, shape)

    @staticmethod
    def eye3():
        return tf.eye(3, batch_shape=[1])

    @staticmethod
    def constant(values):
        return tf.constant(values, tf.float32)


def sample_params(n, cfg: AugmentConfig, seed) -> Dict[str, tf.Tensor]:
    """Per-sample parameters from a stateless seed (a shape-[2] int tensor), on the device."""
    u = tf.random.stateless_uniform([n, 8], seed=seed, dtype=tf.float32)
    return params_from_uniforms(u, cfg, TFOps)


def apply(images, params: Dict, cfg: AugmentConfig):
    """``uint8[N, H, W, 3]`` + parameters → normalised ``float32[N, S, S, 3]``, in three passes:
    crop-and-resize (flip folded into the boxes), a mean, one colour matrix per image."""
    boxes = tf.convert_to_tensor(params["boxes"], tf.float32)
    flip = tf.convert_to_tensor(params["flip"], tf.bool)
    y0, x0, y1, x1 = tf.unstack(boxes, axis=1)
    boxes = tf.stack([y0, tf.where(flip, x1, x0), y1, tf.where(flip, x0, x1)], axis=1)
    n = tf.shape(boxes)[0]
    x = tf.image.crop_and_resize(images, boxes, tf.range(n), (cfg.size, cfg.size),
                                 method="bilinear")
    grey_mean = tf.linalg.matvec(tf.reduce_mean(x, axis=[1, 2]), tf.constant(GREY_WEIGHTS))
    m, o = color_transform(
        tf.convert_to_tensor(params["brightness"], tf.float32),
        tf.convert_to_tensor(params["contrast"], tf.float32),
        tf.convert_to_tensor(params["saturation"], tf.float32), grey_mean, cfg, TFOps)
    y = tf.einsum("nhwc,ndc->nhwd", x, m) + o[:, None, None, :]
    lo, hi = clip_range(cfg)
    return tf.clip_by_value(y, tf.constant(lo), tf.constant(hi))


def augment(images, cfg: AugmentConfig, seed):
    """Training transform: fresh per-sample parameters from ``seed``, then :func:`apply`."""
    if not cfg.enabled:
        return evaluate(images, cfg)
    return apply(images, sample_params(tf.shape(images)[0], cfg, seed), cfg)


def augment_uniforms(images, cfg: AugmentConfig, u):
    """Training transform with the parameters of the uniforms ``u[N, 8]``
    (:func:`ray_ingest.augment.sample_uniforms`)."""
    if not cfg.enabled:
        return evaluate(images, cfg)
    return apply(images, params_from_uniforms(tf.convert_to_tensor(u, tf.float32), cfg, TFOps),
                 cfg)


def evaluate(images, cfg: AugmentConfig):
    """Validation transform: the whole image resized to ``S x S`` (bilinear), normalised."""
    x = tf.cast(images, tf.float32)
    if images.shape[1] != cfg.size or images.shape[2] != cfg.size:
        x = tf.image.resize(x, (cfg.size, cfg.size), method="bilinear", antialias=True)
    mean = tf.constant(cfg.mean, tf.float32) * 255.0
    inv_std = 1.0 / (tf.constant(cfg.std, tf.float32) * 255.0)
    return (x - mean) * inv_std
