"""A training run folder as a build input: `deploykit build --model RUN`.

`deploykit train --out RUN` writes `RUN/model.keras`, `RUN/validation.npz` (the run's validation
inputs by model input name) and, last, `RUN/metrics.json`. `resolve` turns `--model RUN`, or
`--model RUN/model.keras` (or `RUN/saved_model`) of such a folder, into the model to build and,
unless `--data` was given, `RUN/validation.npz` as the parity and calibration data; the manifest
records the run (`training.run_folder`, `data.origin = "training"`).

It runs in the build's own process, before the model file is sniffed, vetted and sandboxed like any
other: json only, no TensorFlow. A run folder may come from elsewhere (a CI artifact), so its files
must be regular files inside it, and `metrics.json` is read defensively: bounded size, checked
types, and a BadInputError naming the file on anything malformed. Only the fields checked here
reach the manifest.
"""
from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from deploykit.digests import file_sha256
from deploykit.errors import BadInputError, SecurityError
from deploykit.fit.config import STRATEGIES

METRICS = "metrics.json"
MODEL = "model.keras"
SAVED_MODEL = "saved_model"
VALIDATION = "validation.npz"
# A real run's metrics.json is kilobytes (a thousand epochs of history: about 1 MiB).
METRICS_MAX_BYTES = 16 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MAX_DEPTH = 8  # of the free-form tables copied into the manifest (config, launcher)


@dataclass(frozen=True)
class Run:
    """A run folder, resolved: what to build from it and what the manifest records."""

    folder: Path
    model: Path  # RUN/model.keras, or the model file the user named inside the run folder
    data: Path | None  # RUN/validation.npz when it is the build's data; None: --data, or generated
    record: dict  # the manifest's `training` section
    warning: str | None = None  # why the build's inputs are generated instead (an older run)

    def describe(self) -> str:
        """The progress line: what the build takes from the run folder."""
        if self.data is not None:
            rows = (self.record.get("validation") or {}).get("rows")
            return (f"run folder {self.folder}: building {self.model.name} with the run's validation split as parity "
                    f"and calibration data ({self.data.name}" + (f", {rows:,} rows)" if isinstance(rows, int) else ")"))
        return f"run folder {self.folder}: building {self.model.name}"


def resolve(model: str | None, data: str | None) -> Run | None:
    """The run folder `model` names (the folder itself, or its model.keras / saved_model), or None
    when `model` is not part of a run folder. `--model DIR` that is neither a SavedModel nor a run
    folder is exit 2 naming DIR and what was expected."""
    if not model:
        return None
    path = Path(model)
    if path.is_dir():
        if any(os.path.lexists(path / name) for name in ("saved_model.pb", "saved_model.pbtxt")):
            return None  # a SavedModel folder: sniff takes it from here
        if not os.path.lexists(path / METRICS):
            hint = (f"; to build the model in it, pass --model {path / MODEL}" if os.path.lexists(path / MODEL) else "")
            raise BadInputError(f"{path}: folder is not a SavedModel (no saved_model.pb) nor a deploykit run folder "
                                f"(no {METRICS} beside {MODEL}, as `deploykit train --out {path.name}` writes){hint}")
        metrics = read_metrics(path / METRICS)
        model_file = path / MODEL
        _regular(model_file, f"{path}: run folder has no {MODEL} (did the run finish exporting?)")
        return _run(path, model_file, metrics, data)
    folder = path.parent
    if path.name not in (MODEL, SAVED_MODEL) or not os.path.lexists(folder / METRICS):
        return None
    try:  # the documented `--model RUN/model.keras`: a folder that merely holds some metrics.json builds as before
        metrics = read_metrics(folder / METRICS)
    except (BadInputError, SecurityError):
        return None
    return _run(folder, path, metrics, data)


def _run(folder: Path, model: Path, metrics: dict, data: str | None) -> Run:
    validation = metrics.get("artifacts", {}).get("validation")
    record = _record(metrics)
    record["run_folder"] = str(folder)
    record["validation"] = None
    if data:  # the user's data wins; the run is still recorded
        return Run(folder, model, None, record)
    file = folder / VALIDATION
    if not os.path.lexists(file):
        if validation is None:
            why = "trained by an older deploykit"
        elif validation.get("path") is None:
            why = f"the run wrote none: {validation.get('reason') or 'no reason recorded'}"
        else:
            why = f"{METRICS} records one but it is missing"
        warning = (f"run folder {folder} has no {VALIDATION} ({why}): parity and calibration inputs are generated "
                   f"(random values, poor for int8 calibration); retrain with `deploykit train --out {folder}` "
                   "to export the validation split, or pass --data FILE.npz")
        return Run(folder, model, None, record, warning)
    _regular(file, f"{file}: not a regular file")
    digest = file_sha256(file)
    if validation is not None and validation.get("sha256") and validation["sha256"] != digest:
        raise BadInputError(f"{file}: does not match the sha256 that {folder / METRICS} records for it (not this "
                            "run's validation split); retrain, or pass --data FILE.npz to build with other data")
    record["validation"] = {"path": str(file), "rows": (validation or {}).get("rows"), "sha256": digest}
    return Run(folder, model, file, record)


