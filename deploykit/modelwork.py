"""The jobs that touch the model, each run in a worker process (`deploykit.worker`), never in the CLI.

  intake   load the model (or train it), optimize it if asked, read or generate the data, compute the
           reference outputs, export the canonical SavedModel, then run every target's preflight.
           Writes inputs/reference/calibration .npz and each target's plan into its scratch folder.
  prepare  the same export and preflights for another model file (the optimize stage's baseline).
  convert  one variant of one target, from the target's plan; it loads the model only if the
           target asks for it (`ModelHandle`), e.g. TFLite's fixed-shape path.

Each job takes a JSON request (plus the pickled BuildConfig) and returns a JSON dict; files go into
the scratch folder given as `request["work"]`.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from deploykit.arrays import read_npz, save_npz
from deploykit.digests import file_sha256
from deploykit.errors import BadInputError
from deploykit.intake import data as data_mod
from deploykit.progress import silent
from deploykit.targets import target_class
from deploykit.validation import parity

RANDOM_DATA_WARNING = (
    "no --data given: parity inputs are generated from the model signature (random values); "
    "int8/int16x8 calibration on random data gives poor accuracy, pass representative --data"
)
MODEL_FILE = "model.keras"  # an in-memory model (built, trained, optimized) saved for the convert jobs


class ModelHandle:
    """The model a convert job may need, loaded on first use from the file the intake vetted."""

    def __init__(self, file: str | None, saved_model: str, allow_unsafe: bool = False) -> None:
        self.file, self.saved_model, self.allow_unsafe, self._model = file, saved_model, allow_unsafe, None

    def get(self):
        if self._model is None:
            from deploykit.intake import loader
            from deploykit.intake.sniff import sniff

            self._model = loader.load(sniff(self.file or self.saved_model), self.allow_unsafe)
        return self._model


# ---- jobs -------------------------------------------------------------------------------------------
class _Clock:
    """Seconds per step of a job, in the order they ran (the manifest's `timings.intake.STEP`), and the
    job's peak resident memory when each step ended (`memory.intake.STEP`, MB): where the peak grows."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}
        self.peaks: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, step: str) -> None:
        import resource

        now = time.perf_counter()
        self.steps[step] = round(self.steps.get(step, 0.0) + now - self._last, 3)
        self.peaks[step] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB
        self._last = now


def intake(request: dict) -> dict:
    cfg, work = request["config"], Path(request["work"])
    clock = _Clock()
    from deploykit.tfenv import tensorflow

    tensorflow()  # what every worker pays first: timings.intake.import_tensorflow in the manifest
    clock.lap("import_tensorflow")
    model, inputs, data_facts, example, training = _model_and_data(cfg, request.get("model"), work)
    clock.lap("train" if request.get("model") is None else "load")
    facts: dict = {"data": data_facts, "example": example, "training": training}
    if cfg.optimize.requested:  # prune / cluster / QAT: every target then converts the stripped model
        from deploykit import optimize

        optimized = optimize.apply(model, cfg, work, silent())
        save_npz(work / "optimize-valid-inputs.npz", optimized.data.x_valid)
        save_npz(work / "optimize-valid-labels.npz", {"y": optimized.data.y_valid})
        facts["optimize"] = {"facts": optimized.facts, "kind": optimized.data.kind,
                             "baseline_file": _model_file(optimized.original, work / "baseline")}
        model = optimized.model
        clock.lap("optimize")
    parity_in = data_mod.take(inputs, cfg.parity_samples)
    calibration = data_mod.take(inputs, cfg.calibration_samples)
    data_facts.update(rows=_rows(inputs), parity_rows=_rows(parity_in), calibration_rows=_rows(calibration))
    reference = _reference(model, parity_in, data_facts)
    for warning in parity.check_reference(reference, model.source.location):
        data_facts["warnings"].append(warning)
    clock.lap("reference")
    from deploykit.validation import noise

    data_facts["noise_floor"] = {"method": noise.METHOD, "factor": noise.FACTOR,
                                 "outputs": noise.reference_noise(model, parity_in, reference, cfg.seed)}
    clock.lap("noise_floor")
    save_npz(work / "inputs.npz", parity_in)
    save_npz(work / "reference.npz", reference)
    save_npz(work / "calibration.npz", calibration)
    facts.update(_describe(model), model_file=_model_file(model, work))
    facts["preflight"] = _prepare_all(model, calibration, cfg, work, request["targets"], request.get("variants"), clock)
    facts["timings"], facts["memory"] = clock.steps, clock.peaks
    return facts


