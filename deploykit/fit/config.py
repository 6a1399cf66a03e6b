"""Training settings as one frozen dataclass, read from a TOML or YAML file.

The file holds either a `[train]` table or top-level keys. Unknown keys and wrong types go through
`deploykit.settings`, like every other settings table; every bad field raises `BadInputError`
naming the field, before any TensorFlow work starts. Workers launched by
`--local-workers` receive the resolved settings as JSON (`TrainConfig.to_json`), so every process
of a job trains with exactly the same settings.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from deploykit import settings as loader
from deploykit.errors import BadInputError

STRATEGIES = ("none", "one_device", "mirrored", "multi_worker", "parameter_server")
SHARD_POLICIES = ("data", "file", "auto", "off")
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adagrad", "adamw", "nadam")
_ENTRY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class TrainConfig:
    model: str | None = None  # module:function returning a tf_keras model; None = the bundled example
    dataset: str | None = None  # FILE.npz (x, y[, x_valid, y_valid]), TFRecord files (glob), or module:function
    valid_dataset: str | None = None  # TFRecord files (glob) for validation; None: every k-th record of `dataset`
    features: Mapping[str, Mapping[str, Any]] | None = None  # TFRecord feature spec: name -> {shape, dtype}
    label: str = "label"  # the TFRecord feature that is the label
    loss: str = "sparse_categorical_crossentropy"
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    metrics: tuple[str, ...] = ("accuracy",)
    epochs: int = 5
    steps_per_epoch: int | None = None  # None: one pass over the training arrays (npz / example)
    validation_steps: int | None = None
    batch_size: int = 64  # global; each replica gets batch_size / replicas
    validation_split: float = 0.2  # npz without x_valid/y_valid
    seed: int = 0
    strategy: str = "mirrored"
    shard_policy: str = "data"  # tf.data auto-shard policy across workers, stated rather than guessed
    monitor: str = "val_accuracy"  # best checkpoint and early stopping watch this
    early_stopping_patience: int = 0  # 0 = no early stopping
    backup: bool | None = None  # BackupAndRestore; None = on for multi_worker / parameter_server
    tensorboard: bool = True
    num_ps: int = 1  # parameter servers started by --local-workers for parameter_server
    image: str = "deploykit:latest"  # container image named in the emitted TFJob manifests
    # validation input rows the chief writes to RUN/validation.npz: the parity and calibration data of
    # `deploykit build --model RUN` (0: none are written, and that build generates its inputs)
    export_validation_rows: int = 1000

    @property
    def backup_enabled(self) -> bool:
        if self.backup is None:
            return self.strategy in ("multi_worker", "parameter_server")
        return self.backup

    @property
    def distributed(self) -> bool:
        return self.strategy in ("multi_worker", "parameter_server")

    def to_json(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BadInputError(f"{path}: config file not found")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        text = path.read_text(encoding="utf-8")
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise BadInputError(f"{path}: not valid YAML ({exc})") from None
    elif path.suffix == ".json":
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{path}: not valid JSON ({exc})") from None
    else:
        data = loader.read_toml(path)
    if not isinstance(data, Mapping):
        raise BadInputError(f"{path}: expected a table of settings")
    train = data.get("train", data)
    if not isinstance(train, Mapping):
        raise BadInputError(f"{path}: train: expected a table of settings")
    return dict(train)


def load_train_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults < file < overrides (None means "not given"). Relative paths resolve against the file."""
    settings: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        p = Path(path)
        settings = _read(p)
        base = p.resolve().parent
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return make_train_config(settings, base=base)


def make_train_config(settings: Mapping[str, Any], base: Path | None = None) -> TrainConfig:
    """Checked settings: unknown keys and types through the one settings loader, then the values."""
    loader.check_keys(settings, loader.known_keys(TrainConfig), "train")
    merged = dict(settings)
    for key in ("dataset", "valid_dataset"):
        ds = merged.get(key)
        if isinstance(ds, str) and not _ENTRY.match(ds) and base is not None:
            merged[key] = str((base / ds).resolve()) if not Path(ds).is_absolute() else ds
    cfg = loader.from_table(TrainConfig, merged, "")  # errors name the bare field, as the checks below do
    _check(cfg)
    return cfg


