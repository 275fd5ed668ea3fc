"""The original poster CNN: 64x64 RGB -> 25 sigmoid outputs, about 3.46 M parameters.

Pixels 0..255 in (uint8 or float), scaled to 0..1 by the model's first layer, so training, evaluation and serving
feed it the same arrays. A 16-filter stride-2 convolution, then three blocks of two 3x3 convolutions (32-32, 64-64,
128-128) each followed by max-pooling and dropout, then dense 1024-1024 with dropout. The original README counts the
six 3x3 convolutions.
"""
from __future__ import annotations

import keras
from keras import layers


def build_cnn(num_genres: int = 25, image_size: int = 64, dropout: float = 0.5, conv_dropout: float = 0.25) -> keras.Model:
    """Build the original poster CNN (uncompiled).

    Example:
        >>> build_cnn().count_params()  # doctest: +SKIP
        3465529
    """
    poster = keras.Input((image_size, image_size, 3), name="poster")
    x = layers.Rescaling(1 / 255, name="rescale")(poster)
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="stem")(x)
    for i, filters in enumerate((32, 64, 128), start=1):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"block{i}_conv1")(x)
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"block{i}_conv2")(x)
        x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
        x = layers.Dropout(conv_dropout, name=f"block{i}_dropout")(x)
    x = layers.Flatten(name="flatten")(x)
    for i in (1, 2):
        x = layers.Dense(1024, activation="relu", name=f"dense{i}")(x)
        x = layers.Dropout(dropout, name=f"dense{i}_dropout")(x)
    genres = layers.Dense(num_genres, activation="sigmoid", name="genres")(x)
    return keras.Model(poster, genres, name="cnn")


def with_input_scaling(model: keras.Model) -> keras.Model:
    """A CNN saved before the scaling moved into the model (it was fed pixels / 255) behind that scaling, so older
    run folders answer as they did; any other model unchanged."""
    if model.name != "cnn" or any(isinstance(layer, layers.Rescaling) for layer in model.layers):
        return model
    poster = keras.Input(model.input_shape[1:], name="poster")
    return keras.Model(poster, model(layers.Rescaling(1 / 255, name="rescale")(poster)), name="cnn")
