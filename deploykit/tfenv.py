"""The one place TensorFlow is imported.

`TF_USE_LEGACY_KERAS=1` must be set before TensorFlow's first import so that `tf.keras` is
tf_keras (Keras 2), which tensorflow-model-optimization and tensorflowjs need. Every module that
needs TensorFlow calls `tensorflow()` inside a function, never at import time, so `--help` and
`deploykit targets` stay fast.
"""
from __future__ import annotations

import os
from functools import lru_cache


@lru_cache(maxsize=None)
def tensorflow():
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    # Quiet TensorFlow's C++ INFO/WARNING lines (CUDA probing among them) unless the user chose a
    # level. GPUs stay visible: hiding them is the user's call (CUDA_VISIBLE_DEVICES), not ours;
    # the CLI sends the remaining native noise to a log file (cli/nativelog.py).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import warnings

    # The int8 calibration inside the TFLite converter uses tf.lite.Interpreter, which warns that
    # it is deprecated; deploykit itself validates with LiteRT.
    warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


@lru_cache(maxsize=None)
def tf_keras():
    tensorflow()
    import tf_keras as keras

    return keras


@lru_cache(maxsize=None)
def keras3():
    """Keras 3, installed beside tf_keras; only for reading Keras 3 `.keras` files."""
    tensorflow()
    import keras

    return keras


def keras_library(obj) -> str | None:
    """"tf_keras" or "keras3" for a Keras model object, from its classes' modules (so nothing is
    imported here); None for anything else."""
    for cls in type(obj).__mro__:
        if cls.__name__ != "Model":
            continue
        root = cls.__module__.split(".")[0]
        if root == "tf_keras":
            return "tf_keras"
        if root == "keras":
            return "keras3"
    return None
