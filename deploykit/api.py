"""The Python API: `build`, `validate`, `train`, `report` and `publish`, keyword for CLI flag.

Each function turns Python values into what its CLI command hands the stages (build settings
through `config.make_config`, then `pipeline.run`; `judge.revalidate`; `fit.api.train`;
`reporting.make`; `publishing.publish`), so the API and the CLI cannot drift apart. Keywords
carry the CLI's names (`--target` is `target=`, `--no-latency` is `latency=False`, `--js-format`
is `js_format=`).

What the CLI takes only as files the API also takes as objects: an in-memory tf_keras or Keras 3
model, and numpy arrays as data. They are saved in this process into a private temporary folder
(`_Objects`), built from, and removed afterwards. A model object is the caller's own code, trusted
like a `module:function` builder: its workers are not sandboxed unless `trust_model=False`.

Every bad argument is a `deploykit.errors` exception (never a TypeError). Nothing here imports
TensorFlow: a model object means the caller already has, and files are only read by workers.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

from deploykit.errors import BadInputError, DeployKitError
from deploykit.tfenv import keras_library

if TYPE_CHECKING:
    import numpy as np


class KerasModel(Protocol):
    """A `tf_keras.Model` or a Keras 3 `keras.Model` (functional, sequential, or a subclass that
    can be saved to `.keras`)."""

    name: str

    def save(self, filepath: str, *args: Any, **kwargs: Any) -> None: ...


# ---- build --------------------------------------------------------------------------------------
def build(
    model: str | os.PathLike | KerasModel | None = None,
    data: str | os.PathLike | np.ndarray | Mapping[str, np.ndarray] | None = None,
    *,
    target: str | Sequence[str] | None = None,
    targets: str | Sequence[str] | None = None,
    quantize: str | Sequence[str] | None = None,
    out: str | os.PathLike | None = None,
    config: str | os.PathLike | None = None,
    latency: bool | Mapping[str, Any] = True,
    budget: Mapping[str, Mapping[str, Mapping[str, float]]] | Sequence[str] | None = None,
    budgets: Mapping[str, Mapping[str, Mapping[str, float]]] | Sequence[str] | None = None,
    jobs: int | None = None,
    parity_samples: int | None = None,
    trust_model: bool | None = None,
    allow_unsafe_deserialization: bool | None = None,
    train_config: str | os.PathLike | None = None,
    prune: float | None = None,
    qat: bool | None = None,
    cluster: int | None = None,
    quiet: bool = True,
    **settings: Any,
) -> dict:
    """Build artifacts for the target(s), validate each in its own runtime, write `out`; return
    the manifest (`out/manifest.json`) as a dict. The `deploykit build` command, from Python.

    Args:
        model: a `.keras` or `.h5` file, a SavedModel folder, `"module:function"` returning a
            tf_keras model, or an in-memory tf_keras / Keras 3 model (saved to a temporary `.keras`
            file and built like one; the manifest's `source.kind` is `in_memory`). None: the
            bundled example (a small CNN trained on scikit-learn's digits).
        data: parity data and int8 calibration set: an `.npz` file, a numpy array (a single-input
            model) or a dict of input name -> array. Object arrays are refused: text must be a
            numpy string array (dtype U or S). None: inputs generated from the model's signature.
        target, targets: the target(s) to build: a name, names separated by commas (`tflite,js`),
            a list of names, or `all` (give one of the two). None: the default targets (tflite).
        quantize: variants to build, e.g. `"float32,int8"` or `["float32", "int8"]`. None: all.
        out: the output folder (default `deploykit-out`), replaced only by a build that passes.
        config: a settings file (TOML), as `--config`; the keywords override it.
        latency: False skips latency benchmarks (`--no-latency`); a mapping is the `[latency]`
            table (`warmup`, `iterations`, `max_seconds`, `threads`); True measures as the settings
            file says (by default: yes).
        budget, budgets: budgets merged over the settings file's and the defaults (give one of
            the two): a table `{TARGET: {VARIANT: {METRIC: VALUE}}}` (the settings file's
            `[budgets.TARGET.VARIANT]`), or `--budget` strings such as `tflite.int8.cosine=0.98`
            and `*.float32.max_abs_rel=1e-4` (one, or a list).
        jobs: conversions and parity runs side by side (default 2).
        parity_samples: at most this many rows of `data` are compared (default 500).
        trust_model: True runs model work without the sandbox (`--trust-model`). None: False for
            files (where bubblewrap cannot start they are refused), True for an in-memory model.
        allow_unsafe_deserialization: load models that carry code, e.g. Lambda layers (still
            sandboxed); the allow-list applies to in-memory models too, since they are saved.
        train_config: train with the fit stage first (`--train-config`), then build that model.
        prune, qat, cluster: the optimize stage (`--prune SPARSITY`, `--qat`, `--cluster N`);
            more settings in an `optimize={...}` table.
        quiet: False prints progress on stderr, as the CLI does. Warnings print either way.
        **settings: any other build setting of a settings file (`calibration_samples`, `seed`,
            `example_epochs`, a target's table such as `js={"format": "layers"}`, `base_image`,
            `allow_select_tf_ops`, ...) or a target's CLI flag by its name (`js_format="layers"`,
            `js_backends="cpu,wasm"`, `no_container=True`, ...).

    Returns:
        The manifest: `passed`, `source`, `config`, `contract`, `data`, `artifacts` (each with
        `target`, `variant`, `path`, `bytes`, `parity`, `latency`, `passed`), `files`, ...

    Raises:
        BadInputError: a bad argument, setting, model or data file (exit code 2).
        BudgetError: an artifact failed a budget; `.manifest` holds the failed build's manifest,
            which is kept in `OUT.failed/` (3).
        MissingRuntimeError: a runtime or service is missing, or the sandbox cannot start for a
            model file (4).
        SecurityError: the model is outside the allow-list (5).
        LockedError: another build holds `out` (75).
    """
    from deploykit.config import load_config_file, make_config
    from deploykit.pipeline import run
    from deploykit.progress import for_terminal

    unknown = sorted(set(settings) - set(_settings_keywords()))
    if unknown:
        raise BadInputError(f"unknown setting(s) {', '.join(unknown)} (known: {', '.join(_build_keywords())})")
    config_file = _path(config, "config")
    file_settings = load_config_file(config_file) if config_file else {}
    tables = _tables(settings, latency, prune, qat, cluster)
    budgets = _one_of("budget", budget, "budgets", budgets)
    if budgets is not None:  # merged into the file's budgets metric by metric, as --budget is
        from deploykit.config import budget_flags

        file_settings["budgets"] = budget_flags(_budget_specs(budgets), file_settings.get("budgets"))
    with _Objects() as objects:
        model_spec = objects.model(model)
        if objects.named.get("model") and trust_model is None:
            trust_model = True  # the caller's own model object, like a module:function builder
        cfg = make_config(
            file_settings, model=model_spec, data=objects.data(data), train_config=_path(train_config, "train_config"),
            targets=_one_of("target", target, "targets", targets), quantize=quantize, out=_path(out, "out"),
            allow_unsafe_deserialization=allow_unsafe_deserialization, trust_model=trust_model, jobs=jobs,
            parity_samples=parity_samples, **settings, **tables,
        )
        return run(cfg, for_terminal(_flag(quiet, "quiet")), named=objects.named)


def _target_flags() -> dict[str, tuple[str, Any]]:
    """Each target's CLI options by keyword name (`--js-format` -> `js_format`): (target, Option).
    Options whose name is already a top-level setting (`base_image`) are left to make_config."""
    from deploykit.config import known_settings
    from deploykit.targets import loadable

    top = set(known_settings())
    flags = {}
    for name, cls in loadable().items():
        for opt in cls.options:
            keyword = opt.flag.lstrip("-").replace("-", "_")
            if keyword not in top:
                flags[keyword] = (name, opt)
    return flags


def _settings_keywords() -> list[str]:
    """What `**settings` of `build` may hold."""
    from deploykit.config import known_settings

    explicit = set(_build_parameters())
    return [k for k in known_settings() if k not in explicit] + ["no_latency", *_target_flags()]


def _build_parameters() -> list[str]:
    import inspect

    return [p for p in inspect.signature(build).parameters if p != "settings"]


def _build_keywords() -> list[str]:
    return [*_build_parameters(), *_settings_keywords()]


def _tables(settings: dict, latency, prune, qat, cluster) -> dict[str, dict]:
    """The settings tables the keywords fill, as the CLI's flags do (make_config merges each over
    the file's table key by key). Pops the CLI-named keywords out of `settings`."""
    tables: dict[str, dict] = {}
    no_latency = settings.pop("no_latency", None)
    if no_latency is not None:  # the CLI's spelling
        if latency is not True:
            raise BadInputError("latency and no_latency: give one (latency=False is --no-latency)")
        latency = not _flag(no_latency, "no_latency")
    if latency is False:
        tables["latency"] = {"enabled": False}
    elif isinstance(latency, Mapping):
        tables["latency"] = dict(latency)
    elif latency is not True:
        raise BadInputError(f"latency: expected True, False or a table of latency settings, got {latency!r}"[:200])
    opt = {k: v for k, v in {"prune": prune, "qat": qat, "cluster": cluster}.items() if v is not None}
    if opt:
        given = settings.pop("optimize", None) or {}
        if not isinstance(given, Mapping):
            raise BadInputError(f"optimize: expected a table of settings, got {given!r}"[:200])
        tables["optimize"] = {**given, **opt}
    for keyword, (name, opt) in _target_flags().items():
        if keyword not in settings:
            continue
        value = settings.pop(keyword)
        if opt.kind == "flag":  # --no-container: True sets the flag's value; False its opposite, if it has one
            opposite = not opt.flag_value if isinstance(opt.flag_value, bool) else None
            value = opt.flag_value if _flag(value, keyword) else opposite
        if value is not None:
            table = settings.get(name) or {}
            if not isinstance(table, Mapping):
                raise BadInputError(f"{name}: expected a table of settings, got {table!r}"[:200])
            settings[name] = {**table, opt.key: value}
    return tables


