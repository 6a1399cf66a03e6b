"""Build settings as frozen dataclasses, read from a TOML file and overridden by flags or keywords.

Everything downstream receives a `BuildConfig`, never a click namespace. The core settings are
declared here; each target declares its own (`Target.settings_class`, the `[NAME]` table), which
land in `BuildConfig.target_settings` and read as `cfg.NAME` (e.g. `cfg.js.backends`). Every value
goes through `deploykit.settings`, so unknown keys and wrong types are exit 2 naming the key.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from deploykit import settings as loader
from deploykit.errors import BadInputError
from deploykit.optimize.config import OptimizeSettings, optimize_settings

DEFAULT_OUT = "deploykit-out"


@dataclass(frozen=True)
class LatencySettings:
    enabled: bool = True
    warmup: int = 20  # untimed invocations before measuring
    # timed single-sample invocations until p50's and p99's 95% intervals are within the tolerances
    # (validation/latency.py: Sampling), at least min_iterations, at most iterations or max_seconds
    iterations: int = 20000
    max_seconds: float = 5.0
    min_iterations: int = 100
    p50_tolerance: float = 0.02
    p99_tolerance: float = 0.10
    threads: int = 1  # runtime threads (1 gives the steadiest per-core figure)

    def sampling(self) -> dict:
        """The stopping rule's settings, as harness requests carry them."""
        return {k: getattr(self, k) for k in ("iterations", "max_seconds", "min_iterations", "p50_tolerance",
                                              "p99_tolerance")}


@dataclass(frozen=True)
class BuildConfig:
    model: str | None = None  # path or module:function; None = the bundled example
    data: str | None = None  # .npz with one array per input name
    train_config: str | None = None  # a fit-stage config (TOML/YAML): train first, then build the result
    targets: tuple[str, ...] = ()  # () = the targets that declare themselves default (tflite)
    quantize: tuple[str, ...] | None = None  # None = every variant of each target
    out: str = DEFAULT_OUT
    allow_unsafe_deserialization: bool = False  # Keras safe mode off (Lambda layers load), still sandboxed
    trust_model: bool = False  # load and convert the model without the sandbox (workers still separate it)
    parity_samples: int = 500  # at most this many rows of the data are compared
    calibration_samples: int = 200  # at most this many rows calibrate full-integer variants
    seed: int = 0
    jobs: int = 2  # conversions and parity runs side by side
    example_epochs: int = 12
    latency: LatencySettings = field(default_factory=LatencySettings)
    optimize: OptimizeSettings = field(default_factory=OptimizeSettings)  # pruning, QAT, clustering
    # budgets[target][variant][metric] = limit; merged over each target's defaults
    budgets: Mapping[str, Mapping[str, Mapping[str, float]]] = field(default_factory=dict)
    # target name -> its settings dataclass (the [NAME] table); read as cfg.NAME
    target_settings: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:  # cfg.js, cfg.serving: a target's settings
        settings = self.__dict__.get("target_settings", {})
        if name in settings:
            return settings[name]
        raise AttributeError(f"{type(self).__name__} has no setting {name!r}")

    def settings_for(self, target: str) -> Any:
        return self.target_settings[target]

    def config_hash(self) -> str:
        """sha256 of the settings that shape the artifacts (the output folder excluded)."""
        data = self.to_json()
        data.pop("out")
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    def to_json(self) -> dict:
        """The settings as the manifest records them: core keys, then one table per target."""
        doc = asdict(self)
        doc.update(sorted(doc.pop("target_settings").items()))
        return json.loads(json.dumps(doc, default=str))


_CORE = [f.name for f in fields(BuildConfig) if f.name != "target_settings"]


def _target_classes() -> dict[str, type]:
    from deploykit.targets import loadable  # no TensorFlow: targets import it lazily

    return loadable()


