"""The bundled example: a small CNN and scikit-learn's digits data. The fit stage trains it
(`deploykit.fit`, mirrored strategy on CPU) when `deploykit build` runs without --model.

The digits set (1,797 8x8 images) ships inside scikit-learn, so nothing is downloaded.
"""
from __future__ import annotations

import numpy as np

from deploykit.intake.sniff import ModelSource
from deploykit.tfenv import tf_keras

SOURCE = ModelSource("example", "bundled:digits_cnn", keras="tf_keras")
INPUT_NAME = "pixels"
OUTPUT_NAME = "digit"


def digits(seed: int = 0):
    """(x_train, y_train, x_valid, y_valid): images scaled to [0, 1], shape (N, 8, 8, 1)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[..., None]
    y = bunch.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    cut = int(len(x) * 0.8)
    return x[:cut], y[:cut], x[cut:], y[cut:]


def build_model():
    keras = tf_keras()
    inputs = keras.Input((8, 8, 1), name=INPUT_NAME)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(32, 3, activation="relu")(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(64, activation="relu")(h)
    outputs = keras.layers.Dense(10, activation="softmax", name=OUTPUT_NAME)(h)
    return keras.Model(inputs, outputs, name="digits_cnn")

