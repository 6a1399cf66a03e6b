"""Model factories for the benchmarks, passed to deploykit as `benchmarks.models:FUNCTION`.

Nothing is downloaded: architectures only, with random (seeded) weights.

Why `mobilenetv2` re-estimates its BatchNormalization statistics: as built with `weights=None`,
every BN layer has moving mean 0 and variance 1 while the glorot-initialized convolutions shrink
the signal block after block. Measured here: activations fall to ~1e-11 by the last block and the
softmax is exactly 1/1000 for every input, so parity against it says nothing (float variants
match a constant; int8 outputs zeros). `mobilenetv2_raw` keeps that model for comparison.
"""
from __future__ import annotations

import numpy as np

from deploykit.tfenv import tf_keras

MOBILENETV2_SHAPE = (224, 224, 3)


def mobilenetv2_raw():
    """`tf_keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))`, seeded."""
    keras = tf_keras()
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(weights=None, input_shape=MOBILENETV2_SHAPE)


def mobilenetv2():
    """The same network with each BN layer's moving statistics set from 32 random images (seed 1,
    not the benchmark's data): activations stay near unit scale and outputs depend on the input."""
    keras = tf_keras()
    model = mobilenetv2_raw()
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0  # one training-mode pass stores the batch statistics
    model(mobilenetv2_data(32, seed=1)["images"], training=True)
    for layer, momentum in zip(norms, saved):
        layer.momentum = momentum
    return model


def mobilenetv2_data(rows: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """Calibration and parity inputs: uniform noise in [-1, 1], MobileNetV2's input range.

    Random images are a known weakness: int8/int16x8 calibration sees no real image statistics,
    and a random-weight network's near-uniform softmax makes top-1 agreement noisy.
    """
    rng = np.random.default_rng(seed)
    return {"images": rng.uniform(-1.0, 1.0, size=(rows, *MOBILENETV2_SHAPE)).astype(np.float32)}
