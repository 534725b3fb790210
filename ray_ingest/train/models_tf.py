"""Keras models: a small CNN that learns the synthetic data in a few CPU epochs, ResNet-18 (the
torchvision layout; Keras ships no ResNet-18) and standard Keras architectures
(``weights=None``). All return logits."""

from __future__ import annotations

from ray_ingest.errors import ConfigError


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