def _reference(model, inputs: dict, data_facts: dict) -> dict:
    """The model's outputs on the parity rows. A model that rejects them (TensorFlow's
    InvalidArgumentError: a malformed proto, a value out of range) is bad input, exit 2."""
    from deploykit.tfenv import tensorflow

    tf = tensorflow()
    try:
        return model.predict(inputs)
    except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as exc:
        lines = [ln.strip() for ln in str(exc.message).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if "Graph execution error" not in ln), type(exc).__name__)
        where = data_facts.get("path") or "the generated inputs"
        hint = ""
        if any(a.dtype.kind == "S" for a in inputs.values()):
            hint = (" (numpy 'S' arrays drop trailing NUL bytes: a serialized proto that ends in 0x00, e.g. one"
                    " with an empty bytes feature, does not survive an .npz; see README: Using it, Data)")
        raise BadInputError(f"{where}: the model cannot run on these inputs: {reason[:300]}{hint}") from None


def prepare(request: dict) -> dict:
    """Export and preflight `request["model_file"]` (the optimize stage's unoptimized baseline)."""
    from deploykit.intake import loader
    from deploykit.intake.sniff import sniff

    cfg, work = request["config"], Path(request["work"])
    model = loader.load(sniff(request["model_file"]), cfg.allow_unsafe_deserialization)
    calibration = read_npz(request["calibration"], "calibration data")
    return {"model_file": request["model_file"], "preflight": _prepare_all(model, calibration, cfg, work, request["targets"])}


def convert(request: dict) -> dict:
    cfg, work = request["config"], Path(request["work"])
    name, variant = request["target"], request["variant"]
    target = target_class(name)(cfg.settings_for(name))
    model = ModelHandle(request.get("model_file"), request["saved_model"], cfg.allow_unsafe_deserialization)
    target.resume(request["plan"], Path(request["prepared"]), model)
    calibration = read_npz(request["calibration"], "calibration data")
    artifact = target.convert(variant, work / "out", calibration, cfg)
    return {"path": str(artifact.path), "details": dict(artifact.details)}


def call(request: dict) -> dict:
    """A target's own code that runs a model in process (e.g. the serving target's in-process
    check): `request["function"]` is "module:function", restricted to deploykit.targets."""
    import importlib

    module, _, function = request["function"].partition(":")
    if not module.startswith("deploykit.targets."):
        raise BadInputError(f"worker call: {module} is not a target module")
    return getattr(importlib.import_module(module), function)(request)


# ---- helpers ----------------------------------------------------------------------------------------
def _prepare_all(model, calibration, cfg, work: Path, names: list[str], variants: dict | None = None,
                 clock: _Clock | None = None) -> dict:
    """Export the canonical SavedModel and run each target's preflight; with `variants` (the
    build's plan), also write out each variant the preflight already converted (`converted`:
    {variant: {"path", "details"}}, the answer a convert worker would have given)."""
    clock = clock or _Clock()
    saved_model, exported = model.canonical_saved_model(work / "saved_model")  # a SavedModel source: as it is
    clock.lap("export_saved_model" if exported else "reuse_saved_model")
    out = {"saved_model": str(saved_model), "targets": {}}
    for name in names:
        target = target_class(name)(cfg.settings_for(name))
        folder = work / "prepared" / name
        folder.mkdir(parents=True)
        target_facts = target.prepare(model, saved_model, calibration, cfg, folder)
        clock.lap(f"preflight_{name}")
        converted = {}
        for variant in (variants or {}).get(name, []):
            if target.converted_in_preflight(variant):
                artifact = target.convert(variant, work / "converted" / f"{name}-{variant}", calibration, cfg)
                converted[variant] = {"path": str(artifact.path), "details": dict(artifact.details)}
                clock.lap(f"write_{name}_{variant}")
                checked = target.check_in_preflight(artifact, work / "inputs.npz",
                                                    cfg.latency if cfg.latency.enabled else None,
                                                    work / "checked" / f"{name}-{variant}")
                if checked:
                    converted[variant]["checked"] = checked
                    clock.lap(f"check_{name}_{variant}")
        out["targets"][name] = {"facts": target_facts, "plan": target.plan_state(), "prepared": str(folder),
                                "converted": converted}
    return out


