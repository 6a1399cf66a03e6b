"""String inputs (tf.string): a plain `tf.Module` SavedModel that hashes and measures text.

`--data` takes numpy string arrays (U or S, never object arrays); generated data is refused with a
message asking for `--data`; serving validates in process; TF.js refuses in the preflight (exit 2);
TFLite refuses naming the ops, or validates them with the Flex delegate.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import run_cli

pytestmark = pytest.mark.slow
WORDS = np.array(["deploy", "kit", "tensor", "flow", "lite", "serving", "a", "longer sentence here"])


@pytest.fixture(scope="module")
def text_model(tmp_path_factory, tf):
    d = tmp_path_factory.mktemp("strings")

    class Text(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            length = tf.cast(tf.strings.length(text), tf.float32)
            bucket = tf.cast(tf.strings.to_hash_bucket_fast(text, 97), tf.float32)
            return {"features": tf.stack([length, bucket / 97.0], axis=1)}

    m = Text()
    tf.saved_model.save(m, str(d / "text"), signatures={"serving_default": m.serve})
    rng = np.random.default_rng(0)
    np.savez(d / "text.npz", text=rng.choice(WORDS, 40))
    np.savez(d / "bytes.npz", text=np.char.encode(rng.choice(WORDS, 40)))
    return d


def test_generated_data_for_a_string_input_is_refused_asking_for_data(text_model, tmp_path):
    proc = run_cli("build", "--model", str(text_model / "text"), "--target", "serving", "--no-container",
                   "--no-latency", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr[-1500:]
    [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("deploykit: error:")]
    assert "'text' takes strings" in line and "--data" in line


@pytest.mark.parametrize("data", ["text.npz", "bytes.npz"])
def test_serving_validates_string_inputs_in_process(text_model, tmp_path, data):
    proc = run_cli("build", "--model", str(text_model / "text"), "--data", str(text_model / data), "--target",
                   "serving", "--no-container", "--no-latency", "--json", "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-1500:]
    [a] = json.loads(proc.stdout)["artifacts"]
    assert a["passed"] and a["parity"]["samples"] == 40
    assert a["parity"]["outputs"]["features"]["max_abs"] == 0.0


def test_js_refuses_string_inputs_in_the_preflight(text_model, tmp_path):
    proc = run_cli("build", "--model", str(text_model / "text"), "--data", str(text_model / "text.npz"),
                   "--target", "js", "--no-latency", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr[-1500:]
    [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("deploykit: error:")]
    assert "string input(s) text" in line


def test_tflite_refuses_naming_the_string_ops_unless_flex(text_model, tmp_path):
    args = ["build", "--model", str(text_model / "text"), "--data", str(text_model / "text.npz"), "--target",
            "tflite", "--quantize", "float32", "--no-latency"]
    proc = run_cli(*args, "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr[-1500:]
    [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("deploykit: error:")]
    assert "StringToHashBucketFast" in line and "--allow-select-tf-ops" in line
    flex = run_cli(*args, "--allow-select-tf-ops", "--json", "--out", str(tmp_path / "flex"))
    assert flex.returncode == 0, flex.stderr[-1500:]
    [a] = json.loads(flex.stdout)["artifacts"]
    assert a["passed"] and a["details"]["needs_flex"] is True
