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

    The root object is a tf.Module holding `serving_default`'s function as `serve` and each extra
    signature's function under the signature's name. When the signatures capture nothing but
    variables, the root holds those variables (`captured_variables`) and not the model: the model's
    object graph would save its every layer's functions again (a Keras model's, or the restored ones
    of a loaded SavedModel), and every load would revive them, which a server never calls
    (MobileNetV2: save 3.0 s -> 1.4 s, load 3.1 s -> 1.3 s). Anything else captured (a lookup table,
    an asset) is tracked by the model, so then the root holds the model as `model`.
    """
    tf = tensorflow()
    serve = serving_function(call, contract)
    functions = {"serve": serve}
    signatures = {DEFAULT_SIGNATURE: serve.get_concrete_function()}
    for name, fn in (extra_signatures or {}).items():
        if name in signatures or name in ("model", "serve", "captured_variables"):
            raise ValueError(f"signature name {name!r} is taken")
        functions[name] = fn
        signatures[name] = fn.get_concrete_function()
    module = tf.Module()
    variables = _only_variables(signatures.values())
    if variables is None:
        module.model = trackable
    else:
        module.captured_variables = variables
    for name, fn in functions.items():
        setattr(module, name, fn)
    tf.saved_model.save(module, str(directory), signatures=signatures)
    return Path(directory)


def _only_variables(concrete_functions) -> list | None:
    """The variables these functions capture, when every captured tensor is one of their handles;
    None when they capture anything else."""
    variables, handles = [], set()
    for fn in concrete_functions:
        for v in fn.variables:
            if id(v.handle) not in handles:
                handles.add(id(v.handle))
                variables.append(v)
    for fn in concrete_functions:
        if any(id(t) not in handles for t in fn.captured_inputs):
            return None
    return variables