def _describe(model) -> dict:
    from deploykit.intake.loader import OPTIMIZE_NOTE

    source = {**model.source.to_json(), "optimizable": model.optimizable, "policy_findings_allowed": list(model.findings)}
    if not model.optimizable:
        source["note"] = OPTIMIZE_NOTE
    return {"source": source, "contract": model.contract.to_json()}


def _model_file(model, folder: Path) -> str | None:
    """A file the convert jobs can load the model from: the source itself when it is one, else the
    in-memory model saved as a tf_keras `.keras` file (None if it cannot be saved: the jobs then
    use the canonical SavedModel)."""
    if model.source.kind in ("keras_zip", "h5", "saved_model"):
        return model.source.location
    if model.keras_model is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    try:
        model.keras_model.save(folder / MODEL_FILE)
    except Exception:  # noqa: BLE001 - e.g. custom layers without get_config
        return None
    return str(folder / MODEL_FILE)


def _model_and_data(cfg, model_spec: str | None, work: Path):
    """(model, inputs by name, data facts, example facts or None, training metrics or None)."""
    from deploykit.intake import loader
    from deploykit.intake.sniff import sniff

    example = training = None
    facts = None
    if model_spec is None:  # train first: the bundled example, or the user's fit-stage config
        model, inputs, training = _train(cfg, work)
        facts = {"origin": "training" if cfg.train_config else "example", "path": cfg.train_config, "sha256": None,
                 "warnings": []}
        if not cfg.train_config:
            example = {"name": "digits_cnn", "dataset": "sklearn.datasets.load_digits", "epochs": cfg.example_epochs,
                       "validation_accuracy": training["final_validation"].get("accuracy")}
    else:
        model = loader.load(sniff(model_spec), cfg.allow_unsafe_deserialization)
    if cfg.data:
        inputs = data_mod.load_npz(cfg.data, model.contract)
        facts = {"origin": "file", "path": str(cfg.data), "sha256": file_sha256(Path(cfg.data)), "warnings": []}
    elif model_spec is not None:
        inputs = data_mod.generate(model.contract, seed=cfg.seed)
        facts = {"origin": "generated", "path": None, "sha256": None, "warnings": [RANDOM_DATA_WARNING]}
    return model, inputs, facts, example, training


def _train(cfg, work: Path):
    """Run the fit stage in this worker; the trained model's validation rows are the parity data."""
    from deploykit.fit.config import load_train_config
    from deploykit.fit.data import validation_inputs
    from deploykit.fit.trainer import train_model
    from deploykit.intake import example as example_mod
    from deploykit.intake import loader
    from deploykit.intake.sniff import ModelSource

    if cfg.train_config:
        tcfg = load_train_config(cfg.train_config)
        source = ModelSource("training", f"train-config:{cfg.train_config}", keras="tf_keras",
                             sha256=file_sha256(Path(cfg.train_config)))
    else:  # the bundled example goes through the same stage (mirrored strategy on CPU)
        tcfg = load_train_config(None, epochs=cfg.example_epochs, seed=cfg.seed, batch_size=32, tensorboard=False)
        source = example_mod.SOURCE
    if tcfg.distributed:
        raise BadInputError(f"{cfg.train_config}: strategy {tcfg.strategy} runs as several processes: train with "
                            "`deploykit train --config FILE --local-workers N --out RUN`, then build --model RUN/model.keras")
    keras_model, metrics = train_model(tcfg, work / "run", silent())
    kept = work / "training"  # the run's model and metrics ship with the build
    kept.mkdir()
    for name in ("model.keras", "metrics.json", "history.jsonl", "validation.npz"):  # a run folder of its own
        if (work / "run" / name).exists():
            shutil.copy2(work / "run" / name, kept / name)
    model = loader._from_keras(source, keras_model, tf_keras_model=True, findings=[])
    inputs = validation_inputs(tcfg, keras_model, max(cfg.parity_samples, cfg.calibration_samples))
    keep = ("strategy", "replicas", "num_workers", "global_batch_size", "per_replica_batch_size", "shard_policy",
            "steps_per_epoch", "epochs", "epochs_completed", "history", "final_validation", "wall_time_s",
            "fit_time_s", "examples_per_sec", "config")
    return model, inputs, {k: metrics[k] for k in keep}


def _rows(arrays: dict) -> int:
    return len(next(iter(arrays.values())))
