"""A small SavedModel with every kind of signature TF Serving serves, for the gRPC conformance tests.

    serving_default  predict   x: float32 [-1, 3]          -> probs float32 [-1, 2], value float32 [-1, 1]
    tf_example       predict   examples: string [-1]       -> probs, value (tf.Example feature x: 3 floats)
    classify         classify  inputs: string [-1]         -> scores float32 [-1, 2], classes string [-1, 2]
    regress          regress   inputs: string [-1]         -> outputs float32 [-1, 1]

TensorFlow 2 writes every signature with the predict method; the Estimator-style methods are set in
saved_model.pb afterwards (what a TF1 Estimator export writes), so the real server and the stand-in
both route Classify and Regress to them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
LABELS = (b"neg", b"pos")
CONTRACT = {  # the manifest form (deploykit.contract.IOContract.to_json)
    "inputs": [{"name": "x", "dtype": "float32", "shape": [None, 3]}],
    "outputs": [{"name": "probs", "dtype": "float32", "shape": [None, 2]},
                {"name": "value", "dtype": "float32", "shape": [None, 1]}],
}


def data(rows: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, 3)).astype(np.float32)


def reference(x: np.ndarray) -> dict[str, np.ndarray]:
    """What every signature must answer, in numpy."""
    w = np.asarray([[0.5, -1.0], [2.0, 0.25], [-0.75, 1.5]], np.float32)
    logits = x @ w + np.asarray([0.1, -0.2], np.float32)
    e = np.exp(logits - logits.max(1, keepdims=True))
    return {"probs": (e / e.sum(1, keepdims=True)).astype(np.float32),
            "value": (x @ np.asarray([[1.0], [-2.0], [0.5]], np.float32) + 0.3).astype(np.float32)}


def examples(x: np.ndarray) -> list[bytes]:
    from tensorflow.core.example import example_pb2, feature_pb2

    out = []
    for row in x:
        feature = {"x": feature_pb2.Feature(float_list=feature_pb2.FloatList(value=row.tolist()))}
        out.append(example_pb2.Example(features=feature_pb2.Features(feature=feature)).SerializeToString())
    return out


def write(tf, directory: Path) -> Path:
    """The SavedModel at `directory` (a version folder's content)."""
    module = tf.Module()
    module.w = tf.Variable([[0.5, -1.0], [2.0, 0.25], [-0.75, 1.5]], dtype=tf.float32)
    module.b = tf.Variable([0.1, -0.2], dtype=tf.float32)
    module.v = tf.Variable([[1.0], [-2.0], [0.5]], dtype=tf.float32)

    def heads(x):
        return {"probs": tf.nn.softmax(tf.matmul(x, module.w) + module.b), "value": tf.matmul(x, module.v) + 0.3}

    def parse(serialized):
        return tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([3], tf.float32)})["x"]

    module.serve = tf.function(heads, input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    module.tf_example = tf.function(lambda examples: heads(parse(examples)),
                                    input_signature=[tf.TensorSpec([None], tf.string, name="examples")])

    def classify(inputs):
        probs = heads(parse(inputs))["probs"]
        classes = tf.tile(tf.constant([list(LABELS)]), [tf.shape(probs)[0], 1])
        return {"scores": probs, "classes": classes}

    module.classify = tf.function(classify, input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    module.regress = tf.function(lambda inputs: {"outputs": heads(parse(inputs))["value"]},
                                 input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    signatures = {"serving_default": module.serve.get_concrete_function(),
                  "tf_example": module.tf_example.get_concrete_function(),
                  "classify": module.classify.get_concrete_function(),
                  "regress": module.regress.get_concrete_function()}
    tf.saved_model.save(module, str(directory), signatures=signatures)
    set_methods(directory, {"classify": CLASSIFY_METHOD, "regress": REGRESS_METHOD})
    return directory


def set_methods(directory: Path, methods: dict[str, str]) -> None:
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(directory) / "saved_model.pb"
    saved = saved_model_pb2.SavedModel.FromString(path.read_bytes())
    for graph in saved.meta_graphs:
        for name, method in methods.items():
            graph.signature_def[name].method_name = method
    path.write_bytes(saved.SerializeToString())
