"""Export a trained model: `model.keras` plus a SavedModel for serving.

The SavedModel's `serving_default` signature takes the model's training inputs by their names,
dtypes and shapes (batch dimension free) and returns the outputs by their names, so TF Serving
clients send what the model was trained on.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from deploykit.tfenv import tensorflow


def input_specs(model) -> list:
    tf = tensorflow()
    return [tf.TensorSpec(shape=(None,) + tuple(t.shape[1:]), dtype=t.dtype, name=name)
            for name, t in zip(model.input_names, model.inputs)]


def serving_function(model):
    tf = tensorflow()
    names = list(model.input_names)
    outputs = list(model.output_names)

    @tf.function(input_signature=input_specs(model))
    def serve(*args):
        feed = args[0] if len(args) == 1 else dict(zip(names, args))
        result = model(feed, training=False)
        if not isinstance(result, (list, tuple)):
            result = [result]
        return {name: tensor for name, tensor in zip(outputs, result)}

    return serve


def export_model(model, out: Path) -> dict:
    tf = tensorflow()
    keras_path = out / "model.keras"
    saved = out / "saved_model"
    staging = out / "saved_model.partial"
    model.save(keras_path)
    shutil.rmtree(staging, ignore_errors=True)
    tf.saved_model.save(model, str(staging), signatures={"serving_default": serving_function(model)})
    shutil.rmtree(saved, ignore_errors=True)
    staging.rename(saved)  # readers never see a half-written SavedModel
    return {"keras": str(keras_path), "saved_model": str(saved), "signature": signature_of(saved)}


def signature_of(saved_model_dir: str | Path) -> dict:
    """{"inputs": {name: {dtype, shape}}, "outputs": {...}} of serving_default, read back from disk."""
    tf = tensorflow()
    loaded = tf.saved_model.load(str(saved_model_dir))
    fn = loaded.signatures["serving_default"]
    args = fn.structured_input_signature[1]
    return {
        "inputs": {k: {"dtype": v.dtype.name, "shape": v.shape.as_list()} for k, v in sorted(args.items())},
        "outputs": {k: {"dtype": v.dtype.name, "shape": v.shape.as_list()} for k, v in sorted(fn.structured_outputs.items())},
    }
