"""Export a trained model: `model.keras` plus a SavedModel for serving, and the validation inputs.

The SavedModel's `serving_default` signature takes the model's training inputs by their names,
dtypes and shapes (batch dimension free) and returns the outputs by their names, so TF Serving
clients send what the model was trained on. The SavedModel is written by the build's own export
(`deploykit.intake.export.write_saved_model`), with the batch dimension left free.

`validation.npz` holds the run's validation inputs (no labels) keyed by the model's input names:
what `deploykit build --model RUN` checks and calibrates the artifacts on (deploykit/intake/run.py).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from deploykit.arrays import save_npz
from deploykit.contract import IOContract, TensorInfo
from deploykit.digests import file_sha256
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


VALIDATION_FILE = "validation.npz"


def export_validation(cfg, model, out: Path) -> dict:
    """Write up to `cfg.export_validation_rows` validation input rows to `out/validation.npz`
    (temp file + rename: a reader never sees half of it). Returns its `metrics.json` record:
    {"path", "rows", "sha256", "inputs"}, or {"path": None, "rows": 0, "reason"} when none is written."""
    from deploykit.fit.data import validation_inputs

    target = out / VALIDATION_FILE
    target.unlink(missing_ok=True)  # never leave a previous run's rows beside this run's model
    if cfg.export_validation_rows <= 0:
        return {"path": None, "rows": 0, "reason": "export_validation_rows = 0"}
    arrays = validation_inputs(cfg, model, cfg.export_validation_rows)
    kept = {}
    for name, array in arrays.items():
        if array.dtype == object:  # tf.string features come back as Python bytes
            values = array.ravel().tolist()
            if any(isinstance(v, bytes) and v.endswith(b"\0") for v in values):  # numpy 'S' would drop them
                return {"path": None, "rows": 0,
                        "reason": f"input {name!r} holds values ending in NUL bytes, which an .npz cannot keep"}
            array = np.array(values, dtype="S").reshape(array.shape) if values else array.astype("S")
        kept[name] = array
    partial = out / (VALIDATION_FILE + ".partial")
    save_npz(partial, kept)
    os.replace(partial, target)
    return {"path": str(target), "rows": int(len(next(iter(kept.values())))), "sha256": file_sha256(target),
            "inputs": sorted(kept)}


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