def _check(cfg: TrainConfig) -> None:
    if cfg.strategy not in STRATEGIES:
        raise BadInputError(f"strategy: unknown strategy {cfg.strategy!r} (choose from {', '.join(STRATEGIES)})")
    if cfg.shard_policy not in SHARD_POLICIES:
        raise BadInputError(f"shard_policy: unknown policy {cfg.shard_policy!r} (choose from {', '.join(SHARD_POLICIES)})")
    if cfg.optimizer.lower() not in OPTIMIZERS:
        raise BadInputError(f"optimizer: unknown optimizer {cfg.optimizer!r} (choose from {', '.join(OPTIMIZERS)})")
    if cfg.model is not None and not _ENTRY.match(cfg.model):
        raise BadInputError(f"model: expected module:function, got {cfg.model!r}")
    if cfg.dataset is not None and not _ENTRY.match(cfg.dataset):
        if is_tfrecord(cfg.dataset):
            _check_tfrecord(cfg)
        elif not cfg.dataset.endswith(".npz"):
            raise BadInputError(f"dataset: expected FILE.npz, TFRecord files (*.tfrecord) or module:function, got {cfg.dataset!r}")
        elif not Path(cfg.dataset).is_file():
            raise BadInputError(f"dataset: file not found: {cfg.dataset}")
    if cfg.epochs < 1:
        raise BadInputError("epochs: must be at least 1")
    if cfg.batch_size < 1:
        raise BadInputError("batch_size: must be at least 1")
    if cfg.steps_per_epoch is not None and cfg.steps_per_epoch < 1:
        raise BadInputError("steps_per_epoch: must be at least 1")
    if cfg.learning_rate <= 0:
        raise BadInputError("learning_rate: must be positive")
    if not 0 < cfg.validation_split < 1:
        raise BadInputError("validation_split: must be between 0 and 1")
    if cfg.num_ps < 1:
        raise BadInputError("num_ps: must be at least 1")
    if cfg.early_stopping_patience < 0:
        raise BadInputError("early_stopping_patience: must be >= 0")
    if cfg.export_validation_rows < 0:
        raise BadInputError("export_validation_rows: must be >= 0 (0 writes no validation.npz)")


TFRECORD_DTYPES = ("float32", "int64", "string")


def is_tfrecord(dataset: str | None) -> bool:
    return bool(dataset) and ".tfrecord" in Path(dataset).name


def _check_tfrecord(cfg: TrainConfig) -> None:
    """TFRecord files need a feature spec naming each feature's shape and dtype, and the label."""
    import glob

    for key in ("dataset", "valid_dataset"):
        pattern = getattr(cfg, key)
        if pattern is not None and not glob.glob(pattern):
            raise BadInputError(f"{key}: no TFRecord files match {pattern}")
    if not cfg.features:
        raise BadInputError("features: TFRecord datasets need a feature spec (name = {shape = [...], dtype = ...})")
    for name, spec in cfg.features.items():
        if not isinstance(spec, Mapping) or set(spec) - {"shape", "dtype"} or "dtype" not in spec:
            raise BadInputError(f"features.{name}: expected {{shape = [...], dtype = ...}}, got {spec!r}")
        if spec["dtype"] not in TFRECORD_DTYPES:
            raise BadInputError(f"features.{name}.dtype: expected one of {', '.join(TFRECORD_DTYPES)}, got {spec['dtype']!r}")
        shape = spec.get("shape", [])
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise BadInputError(f"features.{name}.shape: expected a list of positive whole numbers, got {shape!r}")
    if cfg.label not in cfg.features:
        raise BadInputError(f"label: {cfg.label!r} is not one of the features ({', '.join(cfg.features)})")
    if len(cfg.features) < 2:
        raise BadInputError("features: besides the label, at least one input feature is needed")
