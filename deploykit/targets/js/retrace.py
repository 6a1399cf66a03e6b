"""Re-trace a Keras model into ops every TF.js backend runs: recurrent layers unrolled, einsum as
matrix products.

Two things in a Keras graph TF.js handles badly, both fixed by tracing the same model differently
(the weights and the arithmetic stay; parity in every TF.js backend proves the result, like the op
rewrites in rewrite.py):

- **Recurrent layers** (LSTM, GRU, SimpleRNN, also inside `Bidirectional`) export as `while`
  loops. TF.js runs control flow only through `executeAsync`, slowly, and the loop body's fused
  ops are kernels the wasm backend lacks. With `unroll=True` Keras builds the step once per time
  step instead. Only layers with a fixed number of time steps can be unrolled (Keras refuses
  otherwise); a model with an open sequence length keeps its loop.
- **Einsum** (MultiHeadAttention, EinsumDense) has no kernel in TF.js's wasm backend. TensorFlow
  still ships its earlier einsum, which builds the contraction from Transpose, Reshape and
  (Batch)MatMul: tracing with it gives the same products without the Einsum op.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any

UNROLLED = "the recurrent layers unrolled (Keras unroll=True): one step per time step, same weights"
EINSUM = "einsum traced as Transpose/Reshape/BatchMatMul (TensorFlow's earlier einsum, special_math_ops._einsum_v1)"
RECURRENT = ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional")


def unrolled(keras_model: Any) -> tuple[Any, int] | None:
    """(a copy of `keras_model` with its recurrent layers unrolled and the same weights, how many
    layers were unrolled), or None when it has none or they cannot be unrolled."""
    if any(None in tuple(t.shape)[1:] for t in keras_model.inputs):  # a sequence length left open
        return None
    keras = _library(keras_model)
    count = 0

    def clone(layer):
        nonlocal count
        if type(layer).__name__ not in RECURRENT:
            return layer.__class__.from_config(layer.get_config())
        config = layer.get_config()
        if type(layer).__name__ == "Bidirectional":
            for key in ("layer", "backward_layer"):
                if key in config:
                    config[key]["config"]["unroll"] = True
        else:
            config["unroll"] = True
        count += 1
        return layer.__class__.from_config(config)

    try:
        copy = keras.models.clone_model(keras_model, clone_function=clone)
        if not count:
            return None
        copy.set_weights(keras_model.get_weights())
    except (ValueError, TypeError, NotImplementedError):
        return None
    return copy, count


@contextmanager
def einsum_as_matmuls():
    """While tracing, `tf.einsum` builds Transpose/Reshape/BatchMatMul instead of an Einsum op."""
    from tensorflow.python.ops import special_math_ops as ops

    einsum_op = ops._einsum_v2

    def einsum(equation, *inputs, **kwargs):  # `optimize` (a contraction-order hint) means nothing to v1
        return ops._einsum_v1(equation, *inputs, name=kwargs.get("name"))

    ops._einsum_v2 = einsum
    try:
        yield
    finally:
        ops._einsum_v2 = einsum_op


def _library(model):
    """The Keras that built `model` (tf_keras or Keras 3)."""
    from deploykit.tfenv import keras3, keras_library, tf_keras

    return tf_keras() if keras_library(model) == "tf_keras" else keras3()
