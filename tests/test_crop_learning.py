"""Whole images and the standard recipe against centre-crop storage, on a task whose label lives
near the image borders: a small coloured patch in a random corner of a 2:1 image gives the class;
the rest is grey noise. A centre-crop conversion keeps the middle square, which never holds the
patch: a model trained on it cannot learn the colours. Training on the whole stored images with
the random resized crop taken while decoding sees the corners.

Both models are judged on the same held-out images, each seen whole (the full frame resized to
the training size): the model files take ``uint8[N, S, S, 3]``. (A centre-crop evaluation of a
2:1 image drops the patch for either model, so it cannot tell them apart.)
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from ray_ingest.train import TrainConfig, train
from tests.helpers import jpeg_bytes, write_whole_image_shards

COLOURS = [(230, 30, 30), (30, 200, 30), (40, 60, 230), (230, 220, 30)]
H, W, PATCH, SIZE = 48, 96, 16, 32


def _image(rng: np.random.Generator, label: int) -> np.ndarray:
    grey = rng.integers(60, 200, (H, W, 1)).repeat(3, axis=2).astype(np.uint8)
    y = rng.integers(0, 3) if rng.random() < 0.5 else H - PATCH - rng.integers(0, 3)
    x = rng.integers(0, 3) if rng.random() < 0.5 else W - PATCH - rng.integers(0, 3)
    grey[y : y + PATCH, x : x + PATCH] = COLOURS[label]
    return grey


@pytest.fixture(scope="module")
def border_task(ray_session, tmp_path_factory):
    """The same images as a class-folder tree (converted with today's centre crop to 32) and as
    whole-image shards, and held-out images."""
    from ray_ingest.convert import convert

    rng = np.random.default_rng(4)
    labels = rng.integers(0, len(COLOURS), 680)
    images = [_image(rng, int(c)) for c in labels]
    src = tmp_path_factory.mktemp("border-src")
    for i, (img, c) in enumerate(zip(images[:600], labels[:600])):
        folder = src / f"c{c}"
        folder.mkdir(exist_ok=True)
        (folder / f"{i:04d}.jpg").write_bytes(jpeg_bytes(img, quality=95))
    centre = tmp_path_factory.mktemp("border-centre")
    convert(str(src), str(centre), size=SIZE, val_fraction=0.1, overwrite=True,
            show_progress=False)
    items = [(jpeg_bytes(img, quality=95), int(c)) for img, c in zip(images, labels)]
    whole = write_whole_image_shards(tmp_path_factory.mktemp("border-whole"),
                                     {"train": items[:600], "val": items[600:620]},
                                     [f"c{c}" for c in range(len(COLOURS))])
    return centre, whole, images[620:], labels[620:]


def _full_frame_accuracy(model_path: str, images, labels) -> float:
    from PIL import Image

    from ray_ingest.train.evaluate import load_model

    frames = np.stack([np.asarray(Image.fromarray(img).resize((SIZE, SIZE), Image.BILINEAR))
                       for img in images])
    return float((load_model(model_path)(frames).argmax(1) == labels).mean())


@pytest.mark.slow
@pytest.mark.torch
def test_whole_images_with_the_standard_recipe_learn_what_a_centre_crop_loses(border_task,
                                                                               tmp_path):
    pytest.importorskip("torch")
    centre, whole, held_out, labels = border_task
    scores = {}
    for name, data in (("centre", centre), ("whole", whole)):
        cfg = TrainConfig(data=str(data), framework="torch", epochs=4, batch_size=50, seed=0,
                          lr=5e-3, image_size=SIZE, storage_path=str(tmp_path / "runs"),
                          name=name, decode="consumer")
        final = train(cfg, progress=lambda s: None)
        scores[name] = _full_frame_accuracy(final["latest"]["model_path"], held_out, labels)
    # Four classes: chance is 0.25.
    assert scores["whole"] >= 0.7, scores
    assert scores["whole"] >= scores["centre"] + 0.3, scores
