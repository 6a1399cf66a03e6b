"""Export a trained model: `model.keras` plus a SavedModel for serving.

The SavedModel's `serving_default` signature takes the model's training inputs by their names,
dtypes and shapes (batch dimension free) and returns the outputs by their names, so TF Serving
clients send what the model was trained on. The SavedModel is written by the build's own export
(`deploykit.intake.export.write_saved_model`), with the batch dimension left free.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from deploykit.contract import IOContract, TensorInfo
from deploykit.intake.export import write_saved_model
from deploykit.intake.loader import keras_interface
from deploykit.tfenv import tensorflow


def export_model(model, out: Path) -> dict:
    keras_path = out / "model.keras"
    saved = out / "saved_model"
    staging = out / "saved_model.partial"
    model.save(keras_path)
    shutil.rmtree(staging, ignore_errors=True)
    contract, call = keras_interface(model)
    write_saved_model(staging, model, call, _any_batch(contract))
    shutil.rmtree(saved, ignore_errors=True)
    staging.rename(saved)  # readers never see a half-written SavedModel
    return {"keras": str(keras_path), "saved_model": str(saved), "signature": signature_of(saved)}


def _any_batch(contract: IOContract) -> IOContract:
    """Serving takes any batch size, whatever batch the model was built with."""
    inputs = tuple(TensorInfo(t.name, t.dtype, (None,) + tuple(t.sample_shape)) for t in contract.inputs)
    return IOContract(inputs, contract.outputs)


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
