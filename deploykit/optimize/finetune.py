"""Labelled data, loss and the fine-tuning loop every optimization technique shares.

Data: the bundled example's digits training split (validation split for the task metric); for user
models an `.npz` (`optimize.data`, else `--data`) holding one array per model input plus labels under
`optimize.labels_key` (default `y`); its last `validation_split` rows are held out for the metric.
Fine-tuning runs inside the fit stage's strategy scope (`deploykit.fit.strategy.make_strategy`):
the model is cloned and wrapped inside that scope, which pruning needs under a distributed strategy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploykit.arrays import read_npz
from deploykit.errors import BadInputError
from deploykit.optimize.config import OptimizeSettings
from deploykit.tfenv import tf_keras


@dataclass
class Labelled:
    x_train: dict  # input name -> array
    y_train: np.ndarray
    x_valid: dict
    y_valid: np.ndarray
    origin: str  # where the labelled rows came from
    kind: str  # "accuracy" (integer class labels) or "loss" (mse on float targets)

    def steps(self, batch_size: int) -> int:
        return math.ceil(len(self.y_train) / batch_size)


def labelled_data(model, settings: OptimizeSettings, data_path: str | None, seed: int,
                  train_config: str | None = None) -> Labelled:
    names = model.contract.input_names
    if model.source.kind == "example" and settings.data is None:
        from deploykit.intake.example import INPUT_NAME, digits

        x_tr, y_tr, x_va, y_va = digits(seed)
        return Labelled({INPUT_NAME: x_tr}, y_tr, {INPUT_NAME: x_va}, y_va, "example: digits training/validation split", "accuracy")
    if train_config and settings.data is None and len(names) == 1:
        return _from_training_run(train_config, names[0])
    path = settings.data or data_path
    field = "optimize.data" if settings.data else "--data"
    if path is None:
        raise BadInputError(f"optimize.data: fine-tuning needs labelled data: an .npz with the model's input arrays "
                            f"and labels under '{settings.labels_key}'")
    from deploykit.intake.data import load_npz

    inputs = load_npz(path, model.contract)  # checks names, shapes and dtypes against the model
    arrays = read_npz(path)
    if settings.labels_key not in arrays:
        raise BadInputError(f"{path}: {field} holds no labels array '{settings.labels_key}' "
                            f"(has: {', '.join(sorted(arrays))}; set optimize.labels_key)")
    labels = arrays[settings.labels_key]
    rows = len(next(iter(inputs.values())))
    if len(labels) != rows:
        raise BadInputError(f"{path}[{settings.labels_key}]: {len(labels)} labels for {rows} input rows")
    cut = int(rows * (1 - settings.validation_split))
    if cut < 1 or cut >= rows:
        raise BadInputError(f"{path}: {rows} row(s) cannot be split into training and validation rows")
    kind = "accuracy" if np.issubdtype(labels.dtype, np.integer) else "loss"
    x_tr = {n: inputs[n][:cut] for n in names}
    x_va = {n: inputs[n][cut:] for n in names}
    return Labelled(x_tr, labels[:cut], x_va, labels[cut:], f"{field} {Path(path).name} (labels '{settings.labels_key}')", kind)


def _from_training_run(train_config: str, name: str) -> Labelled:
    """The fit stage's own split of its dataset (the bundled digits or an `.npz` with x/y)."""
    from deploykit.fit.config import load_train_config
    from deploykit.fit.data import _arrays

    tcfg = load_train_config(train_config)
    if tcfg.dataset is not None and not str(tcfg.dataset).endswith(".npz"):
        raise BadInputError(f"optimize.data: the training run's dataset {tcfg.dataset} is not an .npz; give the "
                            "labelled rows as optimize.data")
    x_tr, y_tr, x_va, y_va = _arrays(tcfg)
    kind = "accuracy" if np.issubdtype(np.asarray(y_tr).dtype, np.integer) else "loss"
    return Labelled({name: x_tr}, y_tr, {name: x_va}, y_va, f"training run: {tcfg.dataset or 'digits'} split", kind)