def _regular(path: Path, missing: str) -> None:
    """A run folder's file is a regular file inside it: a symbolic link (to a file of the user's) is
    refused (exit 5), like one inside a SavedModel; a FIFO or device would hang the read."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise BadInputError(missing) from None
    if stat.S_ISLNK(mode):
        raise SecurityError(f"{path}: refused: is a symbolic link; a run folder's files must be inside it",
                            details={"path": str(path)})
    if not stat.S_ISREG(mode):
        raise BadInputError(f"{path}: not a regular file")


# ---- metrics.json -----------------------------------------------------------------------------------
def read_metrics(path: Path) -> dict:
    """metrics.json of a run, checked: every problem is a BadInputError naming `path`."""
    _regular(path, f"{path}: no such file")
    size = path.stat().st_size
    if size > METRICS_MAX_BYTES:
        raise BadInputError(f"{path}: {size:,} bytes, more than a run's {METRICS} can be ({METRICS_MAX_BYTES:,}); "
                            "not a deploykit run folder")
    with path.open("rb") as fh:
        raw = fh.read(METRICS_MAX_BYTES + 1)
    if len(raw) > METRICS_MAX_BYTES:  # it grew after the stat
        raise BadInputError(f"{path}: more than {METRICS_MAX_BYTES:,} bytes; not a deploykit run folder")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = str(exc).splitlines()[0][:200] if not isinstance(exc, RecursionError) else "nested too deeply"
        raise BadInputError(f"{path}: not valid JSON ({reason}); not a deploykit run's {METRICS}") from None
    if not isinstance(doc, dict):
        raise BadInputError(f"{path}: expected a JSON object, got {_kind(doc)}; not a deploykit run's {METRICS}")
    _field(path, doc, "strategy", lambda v: isinstance(v, str) and v in STRATEGIES, f"one of {', '.join(STRATEGIES)}")
    _field(path, doc, "replicas", lambda v: _int(v) and v >= 1, "a whole number >= 1")
    _field(path, doc, "epochs_completed", lambda v: _int(v) and v >= 0, "a whole number >= 0")
    _field(path, doc, "final_validation", _metrics_table, "a table of metric name -> number")
    _field(path, doc, "artifacts", lambda v: isinstance(v, dict), "a table")
    validation = doc["artifacts"].get("validation")
    if validation is not None:
        where = "artifacts.validation"
        if not isinstance(validation, dict):
            raise BadInputError(f"{path}: {where}: expected a table, got {_kind(validation)}")
        _field(path, validation, "path", lambda v: v is None or isinstance(v, str), "a string or null", where)
        _field(path, validation, "rows", lambda v: _int(v) and v >= 0, "a whole number >= 0", where)
        for key, ok, what in (("sha256", lambda v: isinstance(v, str) and _SHA256.match(v), "a sha256 hex digest"),
                              ("reason", lambda v: isinstance(v, str), "a string")):
            if key in validation:
                _field(path, validation, key, ok, what, where)
    return doc


# optional facts a run records, copied into the manifest when they have the expected type
_OPTIONAL = {
    "num_workers": lambda v: _int(v) and v >= 1,
    "global_batch_size": lambda v: _int(v) and v >= 1,
    "per_replica_batch_size": lambda v: _int(v) and v >= 1,
    "shard_policy": lambda v: isinstance(v, str) and len(v) < 64,
    "steps_per_epoch": lambda v: v is None or (_int(v) and v >= 1),
    "epochs": lambda v: _int(v) and v >= 1,
    "resumed": lambda v: isinstance(v, bool),
    "wall_time_s": lambda v: _number(v),
    "fit_time_s": lambda v: _number(v),
    "examples_per_sec": lambda v: v is None or _number(v),
    "history": lambda v: isinstance(v, list) and all(_metrics_table(h) for h in v),
    "config": lambda v: isinstance(v, dict) and _shallow(v),
    "launcher": lambda v: isinstance(v, dict) and _shallow(v),
}


def _record(doc: dict) -> dict:
    """The manifest's `training` section: the required facts, and the optional ones that check out."""
    record = {k: doc[k] for k in ("strategy", "replicas", "epochs_completed", "final_validation")}
    record.update({k: doc[k] for k, ok in _OPTIONAL.items() if k in doc and ok(doc[k])})
    return record


def _field(path: Path, table: dict, key: str, ok, what: str, where: str = "") -> None:
    name = f"{where}.{key}" if where else key
    if key not in table:
        raise BadInputError(f"{path}: {name}: missing; not a deploykit run's {METRICS}")
    if not ok(table[key]):
        raise BadInputError(f"{path}: {name}: expected {what}, got {_kind(table[key])}")


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    """A finite number (a JSON integer of any size is one; math.isfinite would overflow on it)."""
    return _int(v) or (isinstance(v, float) and math.isfinite(v))


def _metrics_table(v) -> bool:
    """{name: number}; NaN and infinity allowed (a diverged run's loss), the manifest writes them as null."""
    return isinstance(v, dict) and all(isinstance(k, str) and (_int(x) or isinstance(x, float)) for k, x in v.items())


def _shallow(v, depth: int = 0) -> bool:
    """At most _MAX_DEPTH levels of tables and lists (the manifest writer walks them recursively)."""
    if depth > _MAX_DEPTH:
        return False
    if isinstance(v, dict):
        return all(_shallow(x, depth + 1) for x in v.values())
    if isinstance(v, list):
        return all(_shallow(x, depth + 1) for x in v)
    return True


def _kind(v) -> str:
    if isinstance(v, dict):
        return "a table"
    if isinstance(v, list):
        return "a list"
    return "null" if v is None else f"{type(v).__name__} {json.dumps(v)[:60]}"
