"""Datasets for the fit stage: the bundled digits, an `.npz` file, or a user's `module:function`.

Each returns (train, valid, info) where train/valid are batched `tf.data.Dataset`s of (inputs, labels)
at the *global* batch size (the strategy splits them per replica), carrying the configured auto-shard
policy. `check_spec` compares the dataset's element spec with the model inputs before training.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from deploykit.arrays import read_npz
from deploykit.errors import BadInputError
from deploykit.fit.config import TrainConfig, is_tfrecord
from deploykit.fit.strategy import shard_options
from deploykit.intake import builder
from deploykit.tfenv import tensorflow


def _arrays(cfg: TrainConfig):
    if cfg.dataset is None:
        from deploykit.intake.example import digits

        return digits(cfg.seed)
    path = Path(cfg.dataset)
    try:
        arrays = read_npz(path, "dataset file")
    except BadInputError as exc:
        raise BadInputError(f"dataset: {exc.message}") from None
    if "x" not in arrays or "y" not in arrays:
        raise BadInputError(f"dataset: {path} must hold arrays 'x' and 'y' (has {', '.join(sorted(arrays)) or 'none'})")
    x, y = arrays["x"], arrays["y"]
    if len(x) != len(y):
        raise BadInputError(f"dataset: {path}: x has {len(x)} rows but y has {len(y)}")
    if "x_valid" in arrays and "y_valid" in arrays:
        return x, y, arrays["x_valid"], arrays["y_valid"]
    order = np.random.default_rng(cfg.seed).permutation(len(x))
    x, y = x[order], y[order]
    cut = int(len(x) * (1 - cfg.validation_split))
    if cut < 1 or cut >= len(x):
        raise BadInputError(f"dataset: {path}: too few rows ({len(x)}) to split off a validation set")
    return x[:cut], y[:cut], x[cut:], y[cut:]


def make_datasets(cfg: TrainConfig, input_name: str | None = None):
    """(train, valid, info); info has steps_per_epoch (None if unknown) and the number of train rows."""
    tf = tensorflow()
    options = shard_options(cfg.shard_policy)
    if cfg.dataset is not None and ":" in cfg.dataset and not cfg.dataset.endswith(".npz"):
        result = builder.call(cfg.dataset, "dataset")
        if not (isinstance(result, tuple) and len(result) == 2
                and all(isinstance(d, tf.data.Dataset) for d in result)):
            raise BadInputError(f"dataset: {cfg.dataset} must return (train, valid) tf.data.Datasets")
        train, valid = result
        return train.with_options(options), valid.with_options(options), {"steps_per_epoch": cfg.steps_per_epoch, "rows": None}
    if is_tfrecord(cfg.dataset):
        return _tfrecord_datasets(cfg, options)
    x_train, y_train, x_valid, y_valid = _arrays(cfg)
    if cfg.dataset is None:
        from deploykit.intake.example import INPUT_NAME

        input_name = INPUT_NAME
    feats_train = {input_name: x_train} if input_name else x_train
    feats_valid = {input_name: x_valid} if input_name else x_valid
    steps = cfg.steps_per_epoch or max(1, len(x_train) // cfg.batch_size)
    train = (tf.data.Dataset.from_tensor_slices((feats_train, y_train))
             .shuffle(len(x_train), seed=cfg.seed, reshuffle_each_iteration=True)
             .repeat()  # fixed steps per epoch: every worker runs the same number of steps
             .batch(cfg.batch_size, drop_remainder=True)
             .prefetch(2).with_options(options))
    valid = (tf.data.Dataset.from_tensor_slices((feats_valid, y_valid))
             .batch(cfg.batch_size).with_options(options))
    return train, valid, {"steps_per_epoch": steps, "rows": int(len(x_train)),
                          "validation_steps": cfg.validation_steps or math.ceil(len(x_valid) / cfg.batch_size)}


def feature_spec(cfg: TrainConfig) -> dict:
    """{name: tf.io.FixedLenFeature} from the config's `features` table (the label included)."""
    tf = tensorflow()
    return {name: tf.io.FixedLenFeature(list(f.get("shape", [])), tf.dtypes.as_dtype(f["dtype"]))
            for name, f in cfg.features.items()}