def _budget_specs(value: Mapping | Sequence[str]) -> list[str]:
    """Budgets as `--budget TARGET.VARIANT.METRIC=VALUE` strings, so that one merge handles both
    forms (`config.budget_flags`)."""
    expected = "budgets: expected {TARGET: {VARIANT: {METRIC: VALUE}}} or a list of 'TARGET.VARIANT.METRIC=VALUE'"
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        specs = []
        for target, variants in value.items():
            for variant, metrics in (variants.items() if isinstance(variants, Mapping) else [(None, None)]):
                if not isinstance(metrics, Mapping):
                    raise BadInputError(f"{expected}, got {value!r}"[:300])
                specs += [f"{target}.{variant}.{metric}={limit}" for metric, limit in metrics.items()]
        return specs
    if isinstance(value, (list, tuple)) and all(isinstance(s, str) for s in value):
        return list(value)
    raise BadInputError(f"{expected}, got {value!r}"[:300])


# ---- objects given instead of files --------------------------------------------------------------
class _Objects:
    """A model object and arrays, saved into a private temporary folder for one build and removed
    afterwards. `named` says what they were (for the manifest); error messages leaving the block
    name them that way instead of by their temporary paths."""

    def __enter__(self) -> _Objects:
        self.folder: Path | None = None
        self.named: dict[str, str] = {}  # setting -> label
        self._labels: dict[str, str] = {}  # temporary path -> label
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if isinstance(exc, DeployKitError):
            for path, label in self._labels.items():
                exc.message = exc.message.replace(path, label)
            exc.args = (exc.message,)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _file(self, name: str) -> Path:
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="deploykit-in-memory-"))  # mode 0700
        return self.folder / name

    def _keep(self, setting: str, path: Path, label: str) -> str:
        self.named[setting], self._labels[str(path)] = label, label
        return str(path)

    def model(self, model: Any) -> str | None:
        """The model setting: a path or module:function as given, or an in-memory model saved."""
        if model is None or isinstance(model, (str, os.PathLike)):
            return _path(model, "model")
        library = keras_library(model)
        if library is None:
            raise BadInputError(f"model: expected a path, 'module:function' or a tf_keras / Keras 3 model, "
                                f"got {type(model).__name__}")
        path = self._file("model.keras")
        try:
            model.save(str(path))
        except Exception as exc:  # noqa: BLE001 - e.g. a subclassed model without get_config
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise BadInputError(f"model: the in-memory {library} model cannot be saved as .keras ({first}); "
                                "build it from a module:function instead") from exc
        name = getattr(model, "name", None)
        return self._keep("model", path, f"in-memory {library} model" + (f" '{name}'" if isinstance(name, str) else ""))

    def data(self, data: Any) -> str | None:
        """The data setting: an .npz path as given, or arrays saved into one."""
        if data is None or isinstance(data, (str, os.PathLike)):
            return _path(data, "data")
        import numpy as np

        from deploykit.arrays import save_npz

        if isinstance(data, np.ndarray):
            arrays = {"x": _array(data, "data")}  # a single-input model takes any one key
        elif isinstance(data, Mapping):
            bad = [k for k in data if not isinstance(k, str) or not k]
            if bad or not data:
                raise BadInputError(f"data: input names must be non-empty strings, got {bad[0]!r}" if bad else
                                    "data: the dict holds no arrays")
            arrays = {k: _array(v, f"data[{k!r}]") for k, v in data.items()}
        else:
            raise BadInputError("data: expected an .npz path, a numpy array (single-input model) or a dict of "
                                f"input name -> array, got {type(data).__name__}")
        path = self._file("data.npz")
        save_npz(path, arrays)
        label = "in-memory array" if isinstance(data, np.ndarray) else f"in-memory arrays ({', '.join(arrays)})"
        return self._keep("data", path, label)


