"""Load a model source into one `LoadedModel`: a named-dict callable plus its I/O contract.

Routing: tf_keras files load with tf_keras (safe mode on); Keras 3 `.keras` files load with Keras 3
(tf_keras cannot read them); SavedModel folders load as graphs with `tf.saved_model.load`;
`module:function` is imported and called. Every later step sees the same interface. The security
policy (`policy.vet`) has vetted the file before any of these runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from deploykit.contract import IOContract, TensorInfo
from deploykit.errors import BadInputError, DeployKitError
from deploykit.intake import builder, export, policy
from deploykit.intake.sniff import ModelSource
from deploykit.tfenv import keras3, keras_library, tensorflow, tf_keras

OPTIMIZE_NOTE = "the optimize stage (pruning, QAT, clustering) needs a tf_keras model: pass a tf_keras .keras/.h5 file or module:function"


@dataclass
class LoadedModel:
    source: ModelSource
    contract: IOContract
    call: Callable[[dict], dict]  # dict of input tensors -> dict of output tensors (traceable)
    trackable: Any  # owns the variables (a Keras model or a loaded SavedModel)
    keras_model: Any = None  # the tf_keras model when there is one (needed by tfmot)
    findings: list[str] = field(default_factory=list)  # policy findings the user allowed

    @property
    def optimizable(self) -> bool:
        return self.keras_model is not None

    @property
    def keras_object(self) -> Any:
        """The Keras model (tf_keras or Keras 3) behind this one, or None (a SavedModel)."""
        if self.keras_model is not None:
            return self.keras_model
        keras3_file = self.source.kind in ("keras_zip", "h5") and self.source.keras == "keras3"
        return self.trackable.model if keras3_file else None  # _keras3_trackable's holder

    def predict(self, inputs: dict[str, np.ndarray], batch_size: int = 256) -> dict[str, np.ndarray]:
        tf = tensorflow()
        n = len(next(iter(inputs.values())))
        parts: dict[str, list] = {name: [] for name in self.contract.output_names}
        for start in range(0, n, batch_size):
            batch = {k: tf.constant(v[start : start + batch_size]) for k, v in inputs.items()}
            out = self.call(batch)
            for name in parts:
                parts[name].append(np.asarray(out[name]))
        return {name: np.concatenate(chunks) for name, chunks in parts.items()}

    def serving_function(self, batch: int | None = None, sample_shapes: dict | None = None):
        """A tf.function over positional tensors named after the inputs, returning a named dict
        (see `deploykit.intake.export.serving_function`; `batch` fixes the shapes)."""
        return export.serving_function(self.call, self.contract, batch, sample_shapes)

    def canonical_saved_model(self, directory: Path) -> tuple[Path, bool]:
        """(the SavedModel the converters read, whether it was exported). A SavedModel source is
        read as it is: its contract was read from its own `serving_default`, so exporting it again
        would only copy it. Anything else is exported to `directory`."""
        if self._read_as_it_is:
            return Path(self.source.location), False
        return self.export_saved_model(directory), True

    def loaded_copy(self, folder: Path) -> tuple[Path, object] | None:
        """(`folder`, its tf.saved_model.load already in memory) when `folder` is this model's SavedModel
        source read as it is (`canonical_saved_model`), so that a converter need not load it again; else None."""
        if self._read_as_it_is and Path(folder) == Path(self.source.location):
            return Path(folder), self.trackable
        return None

    @property
    def _read_as_it_is(self) -> bool:
        return self.source.kind == "saved_model" and self.keras_model is None and self.keras_object is None

    def export_saved_model(self, directory: Path, extra_signatures: dict | None = None) -> Path:
        """Write the canonical SavedModel: `serving_default` with the contract's names (and any
        `extra_signatures`, {name: tf.function})."""
        return export.write_saved_model(directory, self.trackable, self.call, self.contract, extra_signatures)


def load(source: ModelSource, allow_unsafe: bool = False) -> LoadedModel:
    findings = policy.vet(source, allow_unsafe)  # before anything reads the model with Keras or TensorFlow
    try:
        if source.kind == "callable":
            model = _from_callable(source.location)
            return _from_keras(source, model, tf_keras_model=True, findings=findings)
        if source.kind == "saved_model":
            return _from_saved_model(source, findings)
        if source.keras == "keras3":
            return _from_keras(source, _load_keras3(source.location, allow_unsafe), tf_keras_model=False, findings=findings)
        return _from_keras(source, _load_tf_keras(source.location, allow_unsafe), tf_keras_model=True, findings=findings)
    except DeployKitError:
        raise
    except Exception as exc:  # Keras raises bare ValueError/TypeError/KeyError for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInputError(f"{source.location}: could not load the model ({first[:300]})") from exc


def _load_tf_keras(path: str, allow_unsafe: bool):
    keras = tf_keras()
    if path.endswith((".h5", ".hdf5")):
        # tf_keras' HDF5 loader has no safe mode; policy.vet vetted the config above.
        return keras.models.load_model(path, compile=False)
    return keras.models.load_model(path, compile=False, safe_mode=not allow_unsafe)


def _load_keras3(path: str, allow_unsafe: bool):
    keras = keras3()
    return keras.saving.load_model(path, compile=False, safe_mode=not allow_unsafe)


def _from_callable(spec: str):
    model = builder.call(spec)
    if not isinstance(model, tf_keras().Model):
        raise BadInputError(f"{spec}: returned {type(model).__name__}, expected a tf_keras.Model")
    return model


def _dtype_name(dtype) -> str:
    tf = tensorflow()
    return tf.as_dtype(dtype).name


def _shape(shape) -> tuple:
    return tuple(None if d is None else int(d) for d in shape)


def _from_keras(source: ModelSource, model, *, tf_keras_model: bool, findings: list[str]) -> LoadedModel:
    contract, call = keras_interface(model)
    return LoadedModel(
        source=source,
        contract=contract,
        call=call,
        trackable=model if tf_keras_model else _keras3_trackable(model),
        keras_model=model if tf_keras_model else None,
        findings=findings,
    )


def from_keras_object(source: ModelSource, model) -> LoadedModel:
    """A LoadedModel for a Keras model object made in this process (tf_keras or Keras 3)."""
    return _from_keras(source, model, tf_keras_model=keras_library(model) == "tf_keras", findings=[])


def keras_interface(model) -> tuple[IOContract, Callable[[dict], dict]]:
    """A Keras model's contract (inputs and outputs by their layer names) and its named-dict call
    (tf_keras or Keras 3; traceable, inference mode)."""
    inputs = tuple(
        TensorInfo(_input_name(t), _dtype_name(t.dtype), _shape(t.shape)) for t in model.inputs
    )
    output_names = _output_names(model)
    out_tensors = model.outputs
    if isinstance(getattr(model, "output", None), dict):  # Keras 3 dict outputs: keys are the names
        output_names = list(model.output.keys())
        out_tensors = list(model.output.values())
    outputs = tuple(
        TensorInfo(n, _dtype_name(t.dtype), _shape(t.shape)) for n, t in zip(output_names, out_tensors)
    )
    names = [t.name for t in inputs]
    single = len(names) == 1

    def call(feed: dict) -> dict:
        result = model(feed[names[0]] if single else dict(feed), training=False)
        if isinstance(result, dict):
            return {n: result[n] for n in output_names}
        if isinstance(result, (list, tuple)):
            return dict(zip(output_names, result))
        return {output_names[0]: result}

    return IOContract(inputs, outputs), call


def _keras3_trackable(model):
    """A Keras 3 model is not a tf.Module: TensorFlow's savers and the TFLite converter do not see
    its variables through it (unsaved or unfrozen weights: garbage outputs, or READ_VARIABLE
    failing in LiteRT). Wrap it with the underlying tf.Variables tracked, as `model.export` does."""
    tf = tensorflow()
    holder = tf.Module()
    holder.model = model
    holder.tf_variables = [v.value for v in model.variables]
    return holder


def _input_name(tensor) -> str:
    layer = _layer_of(tensor)
    if layer is not None and tensor.name.startswith("keras_tensor"):  # Keras 3 Sequential: the InputLayer's name
        return layer
    return tensor.name.split(":")[0]


def _output_names(model) -> list[str]:
    """tf_keras and Keras 3 functional models name their outputs; a Keras 3 `Sequential` has no
    `output_names`: its outputs are named after the layers that produce them."""
    names = getattr(model, "output_names", None)
    if names:
        return list(names)
    return [_layer_of(t) or t.name.split(":")[0] for t in model.outputs]


def _layer_of(tensor) -> str | None:
    history = getattr(tensor, "_keras_history", None)
    op = getattr(history, "operation", None) or (history[0] if history else None)
    return getattr(op, "name", None)


def _from_saved_model(source: ModelSource, findings: list[str]) -> LoadedModel:
    tf = tensorflow()
    try:
        loaded = tf.saved_model.load(source.location)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInputError(f"{source.location}: unreadable SavedModel ({first[:300]})") from None
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        have = ", ".join(loaded.signatures.keys()) or "none"
        raise BadInputError(f"{source.location}: SavedModel has no 'serving_default' signature (has: {have})")
    in_specs = signature.structured_input_signature[1]
    out_specs = signature.structured_outputs
    inputs = tuple(TensorInfo(n, s.dtype.name, _shape(s.shape)) for n, s in sorted(in_specs.items()))
    outputs = tuple(TensorInfo(n, s.dtype.name, _shape(s.shape)) for n, s in sorted(out_specs.items()))

    def call(feed: dict) -> dict:
        return signature(**feed)

    return LoadedModel(source, IOContract(inputs, outputs), call, loaded, None, findings)
