"""JPEG decoding on the training worker's GPU: encoded batches go to the device and come back
as ``uint8[N, H, W, 3]`` tensors there, ready for the on-device augmentation.

Decoders, in order of preference: for torch, torchvision's ``decode_jpeg(..., device="cuda")``
(nvJPEG, batched), else NVIDIA nvImageCodec; for TensorFlow, nvImageCodec through DLPack.
:func:`gpu_decoder` raises a :class:`~ray_ingest.errors.ConfigError` that names what to install
when none is importable or the worker has no GPU; :func:`probe` says whether one would work.

A read that crops while decoding (``crop=``) gives each encoded record its box (the ``crop``
column, drawn by the read task: the same boxes as the CPU placements); the GPU decodes the
whole image, then cuts each box and resizes it to ``S x S`` there (bilinear, antialiased),
mirrored where the box says so.
"""

from __future__ import annotations

import warnings
from typing import Callable, Tuple

import numpy as np

from ray_ingest.errors import ConfigError
from ray_ingest.read.decode import Batch, _Encoded, crop_boxes

NVIMGCODEC_PIP = "nvidia-nvimgcodec-cu12"


def _nvimgcodec():
    try:
        from nvidia import nvimgcodec
    except ImportError:
        return None
    return nvimgcodec


def _torchvision_decode_jpeg():
    try:
        from torchvision.io import decode_jpeg
    except Exception:  # noqa: BLE001 - not installed, or a build that does not import
        return None
    return decode_jpeg


def _payload_arrays(batch: Batch):
    enc = _Encoded(batch)
    return [np.frombuffer(enc[i], dtype=np.uint8) for i in range(enc.n)]


def torch_crop_resize(images, crop: np.ndarray):
    """Decoded ``[3, H, W]`` uint8 tensors (any sizes, on one device) and their boxes
    (int32[N, 6] ``(y, x, h, w, flip, size)``) → ``uint8[N, S, S, 3]`` on that device."""
    import torch
    import torch.nn.functional as F

    n = len(images)
    size = int(crop[0, 5]) if n else 0
    device = images[0].device if n else "cpu"
    out = torch.empty((n, 3, size, size), dtype=torch.float32, device=device)
    for k, img in enumerate(images):  # sizes differ: one resize per image, no host sync
        y, x, h, w = (int(v) for v in crop[k, :4])
        region = img[:, y : y + h, x : x + w].unsqueeze(0).float()
        out[k] = F.interpolate(region, size=(size, size), mode="bilinear",
                               align_corners=False, antialias=True)[0]
    flips = torch.from_numpy(crop[:, 4].astype(bool)).to(device)
    out = torch.where(flips[:, None, None, None], out.flip(-1), out)
    return out.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def torch_gpu_decoder(device) -> Callable[[Batch], "torch.Tensor"]:  # noqa: F821
    import torch

    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        raise ConfigError("--decode gpu: this training worker has no CUDA GPU "
                          f"(device {device}); use --decode consumer or workers")
    decode_jpeg = _torchvision_decode_jpeg()
    if decode_jpeg is not None:
        def decode(batch: Batch) -> "torch.Tensor":  # noqa: F821
            with warnings.catch_warnings():  # the buffers are read-only; nothing writes them
                warnings.simplefilter("ignore", UserWarning)
                data = [torch.from_numpy(a) for a in _payload_arrays(batch)]
            images = decode_jpeg(data, device=device)  # [3, H, W] each
            crop = crop_boxes(batch)
            if crop is not None:
                return torch_crop_resize(images, crop)
            return torch.stack(images).permute(0, 2, 3, 1)  # NHWC, as the shards store them

        return decode
    codec = _nvimgcodec()
    if codec is not None:
        decoder = codec.Decoder()

        def decode(batch: Batch) -> "torch.Tensor":  # noqa: F821
            images = decoder.decode([a.tobytes() for a in _payload_arrays(batch)])
            images = [torch.as_tensor(img, device=device) for img in images]  # HWC
            crop = crop_boxes(batch)
            if crop is not None:
                return torch_crop_resize([img.permute(2, 0, 1) for img in images], crop)
            return torch.stack(images)

        return decode
    raise ConfigError(
        "--decode gpu with torch needs a GPU JPEG decoder: install torchvision built for "
        f"torch {torch.__version__} (pip install torchvision), or NVIDIA nvImageCodec "
        f"(pip install {NVIMGCODEC_PIP}); or use --decode consumer")


def tf_gpu_decoder() -> Callable[[Batch], "tf.Tensor"]:  # noqa: F821
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        raise ConfigError("--decode gpu: this training worker has no GPU visible to "
                          "TensorFlow; use --decode consumer or workers")
    codec = _nvimgcodec()
    if codec is None:
        raise ConfigError(
            "--decode gpu with TensorFlow needs NVIDIA nvImageCodec "
            f"(pip install {NVIMGCODEC_PIP}); or use --decode consumer")
    decoder = codec.Decoder()

    def decode(batch: Batch) -> "tf.Tensor":  # noqa: F821
        images = decoder.decode([a.tobytes() for a in _payload_arrays(batch)])
        images = [tf.experimental.dlpack.from_dlpack(img.to_dlpack()) for img in images]
        crop = crop_boxes(batch)
        if crop is None:
            return tf.stack(images)
        size = int(crop[0, 5])
        out = []
        for img, (y, x, h, w, flip, _) in zip(images, crop.tolist()):
            r = tf.image.resize(tf.cast(img[y : y + h, x : x + w], tf.float32), (size, size),
                                method="bilinear", antialias=True)
            out.append(r[:, ::-1] if flip else r)
        return tf.cast(tf.clip_by_value(tf.round(tf.stack(out)), 0, 255), tf.uint8)

    return decode


def probe(framework: str) -> Tuple[bool, str]:
    """Whether a GPU decoder would work in this process, and why (not)."""
    try:
        if framework == "torch":
            torch_gpu_decoder("cuda")
        else:
            tf_gpu_decoder()
    except ConfigError as e:
        return False, str(e)
    except ImportError as e:
        return False, f"{framework} is not importable: {e}"
    return True, "a GPU JPEG decoder is importable and a GPU is visible"
