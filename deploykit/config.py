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

DEFAULT_OUT = "deploykit-out"


@dataclass(frozen=True)
class LatencySettings:
    enabled: bool = True
    warmup: int = 20  # untimed invocations before measuring
    iterations: int = 1000  # timed single-sample invocations ...
    max_seconds: float = 10.0  # ... stopping early once this much time has been spent
    threads: int = 1  # runtime threads (1 gives the steadiest per-core figure)


@dataclass(frozen=True)
class BuildConfig:
    model: str | None = None  # path or module:function; None = the bundled example
    data: str | None = None  # .npz with one array per input name
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
    latency: LatencySettings = field(default_factory=LatencySettings)
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
    for key in ("targets", "quantize"):
        if isinstance(merged.get(key), str):
            merged[key] = tuple(s.strip() for s in merged[key].split(",") if s.strip())
        elif merged.get(key) is not None:
            merged[key] = tuple(merged[key])
    cfg = BuildConfig(**merged)
    if latency is not None:
        cfg = replace(cfg, latency=latency)
    _check(cfg)
    return cfg


def _check(cfg: BuildConfig) -> None:
    if cfg.parity_samples < 1:
        raise BadInputError("parity_samples: must be at least 1")
    if cfg.jobs < 1:
        raise BadInputError("jobs: must be at least 1")
    lat = cfg.latency
    if lat.iterations < 1 or lat.warmup < 0 or lat.max_seconds <= 0 or lat.threads < 1:
        raise BadInputError("latency: iterations and threads must be >= 1, warmup >= 0, max_seconds > 0")
    for target, variants in cfg.budgets.items():
        if not isinstance(variants, Mapping):
            raise BadInputError(f"budgets.{target}: expected a table of variants")
        for variant, metrics in variants.items():
            if not isinstance(metrics, Mapping):
                raise BadInputError(f"budgets.{target}.{variant}: expected a table of metric = limit")
