"""The LiteRT harness (targets/tflite/harness.py) times the call a deployment's own loop makes:
set_tensor, invoke, get_tensor on the signature's tensors, not the signature runner's Python around
them. That call must compute what the runner computes, for every input and output."""
from __future__ import annotations

import importlib.util

import numpy as np

from deploykit.targets import harness_path

from . import models


def _harness():
    spec = importlib.util.spec_from_file_location("tflite_harness", harness_path("tflite", "harness.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_timed_call_computes_what_the_signature_runner_computes(tf, tmp_path):
    from deploykit.tfenv import tf_keras

    keras = tf_keras()
    model = keras.models.load_model(models.multi_io(tmp_path / "multi_io.keras"))
    flatbuffer = tmp_path / "model.tflite"
    flatbuffer.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())

    harness = _harness()
    reference, timed = harness.Runner({"model": str(flatbuffer)}), harness.Runner({"model": str(flatbuffer)})
    data = models.multi_io_data(rows=3)
    assert timed.single_signature and sorted(timed.in_details) == ["a", "b"] and len(timed.out_details) == 2
    for row in range(3):  # a new feed each time: its tensors are sized and allocated again
        feed = timed.feed({n: data[n][row : row + 1] for n in timed.in_details})
        expected = reference.runner(**feed)
        call = timed.timed_call(feed)
        first, again = call(0), call(1)
        assert timed.runner is None
        for name, out, out_again in zip(timed.out_details, first, again):
            np.testing.assert_array_equal(out, expected[name])
            np.testing.assert_array_equal(out_again, expected[name])