def known_settings() -> list[str]:
    """Every key a build config may hold: core settings, target tables and their top-level keys."""
    keys = list(_CORE)
    for name, cls in _target_classes().items():
        keys += [name, *cls.top_level_settings]
    return keys


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into plain data; errors name the file and the field."""
    data = loader.read_toml(path)
    build = data.get("build", data)  # either a [build] table or top-level keys
    if not isinstance(build, Mapping):
        raise BadInputError(f"{path}: [build] must be a table")
    try:
        make_config(build)  # every key, type and range, named with the file
    except BadInputError as exc:
        raise BadInputError(f"{path}: {exc.message}") from None
    return dict(build)


def make_config(file_settings: Mapping[str, Any] | None = None, **overrides: Any) -> BuildConfig:
    """Merge defaults < config file < explicit overrides (None means "not given")."""
    merged: dict[str, Any] = dict(file_settings or {})
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, Mapping) and key in merged and key != "budgets":  # tables merge key by key
            if not isinstance(merged[key], Mapping):
                raise BadInputError(f"{key}: expected a table of settings, got {merged[key]!r}")
            value = {**merged[key], **value}
        merged[key] = value
    classes = _target_classes()
    loader.check_keys(merged, known_settings(), "")
    tables: dict[str, dict] = {}
    for name, cls in classes.items():  # each target's table, plus its top-level keys
        raw = merged.pop(name, None)
        if raw is not None and not isinstance(raw, Mapping):
            raise BadInputError(f"{name}: expected a table of settings, got {raw!r}")
        table = dict(raw or {})
        for key in cls.top_level_settings:
            value = merged.pop(key, None)
            if value is not None:
                table[key] = value
        tables[name] = table
    optimize = optimize_settings(merged.pop("optimize", None))  # unknown keys fail here, named
    cfg = loader.from_table(BuildConfig, merged, "", optimize=optimize)
    target_settings = {}
    for name, cls in classes.items():
        s = loader.from_table(cls.settings_class, tables[name], name)
        cls.check_settings(s)
        target_settings[name] = s
    cfg = replace(cfg, target_settings=target_settings)
    if optimize.qat and cfg.quantize is None:  # QAT trains for int8: build that unless --quantize says otherwise
        cfg = replace(cfg, quantize=("int8",))
    _check(cfg)
    return cfg


def _check(cfg: BuildConfig) -> None:
    if cfg.parity_samples < 1:
        raise BadInputError("parity_samples: must be at least 1")
    if cfg.calibration_samples < 1:
        raise BadInputError("calibration_samples: must be at least 1")
    if cfg.jobs < 1:
        raise BadInputError("jobs: must be at least 1")
    lat = cfg.latency
    if lat.iterations < 1 or lat.warmup < 0 or lat.max_seconds <= 0 or lat.threads < 1 or lat.min_iterations < 1:
        raise BadInputError("latency: iterations, min_iterations and threads must be >= 1, warmup >= 0, max_seconds > 0")
    if not (0 < lat.p50_tolerance < 1 and 0 < lat.p99_tolerance < 1):
        raise BadInputError("latency: p50_tolerance and p99_tolerance are fractions between 0 and 1 (e.g. 0.02 = +-2%)")


def budget_flags(specs: tuple[str, ...] | list[str], base: Mapping | None = None) -> dict:
    """`--budget TARGET.VARIANT.METRIC=VALUE` (repeatable) merged over `base` (the file's budgets)
    key by key. `*` as TARGET or VARIANT means every target / every variant of the target."""
    classes = _target_classes()
    if base is not None and not (isinstance(base, Mapping) and all(isinstance(v, Mapping) for v in base.values())):
        raise BadInputError(f"budgets: expected tables [budgets.TARGET.VARIANT], got {base!r}"[:300])
    merged: dict = {t: {v: dict(m) for v, m in (vs or {}).items()} for t, vs in (base or {}).items()}
    for spec in specs:
        key, sep, raw = spec.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 3 or not all(parts):
            raise BadInputError(f"--budget {spec}: expected TARGET.VARIANT.METRIC=VALUE, e.g. tflite.int8.cosine=0.98")
        target, variant, metric = parts
        try:
            value = float(raw)
        except ValueError:
            raise BadInputError(f"--budget {spec}: {raw!r} is not a number") from None
        names = list(classes) if target == "*" else [target]
        for name in names:
            if name not in classes:
                raise BadInputError(f"--budget {spec}: unknown target {name!r} (known: {', '.join(classes)})")
            variants = classes[name].variants if variant == "*" else (variant,)
            if variant != "*" and variant not in classes[name].variants:
                raise BadInputError(f"--budget {spec}: {name} has no variant {variant!r} "
                                    f"(its variants: {', '.join(classes[name].variants)})")
            for v in variants:
                merged.setdefault(name, {}).setdefault(v, {})[metric] = value
    return merged
