"""The model-family matrix: one small model per family and Keras flavour, with its parity data.

Used by tests/test_family_matrix.py (every target builds each of them, or refuses it in the
preflight where that is allowed) and benchmarks/families.py (the same matrix with bytes, p50 and
the worst parity metric against its budget). Architectures only: weights are seeded, nothing is
downloaded. Each factory writes the model where it is told and returns the path.

`Family.refused` names the targets that may refuse a family in the preflight (exit 2, naming the
ops): only string inputs, on TF.js, and on TFLite without `--allow-select-tf-ops`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from deploykit.tfenv import keras3, tensorflow, tf_keras

from . import models


def _lib(flavour: str):
    return tf_keras() if flavour == "tf_keras" else keras3()


def _rng(seed: int = 0):
    return np.random.default_rng(seed)


# ---- convolutional ----------------------------------------------------------------------------
def cnn_sequential(path: Path, flavour: str) -> Path:
    k = _lib(flavour)
    k.utils.set_random_seed(0)
    k.Sequential([
        k.Input((16, 16, 3)), k.layers.Conv2D(8, 3, activation="relu"), k.layers.MaxPooling2D(),
        k.layers.Conv2D(8, 3, padding="same"), k.layers.BatchNormalization(), k.layers.ReLU(),
        k.layers.GlobalAveragePooling2D(), k.layers.Dense(5, activation="softmax"),
    ]).save(path)
    return path


def application(name: str, size: int = 32):
    """`keras.applications.NAME(weights=None)` at size x size, 10 classes."""
    def make(path: Path, flavour: str) -> Path:
        k = _lib(flavour)
        k.utils.set_random_seed(0)
        getattr(k.applications, name)(weights=None, input_shape=(size, size, 3), classes=10).save(path)
        return path
    return make


def images(size: int, scale: float = 1.0):
    return lambda rows: {"x": (_rng().uniform(-1, 1, (rows, size, size, 3)) * scale).astype(np.float32)}


# ---- recurrent --------------------------------------------------------------------------------
def lstm_sequential(path: Path, flavour: str) -> Path:
    """Two stacked LSTMs (the first returns sequences), Sequential."""
    k = _lib(flavour)
    k.utils.set_random_seed(0)
    k.Sequential([k.Input((10, 4)), k.layers.LSTM(8, return_sequences=True), k.layers.LSTM(6),
                  k.layers.Dense(3)]).save(path)
    return path


def gru_sequential(path: Path, flavour: str) -> Path:
    """A bidirectional GRU returning sequences, then a GRU, Sequential."""
    k = _lib(flavour)
    k.utils.set_random_seed(0)
    k.Sequential([k.Input((10, 4)), k.layers.Bidirectional(k.layers.GRU(8, return_sequences=True)),
                  k.layers.GRU(6), k.layers.Dense(3)]).save(path)
    return path


def bidirectional(cell: str):
    def make(path: Path, flavour: str) -> Path:
        k = _lib(flavour)
        k.utils.set_random_seed(0)
        layer = {"lstm": k.layers.LSTM, "gru": k.layers.GRU}[cell]
        x = k.Input((10, 4), name="seq")
        h = k.layers.Bidirectional(layer(8, return_sequences=True))(x)
        k.Model(x, k.layers.Dense(3, name="out")(k.layers.GlobalAveragePooling1D()(h))).save(path)
        return path
    return make


def open_length_lstm(path: Path, flavour: str) -> Path:
    """An LSTM over sequences of any length: (None, 4)."""
    k = _lib(flavour)
    k.utils.set_random_seed(0)
    x = k.Input((None, 4), name="seq")
    k.Model(x, k.layers.Dense(3, name="out")(k.layers.LSTM(8)(x))).save(path)
    return path


def sequences(steps: int):
    return lambda rows: {"seq": _rng().standard_normal((rows, steps, 4)).astype(np.float32)}


# ---- attention --------------------------------------------------------------------------------
def transformer_encoder(path: Path, flavour: str) -> Path:
    """Token ids -> Embedding -> MultiHeadAttention + residual + LayerNorm -> GELU feed-forward
    + residual + LayerNorm -> pooled softmax(4)."""
    k = _lib(flavour)
    k.utils.set_random_seed(0)
    ids = k.Input((12,), dtype="int32", name="ids")
    e = k.layers.Embedding(50, 16)(ids)
    h = k.layers.LayerNormalization()(e + k.layers.MultiHeadAttention(num_heads=2, key_dim=8)(e, e))
    f = k.layers.Dense(16)(k.layers.Dense(32, activation="gelu")(h))
    h = k.layers.GlobalAveragePooling1D()(k.layers.LayerNormalization()(h + f))
    k.Model(ids, k.layers.Dense(4, activation="softmax", name="probs")(h)).save(path)
    return path


def token_ids(rows: int) -> dict:
    return {"ids": _rng().integers(0, 50, (rows, 12)).astype(np.int32)}


# ---- multi-input, multi-output ----------------------------------------------------------------
def multi_io(path: Path, flavour: str) -> Path:
    """Inputs a (6,) and b (4, 4, 1) by name; outputs score (1,) and cls (3,) by name."""
    k = _lib(flavour)
    k.utils.set_random_seed(0)
    a, b = k.Input((6,), name="a"), k.Input((4, 4, 1), name="b")
    h = k.layers.Concatenate()([a, k.layers.Flatten()(k.layers.Conv2D(2, 3)(b))])
    h = k.layers.Dense(8, activation="relu")(h)
    k.Model({"a": a, "b": b}, {"score": k.layers.Dense(1, name="score")(h),
                               "cls": k.layers.Dense(3, activation="softmax", name="cls")(h)}).save(path)
    return path


def multi_io_data(rows: int) -> dict:
    rng = _rng()
    return {"a": rng.standard_normal((rows, 6)).astype(np.float32),
            "b": rng.standard_normal((rows, 4, 4, 1)).astype(np.float32)}


# ---- strings ----------------------------------------------------------------------------------
VOCABULARY = ["the", "cat", "sat", "on", "mat", "dog"]


def text_classifier(path: Path, flavour: str) -> Path:
    """Raw text -> TextVectorization (in the model) -> Embedding -> Dense(2)."""
    k = _lib(flavour)
    k.utils.set_random_seed(0)
    text = k.Input((1,), dtype="string", name="text")
    ids = k.layers.TextVectorization(max_tokens=10, output_sequence_length=6, vocabulary=VOCABULARY)(text)
    h = k.layers.GlobalAveragePooling1D()(k.layers.Embedding(10, 4)(ids))
    k.Model(text, k.layers.Dense(2, name="out")(h)).save(path)
    return path


def texts(rows: int) -> dict:
    lines = ["the cat sat", "dog on the mat", "cat", "the the dog sat on mat", "A CAT, a Dog!"]
    return {"text": np.array([[lines[i % len(lines)]] for i in range(rows)])}


def module_saved_model(path: Path, flavour: str) -> Path:
    return models.module_saved_model(path)


def affine_data(rows: int) -> dict:
    return {"x": _rng().standard_normal((rows, 4)).astype(np.float32)}


def parse_example_saved_model(path: Path, flavour: str) -> Path:
    return models.parse_example_saved_model(path)


def examples(rows: int) -> dict:
    """Serialized tf.Example protos with a float feature x (3,) and a bytes feature tag. The tag is
    never empty: numpy 'S' arrays drop trailing NUL bytes (README: Using it, Data)."""
    tf = tensorflow()
    out = []
    for i in range(rows):
        feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=[i, 1.0, -2.0])),
                   "tag": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"ab" * (i % 3 + 1)]))}
        out.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return {"examples": np.array(out, dtype="S")}


# ---- the matrix -------------------------------------------------------------------------------
STRING_REFUSALS = ("tflite", "js")  # refused in the preflight: TFLite without Flex, TF.js


@dataclass(frozen=True)
class Family:
    name: str
    make: Callable[[Path, str], Path]
    data: Callable[[int], dict]
    flavour: str = "tf_keras"  # tf_keras, keras3 or module (a plain tf.Module SavedModel)
    folder: bool = False  # a SavedModel folder rather than a .keras file
    refused: tuple[str, ...] = ()  # targets that refuse it in the preflight without --allow-select-tf-ops
    heavy: bool = False  # an applications network: in the full matrix (DEPLOYKIT_FAMILIES=all) only
    rows: int = 8
    container: bool = False  # the serving container in the tests too (REST encodings: ints, strings, names)

    def build(self, folder: Path) -> tuple[Path, Path]:
        """(model path, data .npz) written into `folder`."""
        model = self.make(folder / (self.name if self.folder else f"{self.name}.keras"), self.flavour)
        data = folder / f"{self.name}.npz"
        np.savez(data, **self.data(self.rows))
        return model, data


FAMILIES = [
    Family("cnn_sequential_k3", cnn_sequential, images(16), "keras3"),
    Family("mobilenetv3small_tf_keras", application("MobileNetV3Small"), images(32)),
    Family("efficientnetb0_k3", application("EfficientNetB0"), images(32, 255), "keras3", heavy=True),
    Family("resnet50_tf_keras", application("ResNet50"), images(32, 255), heavy=True),
    Family("densenet121_tf_keras", application("DenseNet121"), images(32, 255), heavy=True),
    Family("lstm_sequential_k3", lstm_sequential, lambda rows: {"x": sequences(10)(rows)["seq"]}, "keras3"),
    Family("lstm_sequential_tf_keras", lstm_sequential, lambda rows: {"x": sequences(10)(rows)["seq"]}, heavy=True),
    Family("bilstm_tf_keras", bidirectional("lstm"), sequences(10)),
    Family("gru_sequential_k3", gru_sequential, lambda rows: {"x": sequences(10)(rows)["seq"]}, "keras3", heavy=True),
    Family("gru_sequential_tf_keras", gru_sequential, lambda rows: {"x": sequences(10)(rows)["seq"]}, heavy=True),
    Family("bigru_k3", bidirectional("gru"), sequences(10), "keras3"),
    Family("open_length_lstm_k3", open_length_lstm, sequences(12), "keras3"),
    Family("open_length_lstm_tf_keras", open_length_lstm, sequences(12), heavy=True),
    Family("transformer_tf_keras", transformer_encoder, token_ids, container=True),
    Family("transformer_k3", transformer_encoder, token_ids, "keras3"),
    Family("multi_io_k3", multi_io, multi_io_data, "keras3", container=True),
    Family("multi_io_tf_keras", multi_io, multi_io_data, heavy=True),
    Family("text_k3", text_classifier, texts, "keras3", refused=STRING_REFUSALS, container=True),
    Family("text_tf_keras", text_classifier, texts, refused=STRING_REFUSALS, heavy=True),
    Family("tf_module", module_saved_model, affine_data, "module", folder=True),
    Family("tf_example_parser", parse_example_saved_model, examples, "module", folder=True, refused=STRING_REFUSALS,
           container=True),
]
