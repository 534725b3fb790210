"""Shared fixtures: one local Ray instance per test session, small synthetic datasets."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")


@pytest.fixture(scope="session")
def ray_session():
    """The one Ray instance of the test session (2 CPUs, no dashboard)."""
    import ray

    if not ray.is_initialized():
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        from ray_ingest.runtime import worker_soft_limit

        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}},
                 _system_config={"num_workers_soft_limit": worker_soft_limit(2)})
    yield ray
    # Left running for the rest of the session; pytest's exit stops it.


@pytest.fixture(scope="session")
def synth_tree(tmp_path_factory):
    """160 synthetic JPEGs (8 classes, 96x72), drawn serially (no Ray needed)."""
    from ray_ingest.synth import SynthSpec, synthesize

    root = tmp_path_factory.mktemp("synth")
    synthesize(SynthSpec(out=str(root), num_images=160, num_classes=8, width=96, height=72,
                         seed=3), parallel=False)
    return root


def jpeg_bytes(arr: np.ndarray, quality: int = 90) -> bytes:
    import simplejpeg

    return simplejpeg.encode_jpeg(np.ascontiguousarray(arr), quality=quality, colorspace="RGB")


def pil_bytes(img, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def random_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def huge_jpeg_header(width: int, height: int) -> bytes:
    """A small JPEG whose SOF header claims ``width`` x ``height`` (a decompression bomb)."""
    data = bytearray(jpeg_bytes(random_rgb(16, 16)))
    i = 2
    while i < len(data):
        marker = data[i + 1]
        seg_len = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 7] = height.to_bytes(2, "big")
            data[i + 7 : i + 9] = width.to_bytes(2, "big")
            return bytes(data)
        i += 2 + seg_len
    raise AssertionError("no SOF marker")


@pytest.fixture(scope="session")
def converted(ray_session, synth_tree, tmp_path_factory):
    """The synthetic tree converted twice: ``{"raw": path, "jpeg": path}`` (32x32, small shards)."""
    from ray_ingest.convert import convert

    out = {}
    for enc in ("raw", "jpeg"):
        path = tmp_path_factory.mktemp(f"conv-{enc}")
        convert(str(synth_tree), str(path), size=32, encoding=enc, val_fraction=0.2,
                shard_size_mb=0.04 if enc == "raw" else 0.01, overwrite=True)
        out[enc] = path
    return out


@pytest.fixture(scope="session")
def learnable(ray_session, tmp_path_factory):
    """A small learnable dataset: 2000 synthetic images of 5 classes, stored at 32x32."""
    from ray_ingest.convert import convert
    from ray_ingest.synth import SynthSpec, synthesize

    src = tmp_path_factory.mktemp("learn-src")
    synthesize(SynthSpec(out=str(src), num_images=2000, num_classes=5, width=64, height=48,
                         seed=11))
    out = tmp_path_factory.mktemp("learn-shards")
    convert(str(src), str(out), size=32, val_fraction=0.2, overwrite=True)
    return out