def feed(keras_model, x: dict):
    """Inputs in the form the Keras model takes: one array, or a list in the model's input order."""
    if len(keras_model.inputs) == 1:
        return next(iter(x.values()))
    return [x[t.name.split(":")[0]] for t in keras_model.inputs]


def task_metric(keras_model, data: Labelled) -> float:
    pred = keras_model.predict(feed(keras_model, data.x_valid), batch_size=256, verbose=0)
    return metric_of(pred, data.y_valid, data.kind)


def metric_of(pred, labels: np.ndarray, kind: str) -> float:
    pred = np.asarray(pred if not isinstance(pred, (list, tuple)) else pred[0], dtype=np.float64)
    if kind == "accuracy":
        return float(np.mean(np.argmax(pred.reshape(len(labels), -1), axis=-1) == labels.reshape(-1)))
    return float(np.mean((pred.reshape(labels.shape) - labels) ** 2))


def worse_by(before: float, after: float, kind: str) -> float:
    """How much worse `after` is: accuracy points lost, or loss gained."""
    return before - after if kind == "accuracy" else after - before


def loss_for(keras_model, data: Labelled, settings: OptimizeSettings):
    keras = tf_keras()
    if settings.loss != "auto":
        try:
            return keras.losses.get(settings.loss)
        except ValueError:
            raise BadInputError(f"optimize.loss: unknown Keras loss {settings.loss!r}") from None
    if data.kind == "loss":
        return keras.losses.MeanSquaredError()
    sample = np.asarray(keras_model.predict(feed(keras_model, {k: v[:32] for k, v in data.x_train.items()}), verbose=0))
    probabilities = sample.min() >= 0 and np.allclose(sample.sum(axis=-1), 1.0, atol=1e-3)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=not probabilities)


def strategy_for(name: str):
    from deploykit.fit.strategy import make_strategy

    return make_strategy(name)


def copy_in_scope(keras_model, strategy):
    """A copy of the model (fresh layers, same weights) built inside `strategy.scope()`; the caller
    wraps its layers inside the same scope. The original model is never modified."""
    keras = tf_keras()
    with strategy.scope():
        try:
            copy = keras.models.clone_model(keras_model)
        except (ValueError, TypeError, NotImplementedError) as exc:
            raise BadInputError(f"optimize: cannot clone the model to wrap its layers ({str(exc)[:200]}); "
                                "functional and Sequential tf_keras models are supported") from None
        copy.set_weights(keras_model.get_weights())
    return copy


def plain_copy(keras_model):
    """The stripped model rebuilt outside any strategy scope (plain variables for export)."""
    keras = tf_keras()
    copy = keras.models.clone_model(keras_model)
    copy.set_weights(keras_model.get_weights())
    return copy


def fit(keras_model, data: Labelled, settings: OptimizeSettings, strategy, loss, callbacks=()) -> dict:
    """Compile (inside the strategy scope) and fine-tune; returns the last epoch's logs."""
    keras = tf_keras()
    with strategy.scope():
        keras_model.compile(optimizer=keras.optimizers.Adam(settings.learning_rate), loss=loss)
    history = keras_model.fit(feed(keras_model, data.x_train), data.y_train, epochs=settings.epochs,
                              batch_size=settings.batch_size, callbacks=list(callbacks), verbose=0, shuffle=True)
    return {k: float(v[-1]) for k, v in history.history.items()}


def wrappable(layer, skip, registry) -> bool:
    """Whether a tfmot registry (PruneRegistry, ClusteringRegistry) can wrap this layer's weights."""
    if layer.name in skip or not layer.trainable_weights:
        return False
    if not registry.supports(layer):
        return False
    try:
        return bool(registry._weight_names(layer))
    except KeyError:  # recurrent and attention layers: tfmot looks their weights up itself
        return True