def _array(value: Any, where: str) -> np.ndarray:
    import numpy as np

    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged lists
        raise BadInputError(f"{where}: not an array ({str(exc).splitlines()[0][:200]})") from None
    if array.dtype.hasobject:
        raise BadInputError(f"{where}: holds Python objects (dtype object), which are refused; "
                            "text must be a numpy string array (dtype U or S, e.g. np.array(texts, dtype=str))")
    return array


# ---- validate, train, report, publish ------------------------------------------------------------
def validate(out: str | os.PathLike, *, latency: bool | Mapping[str, Any] = False, jobs: int = 2) -> dict:
    """Re-validate an existing build, as `deploykit validate OUT`: checksums first, then every
    artifact in its runtime against the reference outputs stored in the build. Needs no model and
    no TensorFlow.

    Args:
        out: the build's output folder.
        latency: True also re-measures latency; a mapping is the `[latency]` table.
        jobs: parity runs side by side.

    Returns:
        The validation report: `{"out", "passed", "artifacts": [{"target", "variant", "passed",
        "parity", "latency", "failures"}, ...]}`.

    Raises:
        BadInputError: not a deploykit build, files changed since the build, bad arguments (2).
        BudgetError: an artifact failed; `.manifest` holds the validation report (3).
        MissingRuntimeError: an artifact's runtime is missing (4).
        SecurityError: files of the build are links or lie outside it (5).
    """
    from deploykit import settings as loader
    from deploykit.config import LatencySettings
    from deploykit.validation.judge import revalidate

    if isinstance(latency, Mapping):
        lat = loader.from_table(LatencySettings, latency, "latency")
    else:
        lat = LatencySettings(enabled=_flag(latency, "latency"))
    return revalidate(_path(out, "out", required=True), latency=lat.enabled, settings=lat, jobs=_count(jobs, "jobs"))


