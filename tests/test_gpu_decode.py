"""GPU decode as far as a CPU machine allows: the refusals name what is missing, and the torch
path's batching and layout (with a stand-in for torchvision's GPU decoder)."""

from __future__ import annotations


import numpy as np
import pytest

from helpers import jpeg_bytes, random_rgb
from ray_ingest.errors import ConfigError
from ray_ingest.read.decode import decode_batch


def _encoded_batch(n=3):
    images = [random_rgb(16, 24, seed=i) for i in range(n)]
    return {"encoded": np.array([jpeg_bytes(a) for a in images], dtype=object),
            "label": np.arange(n, dtype=np.int64)}


def test_torch_gpu_decode_needs_a_gpu():
    pytest.importorskip("torch")
    from ray_ingest.read.gpu import probe, torch_gpu_decoder

    with pytest.raises(ConfigError, match="no CUDA GPU"):
        torch_gpu_decoder("cpu")
    ok, why = probe("torch")
    assert not ok and "no CUDA GPU" in why


def test_tf_gpu_decode_needs_a_gpu():
    pytest.importorskip("tensorflow")
    from ray_ingest.read.gpu import probe

    ok, why = probe("tf")
    assert not ok and "no GPU visible to TensorFlow" in why


def test_torch_gpu_decode_without_a_decoder_names_what_to_install(monkeypatch):
    torch = pytest.importorskip("torch")
    from ray_ingest.read import gpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu, "_torchvision_decode_jpeg", lambda: None)
    monkeypatch.setattr(gpu, "_nvimgcodec", lambda: None)
    with pytest.raises(ConfigError, match="pip install torchvision.*nvidia-nvimgcodec"):
        gpu.torch_gpu_decoder("cuda")


def test_torch_gpu_decode_batches_and_layout(monkeypatch):
    """With torchvision's decode_jpeg stood in by a CPU decoder of the same contract (a list of
    uint8 byte tensors in, a list of [3, H, W] tensors out), the batch comes back as the
    shards store images: uint8 [N, H, W, 3], the same pixels as the CPU decode."""
    torch = pytest.importorskip("torch")
    from ray_ingest.read import gpu

    def fake_decode_jpeg(data, device):
        assert isinstance(data, list) and all(t.dtype == torch.uint8 for t in data)
        out = [decode_batch({"encoded": np.array([t.numpy().tobytes()], dtype=object),
                             "label": np.zeros(1, np.int64)})["image"][0] for t in data]
        return [torch.from_numpy(a).permute(2, 0, 1) for a in out]

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu, "_torchvision_decode_jpeg", lambda: fake_decode_jpeg)
    decode = gpu.torch_gpu_decoder("cuda")
    batch = _encoded_batch()
    images = decode(batch)
    assert tuple(images.shape) == (3, 16, 24, 3) and images.dtype == torch.uint8
    np.testing.assert_array_equal(images.numpy(), decode_batch(batch)["image"])


def test_collate_for_rays_iter_torch_batches_decodes_like_the_workers(ray_session, converted):
    torch = pytest.importorskip("torch")
    from ray_ingest.read import read_records
    from ray_ingest.read.collate import JpegCollate

    path = str(converted["jpeg"])
    kw = dict(concurrency=1)
    ours = list(read_records(path, "val", decode="consumer", **kw).iter_torch_batches(
        batch_size=8, collate_fn=JpegCollate(), prefetch_batches=0))
    ref = list(read_records(path, "val", **kw).iter_batches(batch_size=8, batch_format="numpy",
                                                            prefetch_batches=0))
    assert all(isinstance(b["image"], torch.Tensor) and b["image"].dtype == torch.uint8
               for b in ours)
    got = sorted(zip(torch.cat([b["label"] for b in ours]).tolist(),
                     (x.tobytes() for b in ours for x in b["image"].numpy())))
    want = sorted(zip(np.concatenate([b["label"] for b in ref]).tolist(),
                      (x.tobytes() for b in ref for x in b["image"])))
    assert got == want


def test_torch_gpu_decode_crops_with_the_readers_boxes(monkeypatch):
    """An encoded batch with its ``crop`` boxes: the device path cuts and resizes each box
    (stand-in decoder on the CPU) within 3 grey levels of the fused CPU decode of the same
    boxes, flips included."""
    torch = pytest.importorskip("torch")
    from ray_ingest.read import gpu
    from ray_ingest.read.crop import RandomResizedCrop, record_keys
    from ray_ingest.read.decode import encoded_table

    sizes = [(120, 90), (64, 200), (100, 100), (90, 140)]
    yy, xx = np.mgrid[0:200, 0:200]
    smooth = np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)
    payloads = [memoryview(jpeg_bytes(np.ascontiguousarray(smooth[:h, :w]))) for h, w in sizes]
    crop = RandomResizedCrop(32, flip_prob=0.5)
    n = len(sizes)
    boxes, flips = crop.boxes([h for h, _ in sizes], [w for _, w in sizes],
                              record_keys(2, np.zeros(n), np.arange(n)))
    columns = np.concatenate([boxes, flips[:, None], np.full((n, 1), 32)], 1)
    batch = encoded_table(payloads, np.arange(n), ["s"] * n, np.arange(n), crop=columns)

    def fake_decode_jpeg(data, device):
        return [torch.from_numpy(decode_batch({"encoded": np.array([t.numpy().tobytes()],
                                                                   dtype=object),
                                               "label": np.zeros(1, np.int64)})["image"][0]
                                 ).permute(2, 0, 1) for t in data]

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu, "_torchvision_decode_jpeg", lambda: fake_decode_jpeg)
    images = gpu.torch_gpu_decoder("cuda")(batch).numpy()
    cpu = decode_batch(batch)["image"]
    assert images.shape == cpu.shape == (n, 32, 32, 3)
    assert np.abs(images.astype(np.int16) - cpu).mean(axis=(1, 2, 3)).max() <= 3
