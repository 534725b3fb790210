"""The augmentation as batched torch ops on the batch's device (NHWC ``uint8`` in, NCHW float
out, channels-last in memory on GPU). Same parameters and formulas as ``tf_ops``."""

from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F

from ray_ingest.augment import (
    GREY_WEIGHTS,
    AugmentConfig,
    clip_range,
    color_transform,
    params_from_uniforms,
)


class TorchOps:
    exp, sqrt = staticmethod(torch.exp), staticmethod(torch.sqrt)

    @staticmethod
    def minimum(x, v):
        return torch.clamp(x, max=v)

    @staticmethod
    def stack(values, axis):
        return torch.stack(values, dim=axis)


def _ops_on(device, dtype=torch.float32):
    class Ops:
        @staticmethod
        def reshape(x, shape):
            return torch.reshape(x, shape)

        @staticmethod
        def eye3():
            return torch.eye(3, device=device, dtype=dtype).unsqueeze(0)

        @staticmethod
        def constant(values):
            return torch.tensor(values, device=device, dtype=dtype)

    return Ops


def sample_params(n: int, cfg: AugmentConfig, generator: torch.Generator,
                  device: Optional[torch.device] = None) -> Dict[str, torch.Tensor]:
    """Per-sample parameters from ``generator`` (on the device of the generator)."""
    device = device or generator.device
    u = torch.rand((n, 8), generator=generator, device=device, dtype=torch.float32)
    return params_from_uniforms(u, cfg, TorchOps)


def _as(x, device, dtype):
    return torch.as_tensor(x, device=device).to(dtype)


def apply(images: torch.Tensor, params: Dict, cfg: AugmentConfig) -> torch.Tensor:
    """``uint8[N, H, W, 3]`` + parameters → normalised ``float32[N, 3, S, S]``.

    The crop is ``tf.image.crop_and_resize``'s: box coordinate ``c`` maps to pixel
    ``c * (side - 1)``, sampled bilinearly at ``S`` evenly spaced points from the box's first
    edge to its last (``grid_sample`` with ``align_corners=True``); a flip reads the box right
    to left.
    """
    device = images.device
    n, h, w, _ = images.shape
    boxes = _as(params["boxes"], device, torch.float32)
    flip = _as(params["flip"], device, torch.bool)
    y0, x0, y1, x1 = boxes.unbind(1)
    x0, x1 = torch.where(flip, x1, x0), torch.where(flip, x0, x1)
    t = torch.linspace(0.0, 1.0, cfg.size, device=device)
    gy = 2.0 * (y0[:, None] + (y1 - y0)[:, None] * t[None, :]) - 1.0  # [N, S]
    gx = 2.0 * (x0[:, None] + (x1 - x0)[:, None] * t[None, :]) - 1.0
    grid = torch.stack([gx[:, None, :].expand(n, cfg.size, cfg.size),
                        gy[:, :, None].expand(n, cfg.size, cfg.size)], dim=-1)
    x = images.permute(0, 3, 1, 2).float()  # NCHW view of NHWC memory: channels-last
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
    weights = torch.tensor(GREY_WEIGHTS, device=device)
    grey_mean = x.mean(dim=(2, 3)) @ weights
    m, o = color_transform(_as(params["brightness"], device, torch.float32),
                           _as(params["contrast"], device, torch.float32),
                           _as(params["saturation"], device, torch.float32),
                           grey_mean, cfg, _ops_on(device))
    y = torch.einsum("nchw,ndc->ndhw", x, m) + o[:, :, None, None]
    lo, hi = clip_range(cfg)
    lo_t = torch.tensor(lo, device=device).view(1, 3, 1, 1)
    hi_t = torch.tensor(hi, device=device).view(1, 3, 1, 1)
    return torch.maximum(torch.minimum(y, hi_t), lo_t)


def augment(images: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Training transform: fresh per-sample parameters from ``generator``, then :func:`apply`."""
    if not cfg.enabled:
        return evaluate(images, cfg)
    return apply(images, sample_params(images.shape[0], cfg, generator, images.device), cfg)


def augment_uniforms(images: torch.Tensor, cfg: AugmentConfig, u) -> torch.Tensor:
    """Training transform with the parameters of the uniforms ``u[N, 8]``
    (:func:`ray_ingest.augment.sample_uniforms`), moved to the images' device."""
    if not cfg.enabled:
        return evaluate(images, cfg)
    u = torch.as_tensor(u, dtype=torch.float32).to(images.device, non_blocking=True)
    return apply(images, params_from_uniforms(u, cfg, TorchOps), cfg)


def evaluate(images: torch.Tensor, cfg: AugmentConfig, resize_always: bool = False) -> torch.Tensor:
    """Validation transform: the whole image resized to ``S x S`` (bilinear), normalised.

    ``resize_always`` resizes images that are ``S x S`` already too (the identity then): one
    graph for every input size, without a branch on the input's shape (an exported model)."""
    x = images.permute(0, 3, 1, 2).float()
    if resize_always or x.shape[-1] != cfg.size or x.shape[-2] != cfg.size:
        x = F.interpolate(x, size=(cfg.size, cfg.size), mode="bilinear", align_corners=False,
                          antialias=True)
    mean = torch.tensor(cfg.mean, device=x.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(cfg.std, device=x.device).view(1, 3, 1, 1) * 255.0
    return (x - mean) / std