def train(config: str | os.PathLike | None = None, out: str | os.PathLike = "deploykit-run", *,
          local_workers: int = 0, max_restarts: int = 0, strategy: str | None = None, epochs: int | None = None,
          emit_k8s: str | os.PathLike | None = None, quiet: bool = True, **overrides: Any) -> dict:
    """Train a model under a tf.distribute strategy and export it, as `deploykit train`:
    `out/model.keras`, `out/saved_model/` and `out/metrics.json`.

    Args:
        config: training settings (TOML or YAML, a `[train]` table). None: the bundled example.
        out: the run folder (checkpoints, backup, TensorBoard logs, the exported model).
        local_workers: run the job as N local worker processes (multi_worker, or
            parameter_server if the config says so).
        max_restarts: with `local_workers`, restart the job after a worker dies (it resumes).
        strategy: overrides the config's (none, one_device, mirrored, multi_worker,
            parameter_server).
        epochs: overrides the config's.
        emit_k8s: write Kubeflow TFJob manifests for the job to this folder instead of training.
        quiet: False prints progress on stderr.
        **overrides: any other `[train]` setting (`model="mypkg.models:build"`,
            `dataset="train.npz"`, `batch_size=64`, `learning_rate=1e-3`, ...).

    Returns:
        The run metrics (also in `out/metrics.json`): history, final validation metrics, wall
        time, examples/s, strategy, replicas. With `emit_k8s`: `{"manifests": [paths]}`.

    Raises:
        BadInputError: bad settings, a builder or dataset that cannot be used (2).
        deploykit.fit.launcher.WorkerFailedError: with `local_workers`, a worker died and the job
            could not be recovered within `max_restarts` (1).
    """
    from deploykit import settings as loader
    from deploykit.fit.api import train as run_train
    from deploykit.progress import Reporter

    return run_train(_path(config, "config"), _path(out, "out", required=True),
                     local_workers=loader.coerce(int, local_workers, "local_workers"),
                     max_restarts=loader.coerce(int, max_restarts, "max_restarts"),
                     emit_k8s=_path(emit_k8s, "emit_k8s"), reporter=Reporter(quiet=_flag(quiet, "quiet")),
                     strategy=strategy, epochs=epochs, **overrides)


