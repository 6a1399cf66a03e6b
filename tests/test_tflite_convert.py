"""The TFLite target's conversion loads each SavedModel folder once (tflite/target.py:
_one_load_per_folder): TFLite's from_saved_model and convert() each load it with tf.saved_model.load,
besides the C++ import the conversion uses. The flatbuffer is the one the converter makes on its own."""
from __future__ import annotations

from . import models


def test_each_saved_model_is_loaded_once_and_the_flatbuffer_is_the_converters_own(tf, tmp_path):
    from tensorflow.lite.python import lite

    from deploykit.targets.tflite.target import _one_load_per_folder

    folder = models.tf_keras_saved_model(tmp_path / "model")
    plain = tf.lite.TFLiteConverter.from_saved_model(str(folder)).convert()  # as upstream does it: two loads

    calls, real = [], lite._load
    lite._load = lambda saved_model_dir, tags=None: calls.append(saved_model_dir) or real(saved_model_dir, tags)
    try:
        loaded: dict = {}
        with _one_load_per_folder(loaded):
            once = tf.lite.TFLiteConverter.from_saved_model(str(folder)).convert()
        assert len(calls) == 1 and list(loaded) == [folder]
        calls.clear()
        with _one_load_per_folder(loaded):  # the folder is loaded already (as the intake's copy of a source is)
            again = tf.lite.TFLiteConverter.from_saved_model(str(folder)).convert()
        assert calls == []
    finally:
        lite._load = real
    assert lite._load is real
    assert once == plain and again == plain
