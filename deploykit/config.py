"""Build settings as frozen dataclasses, read from a TOML file and overridden by CLI flags.

Everything downstream receives a `BuildConfig`, never an argparse/click namespace.
"""
from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from .errors import BadInputError
from .optimize.config import OptimizeSettings, optimize_settings

DEFAULT_OUT = "deploykit-out"


@dataclass(frozen=True)
class LatencySettings:
    enabled: bool = True
    warmup: int = 20  # untimed invocations before measuring
    iterations: int = 1000  # timed single-sample invocations ...
    max_seconds: float = 10.0  # ... stopping early once this much time has been spent
    threads: int = 1  # runtime threads (1 gives the steadiest per-core figure)


@dataclass(frozen=True)
class JSSettings:
    """The TF.js target's settings: the `[js]` table of the config file, `--js-*` flags."""

    format: str = "graph"  # graph (from the SavedModel) or layers (from a tf_keras model)
    shard_bytes: int = 4 * 1024 * 1024  # weight shard size
    backends: tuple[str, ...] = ("cpu", "wasm", "chromium-wasm")  # chromium-*: the headless browser check
    quantize: tuple[str, ...] | None = None  # js variants; None = --quantize; ("auto",) = smallest that passes

    @property
    def auto(self) -> bool:
        return self.quantize is not None and "auto" in self.quantize


@dataclass(frozen=True)
class BuildConfig:
    model: str | None = None  # path or module:function; None = the bundled example
    data: str | None = None  # .npz with one array per input name
    train_config: str | None = None  # a fit-stage config (TOML/YAML): train first, then build the result
    targets: tuple[str, ...] = ("tflite",)
    quantize: tuple[str, ...] | None = None  # None = every variant of each target
    out: str = DEFAULT_OUT
    allow_unsafe_deserialization: bool = False
    allow_select_tf_ops: bool = False
    parity_samples: int = 500  # at most this many rows of the data are compared
    calibration_samples: int = 200  # at most this many rows calibrate full-integer variants
    seed: int = 0
    jobs: int = 2  # conversions and parity runs side by side
    example_epochs: int = 12
    base_image: str | None = None  # serving: FROM image (None = tensorflow/serving matching TensorFlow)
    push: str | None = None  # serving: push the image to REGISTRY/REPO:TAG after every check passed
    container: bool = True  # serving: build the image and validate through it (False: in-process only)
    latency: LatencySettings = field(default_factory=LatencySettings)
    js: JSSettings = field(default_factory=JSSettings)
    optimize: OptimizeSettings = field(default_factory=OptimizeSettings)  # pruning, QAT, clustering
    # budgets[target][variant][metric] = limit; merged over each target's defaults
    budgets: Mapping[str, Mapping[str, Mapping[str, float]]] = field(default_factory=dict)

    def config_hash(self) -> str:
        """sha256 of the settings that shape the artifacts (the output folder excluded)."""
        data = asdict(self)
        data.pop("out")
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    def to_json(self) -> dict:
        return json.loads(json.dumps(asdict(self), default=str))


_TOP_LEVEL = {f.name for f in fields(BuildConfig)}
_LATENCY = {f.name for f in fields(LatencySettings)}
_JS = {f.name for f in fields(JSSettings)}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into plain data; errors name the file and the field."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"{p}: config file not found")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{p}: not valid TOML ({exc})") from None
    build = data.get("build", data)  # either a [build] table or top-level keys
    unknown = set(build) - _TOP_LEVEL
    if unknown:
        raise BadInputError(f"{p}: unknown setting(s) {', '.join(sorted(unknown))}")
    if "latency" in build:
        bad = set(build["latency"]) - _LATENCY
        if bad:
            raise BadInputError(f"{p}: unknown [latency] setting(s) {', '.join(sorted(bad))}")
    if "js" in build:
        bad = set(build["js"]) - _JS
        if bad:
            raise BadInputError(f"{p}: unknown [js] setting(s) {', '.join(sorted(bad))} (known: {', '.join(sorted(_JS))})")
    return dict(build)


