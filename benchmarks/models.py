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


# ---- the ladder (benchmarks/ladder.py): tiny to large, nothing downloaded ----------------------
RESNET50_SHAPE = (224, 224, 3)
TEXT_VOCAB, TEXT_LEN = 10_000, 64
TRANSFORMER_VOCAB, TRANSFORMER_LEN, TRANSFORMER_DIM = 8_000, 64, 128


def reestimate_batchnorm(model, images: np.ndarray):
    """Set every BatchNormalization layer's moving statistics from one training-mode pass over
    `images` (the same fix as `mobilenetv2`, for any random-weight CNN); returns the model."""
    keras = tf_keras()
    norms = [layer for layer in model.submodules if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(images, training=True)
    for layer, momentum in zip(norms, saved):
        layer.momentum = momentum
    return model


def resnet50():
    """`tf_keras.applications.ResNet50(weights=None)`, 224x224x3, seeded, BN statistics re-estimated."""
    keras = tf_keras()
    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None, input_shape=RESNET50_SHAPE)
    return reestimate_batchnorm(model, mobilenetv2_data(16, seed=1)["images"])


def text_lstm():
    """Token ids (batch, 64) -> Embedding(10k, 64) -> LSTM(128) -> 4-class softmax; random weights."""
    keras = tf_keras()
    keras.utils.set_random_seed(0)
    tokens = keras.Input((TEXT_LEN,), dtype="int32", name="tokens")
    h = keras.layers.Embedding(TEXT_VOCAB, 64)(tokens)
    h = keras.layers.LSTM(128)(h)
    return keras.Model(tokens, keras.layers.Dense(4, activation="softmax", name="label")(h), name="text_lstm")


def transformer_block():
    """Token ids (batch, 64) -> Embedding(8k, 128) -> one post-norm encoder block (4-head
    self-attention, ReLU feed-forward 512) -> mean pool -> 4-class softmax; random weights."""
    keras = tf_keras()
    keras.utils.set_random_seed(0)
    tokens = keras.Input((TRANSFORMER_LEN,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(TRANSFORMER_VOCAB, TRANSFORMER_DIM)(tokens)
    attn = keras.layers.MultiHeadAttention(num_heads=4, key_dim=TRANSFORMER_DIM // 4)(x, x)
    x = keras.layers.LayerNormalization()(keras.layers.Add()([x, attn]))
    ff = keras.layers.Dense(512, activation="relu")(x)
    ff = keras.layers.Dense(TRANSFORMER_DIM)(ff)
    x = keras.layers.LayerNormalization()(keras.layers.Add()([x, ff]))
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, keras.layers.Dense(4, activation="softmax", name="label")(x), name="transformer_block")


def token_data(rows: int, vocab: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random token ids in [1, vocab): parity and calibration inputs for the text models."""
    rng = np.random.default_rng(seed)
    return {"tokens": rng.integers(1, vocab, size=(rows, length)).astype(np.int32)}
