"""Write a SavedModel whose `serving_default` signature speaks the model's I/O contract.

The one export every stage uses: the build's canonical SavedModel (`LoadedModel.export_saved_model`),
a target's own SavedModel with extra signatures beside `serving_default`, and the fit stage's
exported run. `serving_default` takes the inputs as tensors named after the contract's inputs and
returns a dict keyed by the contract's output names, so clients send what the model was built on.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

from deploykit.contract import IOContract
from deploykit.tfenv import tensorflow

DEFAULT_SIGNATURE = "serving_default"


def serving_function(call: Callable[[dict], dict], contract: IOContract, batch: int | None = None,
                     sample_shapes: Mapping | None = None):
    """A tf.function over positional tensors named after the contract's inputs, returning `call`'s
    named dict.

    With `batch` set, shapes are fixed (batch and, from `sample_shapes`, any dynamic dims):
    converters lower recurrent layers to builtin ops only with static shapes.
    """
    tf = tensorflow()
    names = contract.input_names
    specs = []
    for t in contract.inputs:
        shape = list(t.shape)
        if batch is not None:
            shape[0] = batch
            if sample_shapes and t.name in sample_shapes:
                shape[1:] = sample_shapes[t.name]
        specs.append(tf.TensorSpec(shape, tf.as_dtype(t.dtype), name=t.name))

    def serve(*args):
        return call(dict(zip(names, args)))

    return tf.function(serve, input_signature=specs)


def write_saved_model(directory: str | Path, trackable, call: Callable[[dict], dict], contract: IOContract,
                      extra_signatures: Mapping | None = None) -> Path:
    """Save `trackable` (what owns the variables) with `serving_default` built from `call` and
    `contract`, plus `extra_signatures` ({signature name: tf.function with an input signature}).

    The root object is a tf.Module holding the trackable as `model`, `serving_default`'s function
    as `serve`, and each extra signature's function under the signature's name.
    """
    tf = tensorflow()
    module = tf.Module()
    module.model = trackable
    module.serve = serving_function(call, contract)
    signatures = {DEFAULT_SIGNATURE: module.serve.get_concrete_function()}
    for name, fn in (extra_signatures or {}).items():
        if name in signatures or name in ("model", "serve"):
            raise ValueError(f"signature name {name!r} is taken")
        setattr(module, name, fn)
        signatures[name] = fn.get_concrete_function()
    tf.saved_model.save(module, str(directory), signatures=signatures)
    return Path(directory)