def _tfrecord_datasets(cfg: TrainConfig, options):
    """Serialized tf.Examples from TFRecord files, parsed with the configured feature spec.
    Without `valid_dataset`, every k-th record (k = 1 / validation_split) is held out."""
    import glob

    tf = tensorflow()
    spec = feature_spec(cfg)

    def parse(serialized):
        features = tf.io.parse_example(serialized, spec)
        return features, features.pop(cfg.label)

    def records(pattern):  # a file list, so the FILE shard policy can split whole files per worker
        return tf.data.TFRecordDataset(sorted(glob.glob(pattern)))

    train_raw = records(cfg.dataset)
    if cfg.valid_dataset:
        valid_raw = records(cfg.valid_dataset)
    else:
        k = max(2, round(1 / cfg.validation_split))
        valid_raw = train_raw.enumerate().filter(lambda i, _: i % k == 0).map(lambda _, x: x)
        train_raw = train_raw.enumerate().filter(lambda i, _: i % k != 0).map(lambda _, x: x)
    rows = None
    steps = cfg.steps_per_epoch
    if steps is None:  # one counting pass: an epoch is one pass over the training records
        rows = int(train_raw.reduce(np.int64(0), lambda n, _: n + 1).numpy())
        steps = max(1, rows // cfg.batch_size)
    train = (train_raw.shuffle(4096, seed=cfg.seed, reshuffle_each_iteration=True).repeat()
             .batch(cfg.batch_size, drop_remainder=True).map(parse).prefetch(2).with_options(options))
    valid = valid_raw.batch(cfg.batch_size).map(parse).with_options(options)
    return train, valid, {"steps_per_epoch": steps, "rows": rows, "validation_steps": cfg.validation_steps}


def check_spec(model, dataset) -> None:
    """Fail with the field named if the dataset's features do not fit the model's inputs."""
    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) >= 2):
        raise BadInputError(f"dataset: elements must be (inputs, labels) pairs, got {spec}")
    features = spec[0]
    names = list(model.input_names)
    if isinstance(features, dict):
        missing = [n for n in names if n not in features]
        if missing:
            raise BadInputError(f"dataset: features {sorted(features)} lack model input(s) {missing}")
        pairs = [(n, features[n], model.inputs[i]) for i, n in enumerate(names)]
    else:
        if len(names) != 1:
            raise BadInputError(f"dataset: the model has {len(names)} inputs {names}; give the features as a dict by name")
        pairs = [(names[0], features, model.inputs[0])]
    for name, feat, inp in pairs:
        want = tuple(inp.shape[1:])
        got = tuple(feat.shape[1:]) if feat.shape.rank is not None else None
        if got is None or len(got) != len(want) or any(w is not None and g is not None and w != g for w, g in zip(want, got)):
            raise BadInputError(f"dataset: input {name!r} has shape {tuple(feat.shape)} but the model expects (batch,) + {want}")
        if feat.dtype.is_floating != inp.dtype.is_floating:
            raise BadInputError(f"dataset: input {name!r} has dtype {feat.dtype.name} but the model expects {inp.dtype.name}")


def validation_inputs(cfg: TrainConfig, model, rows: int) -> dict[str, np.ndarray]:
    """Up to `rows` validation feature rows by model input name: the parity data of a build that
    starts from a training run (the model is checked on data it was not trained on)."""
    names = list(model.input_names)
    _, valid, _ = make_datasets(cfg, names[0] if len(names) == 1 else None)
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    taken = 0
    for features, _labels in valid:
        feats = features if isinstance(features, dict) else {names[0]: features}
        for n in names:
            chunks[n].append(np.asarray(feats[n]))
        taken += len(chunks[names[0]][-1])
        if taken >= rows:
            break
    if not taken:
        raise BadInputError(f"dataset: {cfg.dataset or 'example'} has no validation rows to check the artifacts on")
    return {n: np.concatenate(parts)[:rows] for n, parts in chunks.items()}