@dataclass(frozen=True)
class Report:
    """What `deploykit.report` wrote: the report document and the folder holding its three files."""

    document: dict  # report.json's content
    folder: Path

    @property
    def json(self) -> Path:
        return self.folder / "report.json"

    @property
    def md(self) -> Path:
        return self.folder / "report.md"

    @property
    def html(self) -> Path:
        return self.folder / "report.html"


def report(out: str | os.PathLike, *, baseline: str | os.PathLike | None = None,
           dest: str | os.PathLike | None = None, config: str | os.PathLike | None = None,
           max_size_increase: float | None = None, max_latency_ratio: float | None = None,
           latency_noise_ms: float | None = None, max_parity_ratio: float | None = None,
           max_agreement_drop: float | None = None, summary: str | os.PathLike | None = None) -> Report:
    """Write report.json, report.md and report.html from a build's manifest, as `deploykit report`
    (no TensorFlow).

    Args:
        out: the build's output folder.
        baseline: a previous build's `manifest.json` (or its folder): add deltas and raise
            BudgetError on a regression beyond the thresholds.
        dest: where to write (default: `out`; with a baseline, or a different rendering than the
            one `out`'s checksums seal: `OUT-report` beside it).
        config: regression thresholds from the `[regression]` table of a TOML file.
        max_size_increase, max_latency_ratio, latency_noise_ms, max_parity_ratio,
            max_agreement_drop: the thresholds, as the CLI flags of the same names.
        summary: also append report.md to this file (the CLI uses `$GITHUB_STEP_SUMMARY`).

    Returns:
        A `Report`: `.document` (report.json's content), `.folder`, `.json`, `.md`, `.html`.

    Raises:
        BadInputError: no or a bad manifest, bad thresholds (2).
        BudgetError: a regression against `baseline`; its `details` list them (3).
    """
    from deploykit.reporting import Thresholds, make

    th = Thresholds.from_sources(_path(config, "config"), size_increase=max_size_increase,
                                 latency_ratio=max_latency_ratio, latency_noise_ms=latency_noise_ms,
                                 parity_ratio=max_parity_ratio, agreement_drop=max_agreement_drop)
    doc, folder = make(_path(out, "out", required=True), baseline=_path(baseline, "baseline"), thresholds=th,
                       dest=_path(dest, "dest"), summary=_path(summary, "summary"))
    return Report(doc, Path(folder))


def publish(out: str | os.PathLike, to: str | os.PathLike, *, force: bool = False) -> dict:
    """Publish a build's proven artifacts to a folder or an OCI registry, then pull back and verify
    every checksum, as `deploykit publish OUT --to DEST`. Registry credentials come from
    `DEPLOYKIT_REGISTRY_USERNAME` / `DEPLOYKIT_REGISTRY_PASSWORD`.

    Args:
        out: the build's output folder.
        to: a folder, `oci://HOST[:PORT]/REPO:TAG` (HTTPS) or `oci+http://HOST[:PORT]/REPO:TAG`.
        force: replace a version already published with different content.

    Returns:
        What was published: `status`, `destination`, the artifacts (a registry: `pushed`, each
        with its `reference`), `notes`.

    Raises:
        BadInputError: a bad `to`, files changed since the build, credentials missing or refused,
            a folder that is not a deploykit publication (2).
        BudgetError: an artifact did not pass validation (3).
        MissingRuntimeError: the registry is unreachable, or pulled-back content differs (4).
        PublishConflictError: this version is already published with other content (6).
    """
    from deploykit.publishing import publish as run_publish

    return run_publish(_path(out, "out", required=True), _path(to, "to", required=True), force=_flag(force, "force"))


# ---- argument checks -----------------------------------------------------------------------------
def _path(value: Any, name: str, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if isinstance(path, str) and path:
            return path
    raise BadInputError(f"{name}: expected a path, got {value!r}"[:200])


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise BadInputError(f"{name}: expected True or False, got {value!r}"[:200])
    return value


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInputError(f"{name}: expected a whole number of at least 1, got {value!r}"[:200])
    return value


def _one_of(name_a: str, a: Any, name_b: str, b: Any) -> Any:
    """Two spellings of one keyword (`target` / `targets`): either, not both."""
    if a is not None and b is not None:
        raise BadInputError(f"{name_a} and {name_b}: give one (they are the same setting)")
    return a if a is not None else b