def make_config(file_settings: Mapping[str, Any] | None = None, **overrides: Any) -> BuildConfig:
    """Merge defaults < config file < explicit overrides (None means "not given")."""
    merged: dict[str, Any] = dict(file_settings or {})
    merged.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(merged) - _TOP_LEVEL
    if unknown:
        raise BadInputError(f"unknown build setting(s): {', '.join(sorted(unknown))}")
    latency = merged.pop("latency", None)
    if isinstance(latency, Mapping):
        latency = LatencySettings(**latency)
    js = merged.pop("js", None)
    if isinstance(js, Mapping):
        js = _js_settings(js)
    optimize = optimize_settings(merged.pop("optimize", None))  # unknown keys fail here, named
    for key in ("targets", "quantize"):
        if isinstance(merged.get(key), str):
            merged[key] = tuple(s.strip() for s in merged[key].split(",") if s.strip())
        elif merged.get(key) is not None:
            merged[key] = tuple(merged[key])
    cfg = BuildConfig(**merged)
    if latency is not None:
        cfg = replace(cfg, latency=latency)
    if js is not None:
        cfg = replace(cfg, js=js)
    cfg = replace(cfg, optimize=optimize)
    if optimize.qat and cfg.quantize is None:  # QAT trains for int8: build that unless --quantize says otherwise
        cfg = replace(cfg, quantize=("int8",))
    _check(cfg)
    return cfg


def _js_settings(table: Mapping[str, Any]) -> JSSettings:
    """A JSSettings from a `[js]` table or `--js-*` flags: lists may be comma-separated strings."""
    bad = set(table) - _JS
    if bad:
        raise BadInputError(f"unknown js setting(s): {', '.join(sorted(bad))} (known: {', '.join(sorted(_JS))})")
    values = dict(table)
    for key in ("backends", "quantize"):
        if isinstance(values.get(key), str):
            values[key] = tuple(s.strip() for s in values[key].split(",") if s.strip())
        elif values.get(key) is not None:
            values[key] = tuple(values[key])
    return JSSettings(**values)


def _check(cfg: BuildConfig) -> None:
    if cfg.parity_samples < 1:
        raise BadInputError("parity_samples: must be at least 1")
    if cfg.jobs < 1:
        raise BadInputError("jobs: must be at least 1")
    _check_js(cfg.js)
    lat = cfg.latency
    if lat.iterations < 1 or lat.warmup < 0 or lat.max_seconds <= 0 or lat.threads < 1:
        raise BadInputError("latency: iterations and threads must be >= 1, warmup >= 0, max_seconds > 0")
    for target, variants in cfg.budgets.items():
        if not isinstance(variants, Mapping):
            raise BadInputError(f"budgets.{target}: expected a table of variants")
        for variant, metrics in variants.items():
            if not isinstance(metrics, Mapping):
                raise BadInputError(f"budgets.{target}.{variant}: expected a table of metric = limit")


def _check_js(js: JSSettings) -> None:
    from .targets.js import BACKENDS, JSTarget  # no TensorFlow: the target imports it lazily

    if js.format not in ("graph", "layers"):
        raise BadInputError(f"js.format: expected graph or layers, got {js.format!r}")
    if not isinstance(js.shard_bytes, int) or isinstance(js.shard_bytes, bool) or js.shard_bytes < 1024:
        raise BadInputError(f"js.shard_bytes: expected a whole number of bytes >= 1024, got {js.shard_bytes!r}")
    unknown = [b for b in js.backends if b not in BACKENDS]
    if unknown or not js.backends:
        raise BadInputError(f"js.backends: unknown backend(s) {', '.join(map(str, unknown)) or '(none given)'} "
                            f"(known: {', '.join(BACKENDS)})")
    if js.quantize is not None:
        unknown = [v for v in js.quantize if v not in (*JSTarget.variants, "auto")]
        if unknown or not js.quantize:
            raise BadInputError(f"js.quantize: unknown variant(s) {', '.join(map(str, unknown)) or '(none given)'} "
                                f"(known: {', '.join(JSTarget.variants)}, or auto)")
