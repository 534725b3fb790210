"""Keras models: a small CNN that learns the synthetic data in a few CPU epochs, and standard
Keras architectures (``weights=None``). All return logits."""

from __future__ import annotations


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
    if name == "resnet50":
        return keras.applications.ResNet50(weights=None, input_shape=(size, size, 3),
                                           classes=num_classes, classifier_activation=None)
    if name == "mobilenet_v2":
        return keras.applications.MobileNetV2(weights=None, input_shape=(size, size, 3),
                                              classes=num_classes, classifier_activation=None)
    raise ValueError(f"model {name!r} is not available for TensorFlow "
                     "(small_cnn, resnet50, mobilenet_v2)")
