"""Keras models: a small CNN that learns the synthetic data in a few CPU epochs, ResNet-18 (the
torchvision layout; Keras ships no ResNet-18) and standard Keras architectures
(``weights=None``). All return logits.

:class:`InferenceModel` is a trained model's portable form: a Keras model of Keras's own layers
that takes the images as stored (``uint8[N, H, W, 3]``) and applies the evaluation transform
itself, saved as ``model.keras`` (``keras.models.load_model(path)(images)`` gives logits in any
process, without this package).
"""

from __future__ import annotations

import contextlib

from ray_ingest.augment import AugmentConfig
from ray_ingest.errors import CheckpointError, ConfigError


def build_model(name: str, num_classes: int, size: int):
    import keras
    from keras import layers

    if name == "small_cnn":
        inputs = keras.Input((size, size, 3))
        x = inputs
        for i, width in enumerate((32, 64, 128, 128)):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization(momentum=0.9)(x)
            x = layers.ReLU()(x)
            if i < 3:
                x = layers.MaxPooling2D()(x)
        x = layers.GlobalAveragePooling2D()(x)
        outputs = layers.Dense(num_classes)(x)
        return keras.Model(inputs, outputs, name="small_cnn")
    if name == "resnet18":
        return _resnet18(num_classes, size)
    if name == "resnet50":
        return keras.applications.ResNet50(weights=None, input_shape=(size, size, 3),
                                           classes=num_classes, classifier_activation=None)
    if name == "mobilenet_v2":
        return keras.applications.MobileNetV2(weights=None, input_shape=(size, size, 3),
                                              classes=num_classes, classifier_activation=None)
    raise ConfigError(f"model {name!r} is not available for TensorFlow")


def _resnet18(num_classes: int, size: int):
    import keras
    from keras import layers

    def conv_bn(x, width, kernel, stride):
        x = layers.Conv2D(width, kernel, stride, padding="same", use_bias=False)(x)
        return layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)

    inputs = keras.Input((size, size, 3))
    x = layers.ReLU()(conv_bn(inputs, 64, 7, 2))
    x = layers.MaxPooling2D(3, 2, padding="same")(x)
    for i, width in enumerate((64, 128, 256, 512)):
        for j in range(2):
            stride = 2 if (j == 0 and i > 0) else 1
            y = layers.ReLU()(conv_bn(x, width, 3, stride))
            y = conv_bn(y, width, 3, 1)
            shortcut = x if (stride == 1 and x.shape[-1] == width) else conv_bn(x, width, 1, stride)
            x = layers.ReLU()(layers.Add()([y, shortcut]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(num_classes)(x), name="resnet18")


@contextlib.contextmanager
def _global_policy(name: str):
    import keras

    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


class InferenceModel:
    """``uint8[N, H, W, 3]`` images of any size → float32 logits, around a training model.

    The evaluation transform of ``tf_ops.evaluate`` as Keras layers (normalisation as one
    per-channel ``Rescaling``, which also casts to float; then ``Resizing`` to the training size,
    bilinear with antialiasing), then the model, so that the saved file needs nothing but Keras.
    A float32 model is shared (its variables are the training model's); a mixed-precision one is
    copied into a float32 twin at each :meth:`save`."""

    def __init__(self, model, name: str, num_classes: int, aug: AugmentConfig):
        import keras
        from keras import layers

        self.trained = model
        self.base = model
        if model.dtype_policy.name != "float32":
            with _global_policy("float32"):
                self.base = build_model(name, num_classes, aug.size)
        inputs = keras.Input((None, None, 3), dtype="uint8", name="image")
        x = layers.Rescaling([1.0 / (255.0 * s) for s in aug.std],
                             [-m / s for m, s in zip(aug.mean, aug.std)], name="normalize")(inputs)
        # Resizing's call defaults to training=True, which Keras would pass on to the batch
        # normalisation layers after it whenever the model is called without ``training``.
        x = layers.Resizing(aug.size, aug.size, interpolation="bilinear", antialias=True,
                            name="resize")(x, training=False)
        self.model = keras.Model(inputs, self.base(x), name=f"{model.name}_uint8")

    def save(self, path: str) -> None:
        if self.base is not self.trained:
            self.base.set_weights(self.trained.get_weights())
        self.model.save(path)

    def load_weights(self, path: str) -> None:
        """The weights of a file written by :meth:`save`, exactly, into the training model."""
        try:
            self.model.load_weights(path)
        except ValueError as e:
            raise CheckpointError(f"{path}: its weights do not fit this model: {e}") from None
        if self.base is not self.trained:
            self.trained.set_weights(self.base.get_weights())
