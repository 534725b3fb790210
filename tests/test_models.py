"""Portable models: the files a checkpoint holds load with Keras or torch alone, take uint8 images
as stored and give the logits of the training model on its evaluation transform; the state a
checkpoint holds resumes training exactly; ``ray-ingest evaluate`` on both kinds of file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import predict_elsewhere
from ray_ingest.augment import AugmentConfig
from ray_ingest.errors import CheckpointError

AUG = AugmentConfig(size=32)
NUM_CLASSES = 5


def _stored_images(n=6, h=36, w=40, seed=0):
    """uint8 images of a stored size other than the training size (32): resized inside."""
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _assert_logits_close(got, want):
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


# ---- TensorFlow / Keras --------------------------------------------------------------------


def _keras_model(seed=0):
    import keras

    from ray_ingest.train.models_tf import build_model

    keras.utils.set_random_seed(seed)
    model = build_model("small_cnn", NUM_CLASSES, AUG.size)
    for _ in range(2):  # moving statistics away from their initial values
        model(np.random.default_rng(seed).normal(size=(8, 32, 32, 3)).astype(np.float32),
              training=True)
    return model


@pytest.mark.tf
def test_keras_model_file_takes_stored_images_and_loads_without_ray_ingest(tmp_path):
    tf = pytest.importorskip("tensorflow")
    from ray_ingest.augment import tf_ops
    from ray_ingest.train.models_tf import InferenceModel

    model = _keras_model()
    path = tmp_path / "model.keras"
    InferenceModel(model, "small_cnn", NUM_CLASSES, AUG).save(str(path))
    batches = [_stored_images(), _stored_images(1, 32, 32, seed=1)]  # a batch of one too
    want = [model(tf_ops.evaluate(tf.constant(b), AUG), training=False).numpy() for b in batches]
    # Called as a user would, without training=False: inference mode all the same.
    for got, w in zip(predict_elsewhere("tf", path, batches, tmp_path / "load"), want):
        _assert_logits_close(got, w)


@pytest.mark.tf
def test_keras_model_of_a_mixed_precision_run_is_saved_in_float32(tmp_path):
    tf = pytest.importorskip("tensorflow")
    import keras

    from ray_ingest.augment import tf_ops
    from ray_ingest.train.models_tf import InferenceModel

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = _keras_model()
        export = InferenceModel(model, "small_cnn", NUM_CLASSES, AUG)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    path = tmp_path / "model.keras"
    export.save(str(path))
    loaded = keras.models.load_model(str(path))
    assert {layer.dtype_policy.name for layer in loaded.get_layer(model.name).layers} == {"float32"}
    images = _stored_images()
    got = loaded(images).numpy()
    want = tf.cast(model(tf_ops.evaluate(tf.constant(images), AUG), training=False),
                   tf.float32).numpy()
    np.testing.assert_allclose(got, want, rtol=0.05, atol=0.05 * float(np.abs(want).max()))


@pytest.mark.tf
def test_keras_checkpoint_state_resumes_training_exactly(tmp_path):
    tf = pytest.importorskip("tensorflow")
    import keras

    from ray_ingest.train.backend_tf import load_optimizer, save_optimizer
    from ray_ingest.train.models_tf import InferenceModel

    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(8, 32, 32, 3)).astype(np.float32),
                rng.integers(0, NUM_CLASSES, 8)) for _ in range(3)]

    def setup(seed):
        model = _keras_model(seed)
        opt = keras.optimizers.AdamW(learning_rate=1e-2, weight_decay=1e-4)
        opt.build(model.trainable_variables)
        return model, opt, InferenceModel(model, "small_cnn", NUM_CLASSES, AUG)

    def step(model, opt, x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                model.trainable_variables))

    model, opt, export = setup(0)
    for x, y in batches[:2]:
        step(model, opt, x, y)
    export.save(str(tmp_path / "model.keras"))
    save_optimizer(opt, str(tmp_path / "optimizer.npz"))

    model2, opt2, export2 = setup(1)  # other initial weights
    export2.load_weights(str(tmp_path / "model.keras"))
    load_optimizer(opt2, str(tmp_path / "optimizer.npz"))
    for a, b in zip(model.get_weights() + [v.numpy() for v in opt.variables],
                    model2.get_weights() + [v.numpy() for v in opt2.variables]):
        np.testing.assert_array_equal(a, b)
    step(model, opt, *batches[2])
    step(model2, opt2, *batches[2])
    for a, b in zip(model.get_weights(), model2.get_weights()):
        np.testing.assert_array_equal(a, b)

    _, small_opt, _ = setup(2)
    small_opt = keras.optimizers.SGD()
    small_opt.build(model2.trainable_variables)
    with pytest.raises(CheckpointError, match="optimizer.npz"):
        load_optimizer(small_opt, str(tmp_path / "optimizer.npz"))


# ---- PyTorch -------------------------------------------------------------------------------


def _torch_model(seed=0):
    import torch

    from ray_ingest.train.models_torch import build_model

    torch.manual_seed(seed)
    model = build_model("small_cnn", NUM_CLASSES)
    model.train()
    with torch.no_grad():  # moving statistics away from their initial values
        model(torch.randn(8, 3, 32, 32))
    return model


@pytest.mark.torch
def test_torch_model_file_takes_stored_images_and_loads_without_ray_ingest(tmp_path):
    torch = pytest.importorskip("torch")
    from ray_ingest.augment import torch_ops
    from ray_ingest.train.models_torch import export_model

    model = _torch_model()
    path = tmp_path / "model.pt2"
    export_model(model, "small_cnn", NUM_CLASSES, AUG, str(path))
    assert model.training  # the training model is left as it was
    batches = [_stored_images(), _stored_images(1, 32, 32, seed=1)]  # a batch of one too
    with torch.no_grad():
        want = [model.eval()(torch_ops.evaluate(torch.from_numpy(b), AUG)).numpy()
                for b in batches]
    for got, w in zip(predict_elsewhere("torch", path, batches, tmp_path / "load"), want):
        _assert_logits_close(got, w)


@pytest.mark.torch
def test_torch_checkpoint_state_resumes_training_exactly(tmp_path):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from ray_ingest.train.backend_torch import load_optimizer, lr_factor, save_optimizer
    from ray_ingest.train.models_torch import export_model, load_exported_weights

    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 3, 32, 32, generator=g),
                torch.randint(0, NUM_CLASSES, (8,), generator=g)) for _ in range(3)]

    def setup(seed):
        model = _torch_model(seed)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, 2, 10))
        return model, opt, sched

    def step(model, opt, sched, x, y):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()

    model, opt, sched = setup(0)
    for x, y in batches[:2]:
        step(model, opt, sched, x, y)
    export_model(model, "small_cnn", NUM_CLASSES, AUG, str(tmp_path / "model.pt2"))
    save_optimizer(opt, sched, str(tmp_path / "optimizer.pt"))

    model2, opt2, sched2 = setup(1)  # other initial weights, a fresh schedule
    load_exported_weights(str(tmp_path / "model.pt2"), model2)
    load_optimizer(opt2, sched2, str(tmp_path / "optimizer.pt"))
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), k
    assert sched2.get_last_lr() == sched.get_last_lr()
    step(model, opt, sched, *batches[2])
    step(model2, opt2, sched2, *batches[2])
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), k

    from ray_ingest.train.models_torch import build_model

    with pytest.raises(CheckpointError, match="do not fit"):
        load_exported_weights(str(tmp_path / "model.pt2"), build_model("small_cnn", 3))


# ---- finding and naming models ------------------------------------------------------------


def _fake_checkpoint(run, name, epoch, val_accuracy, framework="tf", model_file=True):
    from ray_ingest.train.checkpoint import MODEL_FILES

    d = run / f"checkpoint_{name}"
    d.mkdir(parents=True)
    meta = {"epoch": epoch, "framework": framework, "metrics": {"val_accuracy": val_accuracy}}
    if model_file:
        meta["model_file"] = MODEL_FILES[framework]
        (d / MODEL_FILES[framework]).write_bytes(b"")
    (d / "meta.json").write_text(json.dumps(meta))
    return d


def test_best_and_latest_checkpoints_are_found_and_named(tmp_path):
    from ray_ingest.train.checkpoint import find_checkpoints, resolve_model, write_pointers

    run = tmp_path / "run"
    assert find_checkpoints(str(run)) == {"best": None, "latest": None}
    _fake_checkpoint(run, "a", 1, 0.5)
    b = _fake_checkpoint(run, "b", 2, 0.7)
    c = _fake_checkpoint(run, "c", 3, 0.7)  # ties with b: the later wins
    d = _fake_checkpoint(run, "d", 4, 0.6)
    (run / "checkpoint_e").mkdir()  # being written: no meta.json yet
    found = find_checkpoints(str(run))
    assert found["best"]["checkpoint"] == str(c) and found["best"]["epoch"] == 3
    assert found["latest"]["checkpoint"] == str(d)
    assert found["latest"]["model_path"] == str(d / "model.keras")
    write_pointers(str(run), found)
    assert json.loads((run / "best.json").read_text())["epoch"] == 3
    assert json.loads((run / "latest.json").read_text())["epoch"] == 4

    # What a user may name as the model: a run (its best), a pointer, a folder, a file.
    assert resolve_model(str(run))[0] == str(c / "model.keras")
    assert resolve_model(str(run / "latest.json"))[0] == str(d / "model.keras")
    path, meta = resolve_model(str(b))
    assert path == str(b / "model.keras") and meta["epoch"] == 2
    path, meta = resolve_model(str(b / "model.keras"))
    assert path == str(b / "model.keras") and meta["epoch"] == 2
    with pytest.raises(CheckpointError, match="no such"):
        resolve_model(str(tmp_path / "nothing"))
    with pytest.raises(CheckpointError, match="neither a checkpoint folder"):
        resolve_model(str(tmp_path))
    old = _fake_checkpoint(tmp_path / "old", "x", 1, 0.5, model_file=False)
    with pytest.raises(CheckpointError, match="older layout"):
        resolve_model(str(old))


def test_a_file_that_is_no_saved_model_is_refused_by_name(tmp_path):
    import zipfile

    from ray_ingest.train.checkpoint import detect_framework

    text = tmp_path / "notes.keras"
    text.write_text("not a model")
    with pytest.raises(CheckpointError, match="notes.keras: not a saved model"):
        detect_framework(str(text))
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("readme.txt", "x")
    with pytest.raises(CheckpointError, match="neither a Keras"):
        detect_framework(str(other))


# ---- evaluate ------------------------------------------------------------------------------


def _labels(data, split="val"):
    from ray_ingest.read.api import read_records

    return np.concatenate([b["label"] for b in read_records(str(data), split).iter_batches(
        batch_size=256, batch_format="numpy")])


def _save_constant_model(framework, folder, num_classes, predicted, class_names):
    """A checkpoint folder whose model predicts class ``predicted`` for every image (the last
    layer's weights zero, its bias one-hot), with its meta.json."""
    from ray_ingest.train.checkpoint import MODEL_FILES

    folder.mkdir(parents=True)
    path = folder / MODEL_FILES[framework]
    bias = np.zeros(num_classes, np.float32)
    bias[predicted] = 5.0
    if framework == "tf":
        from ray_ingest.train.models_tf import InferenceModel, build_model

        model = build_model("small_cnn", num_classes, AUG.size)
        dense = model.layers[-1]
        dense.set_weights([np.zeros_like(dense.get_weights()[0]), bias])
        InferenceModel(model, "small_cnn", num_classes, AUG).save(str(path))
    else:
        import torch

        from ray_ingest.train.models_torch import build_model, export_model

        model = build_model("small_cnn", num_classes)
        with torch.no_grad():
            model[-1].weight.zero_()
            model[-1].bias.copy_(torch.from_numpy(bias))
        export_model(model, "small_cnn", num_classes, AUG, str(path))
    (folder / "meta.json").write_text(json.dumps({
        "epoch": 1, "framework": framework, "model": "small_cnn",
        "model_file": MODEL_FILES[framework], "class_names": class_names}))
    return path


@pytest.mark.parametrize("framework", ["tf", "torch"])
def test_evaluate_prints_per_class_accuracy_and_writes_confusion_files(
        ray_session, converted, tmp_path, capsys, framework):
    pytest.importorskip("tensorflow" if framework == "tf" else "torch")
    from ray_ingest.cli import main
    from ray_ingest.format.manifest import read_manifest

    data = converted["jpeg"]
    names = read_manifest(str(data)).class_names
    labels = _labels(data)
    predicted = int(np.bincount(labels).argmax())
    folder = tmp_path / "checkpoint_x"
    _save_constant_model(framework, folder, len(names), predicted, names)

    assert main(["evaluate", str(data), "--model", str(folder)]) == 0
    out = capsys.readouterr().out
    accuracy = float(np.mean(labels == predicted))
    assert f"({framework})" in out and f"accuracy {accuracy:.3f}" in out, out
    for i, name in enumerate(names):  # one row per class: images, correct, accuracy
        n = int(np.sum(labels == i))
        row = next(line for line in out.splitlines() if line.split()[:1] == [name])
        assert row.split()[1:3] == [str(n), str(n if i == predicted else 0)], row
    report = json.loads((folder / "evaluation-val.json").read_text())
    confusion = np.array(report["confusion"])
    assert confusion.sum() == len(labels) and report["framework"] == framework
    np.testing.assert_array_equal(confusion[:, predicted],
                                  np.bincount(labels, minlength=len(names)))
    assert report["accuracy"] == pytest.approx(accuracy)
    png = folder / "confusion-val.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in out

    # The same checkpoint in object storage (here memory://), through the Python API.
    import uuid

    from ray_ingest import fs
    from ray_ingest.train.evaluate import evaluate

    uri = f"memory://eval-{uuid.uuid4().hex[:8]}/run/checkpoint_x"
    for f in folder.iterdir():
        fs.write_bytes(fs.join(uri, f.name), f.read_bytes())
    again = evaluate(str(data), uri, out=str(tmp_path / "from-uri"))
    assert again.model.startswith(uri) and again.accuracy == pytest.approx(accuracy)
    assert (tmp_path / "from-uri" / "evaluation-val.json").exists()


def test_evaluate_refuses_a_model_of_other_classes(ray_session, converted, tmp_path, capsys):
    pytest.importorskip("torch")
    from ray_ingest.cli import main
    from ray_ingest.format.manifest import read_manifest

    data = converted["raw"]
    names = read_manifest(str(data)).class_names
    folder = tmp_path / "checkpoint_y"
    _save_constant_model("torch", folder, len(names), 0, [f"other{i}" for i in names])
    assert main(["evaluate", str(data), "--model", str(folder)]) == 2
    assert "trained on the classes" in capsys.readouterr().err
    # Without a meta.json beside the file, the logits' width still has to fit the data.
    wrong = tmp_path / "checkpoint_z"
    _save_constant_model("torch", wrong, len(names) + 1, 0, None)
    (wrong / "meta.json").unlink()
    assert main(["evaluate", str(data), "--model", str(wrong / "model.pt2"),
                 "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err
    assert "logits of shape" in err and f"{len(names)} classes" in err, err
