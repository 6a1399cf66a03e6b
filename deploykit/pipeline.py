"""`build()`: model in, validated artifacts and a manifest out.

The data flows top to bottom: settings -> model -> data and reference outputs -> canonical
SavedModel -> each target's preflight -> conversions (side by side) -> validation in each runtime
-> manifest -> the staging folder renamed into place. One TensorFlow import, one model load.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Mapping

from deploykit import manifest as manifest_mod
from deploykit.arrays import save_npz
from deploykit.config import BuildConfig, load_config_file, make_config
from deploykit.digests import file_sha256
from deploykit.errors import BadInputError, BudgetError
from deploykit.intake import data as data_mod
from deploykit.intake.sniff import sniff
from deploykit.output import OutputFolder
from deploykit.progress import Reporter, silent
from deploykit.records import ArtifactRecord
from deploykit.runner import map_jobs
from deploykit.targets import Target, resolve, target_class
from deploykit.validation import judge, parity
from deploykit.version import __version__

RANDOM_DATA_WARNING = (
    "no --data given: parity inputs are generated from the model signature (random values); "
    "int8/int16x8 calibration on random data gives poor accuracy, pass representative --data"
)


def build(model: str | None = None, data: str | None = None, targets=None, quantize=None,
          out: str | None = None, config: str | None = None, *, reporter: Reporter | None = None,
          **settings: Any) -> dict:
    """Build, validate and write artifacts; return the manifest. Raises a DeployKitError on failure
    (BudgetError carries the manifest of the failed build in `.manifest`)."""
    file_settings = load_config_file(config) if config else None
    cfg = make_config(file_settings, model=model, data=data, targets=targets, quantize=quantize, out=out, **settings)
    return run(cfg, reporter or silent())


def plan_variants(cfg: BuildConfig, targets: Mapping[str, Target]) -> dict[str, list[str]]:
    """Which variants each target converts; unknown `--quantize` variants and budget names fail."""
    plan = {name: t.plan_variants(cfg.quantize) for name, t in targets.items()}
    if cfg.quantize:
        known = {v for t in targets.values() for v in t.variants}
        unknown = [v for v in cfg.quantize if v not in known]
        if unknown:
            raise BadInputError(f"--quantize: unknown variant(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    for target, variants in cfg.budgets.items():
        cls = target_class(target)
        for variant, metrics in variants.items():
            if variant not in cls.variants:
                raise BadInputError(f"budgets.{target}.{variant}: unknown variant (known: {', '.join(cls.variants)})")
            parity.check_budget_names(metrics, f"budgets.{target}.{variant}")
    return plan


class Runtimes:
    """Conversion and runtime calls with the build's targets, for the optimize stage: it asks the
    pipeline for its unoptimized baseline artifacts and their outputs instead of reaching into the
    targets and validation itself."""

    def __init__(self, cfg: BuildConfig, targets: Mapping[str, Target], calibration, work: Path) -> None:
        self.cfg, self.targets, self.calibration, self.work = cfg, targets, calibration, work
        self._baseline: dict[Path, Target] = {}  # baseline artifact path -> the target that converted it

    def convert_like(self, model, records: list[ArtifactRecord]) -> dict[str, ArtifactRecord]:
        """Convert `model` with the same targets and variants as `records`: key -> record."""
        root = self.work / "baseline"
        saved_model = model.export_saved_model(root / "saved_model")
        wanted: dict[str, list[str]] = {}
        for r in records:
            wanted.setdefault(r.target, []).append(r.variant)
        built = {}
        for name, variants in wanted.items():
            target = target_class(name)(self.cfg.settings_for(name))
            target.prepare(model, saved_model, self.calibration, self.cfg, root)
            for variant in variants:
                artifact = target.convert(variant, root / name, self.calibration, self.cfg)
                self._baseline[artifact.path] = target
                built[f"{name}/{variant}"] = ArtifactRecord(artifact, records[0].inputs, {}, 0)
        return built

    def _target(self, record: ArtifactRecord) -> Target:
        return self._baseline.get(record.artifact.path) or self.targets[record.target]

    def outputs(self, record: ArtifactRecord, inputs: Path) -> dict | None:
        """The artifact's outputs on `inputs`, from its runtime (the first backend), or None."""
        result, outputs = judge.run_outputs(self._target(record), record.artifact, inputs, self.work,
                                            tag=f"outputs-{abs(hash(str(inputs)))}")
        return next(iter(outputs.values())) if outputs else None

    def p50_ms(self, record: ArtifactRecord) -> float | None:
        measured = judge.measure_latency(self._target(record), record.artifact, record.inputs, self.cfg.latency, self.work)
        return measured.get("latency", {}).get("p50_ms")


def run(cfg: BuildConfig, rep: Reporter) -> dict:
    started = time.perf_counter()
    names = resolve(cfg.targets)
    targets = {n: target_class(n)(cfg.settings_for(n)) for n in names}
    variants = plan_variants(cfg, targets)
    for t in targets.values():
        t.check_runtime(cfg)
    if cfg.model and cfg.train_config:
        raise BadInputError("--model and --train-config: give one (--train-config trains the model to build)")
    source = sniff(cfg.model) if cfg.model else None  # bad paths fail before TensorFlow loads
    timings: dict[str, float] = {}

    with OutputFolder(cfg.out) as folder:
        staging, work = folder.staging, folder.staging / ".work"
        work.mkdir()
        # 1. model and data -------------------------------------------------------------------
        label = "load model" if source else f"train {cfg.train_config}" if cfg.train_config else "train the bundled example (digits CNN)"
        with rep.step(label):
            t0 = time.perf_counter()
            model, inputs, data_facts, example, training = _model_and_data(cfg, source, rep, work)
            timings["load_seconds"] = time.perf_counter() - t0
        optimized = None
        if cfg.optimize.requested:  # prune / cluster / QAT: every target then converts the stripped model
            from deploykit import optimize

            with rep.step(f"optimize: {cfg.optimize.describe()}"):
                optimized = optimize.apply(model, cfg, work, rep)
            model = optimized.model
        parity_in = data_mod.take(inputs, cfg.parity_samples)
        calibration = data_mod.take(inputs, cfg.calibration_samples)
        data_facts.update(rows=_rows(inputs), parity_rows=_rows(parity_in), calibration_rows=_rows(calibration))
        with rep.step(f"reference outputs on {data_facts['parity_rows']} rows"):
            reference = model.predict(parity_in)
        for warning in parity.check_reference(reference, model.source.location):
            rep.warn(warning)
            data_facts["warnings"].append(warning)
        (staging / "validation").mkdir()
        inputs_npz, reference_npz = staging / "validation" / "inputs.npz", staging / "validation" / "reference.npz"
        save_npz(inputs_npz, parity_in)
        save_npz(reference_npz, reference)
        with rep.step("export canonical SavedModel"):
            saved_model = model.export_saved_model(work / "saved_model")

        # 2. preflight and conversion -------------------------------------------------------------
        target_facts = {}
        for name, target in targets.items():
            with rep.step(f"preflight {name}"):
                target_facts[name] = target.prepare(model, saved_model, calibration, cfg, work)
        jobs = [(name, v) for name in names for v in variants[name]]
        t0 = time.perf_counter()
        with rep.step(f"convert {len(jobs)} artifact(s)"):
            artifacts = map_jobs(lambda j: targets[j[0]].convert(j[1], staging / j[0], calibration, cfg), jobs, cfg.jobs)
        timings["convert_seconds"] = time.perf_counter() - t0

        # 3. validation in each runtime ---------------------------------------------------------
        records = [ArtifactRecord(a, inputs_npz, judge.budget_for(type(targets[a.target]), a.variant, cfg.budgets),
                                  manifest_mod.artifact_digest(a.path)[1]) for a in artifacts]
        t0 = time.perf_counter()
        label = "parity" + (" and latency" if cfg.latency.enabled else "")
        with rep.step(f"validate {len(records)} artifact(s): {label}"):
            judge.judge(records, targets, model.contract, reference, measure=cfg.latency.enabled,
                        settings=cfg.latency, work=work, jobs=cfg.jobs)
        timings["validate_seconds"] = time.perf_counter() - t0
        for r in records:
            rep.info(_summary_line(r))
        for name, t in targets.items():  # e.g. js auto-selection, serving --push
            facts = t.after_validation(records, rep)
            if facts:
                target_facts[name].update(facts)
        for r in records:
            if r.rejected:  # kept out of the output; the target's facts say why
                shutil.rmtree(r.artifact.path)
        kept = [r for r in records if not r.rejected]
        # what the optimization bought, against the unoptimized artifacts (deploykit/optimize)
        opt_section = None
        if optimized:
            opt_section = optimized.report(kept, Runtimes(cfg, targets, calibration, work), cfg, rep)

        # 4. manifest and commit ------------------------------------------------------------------
        shutil.rmtree(work)
        timings["total_seconds"] = time.perf_counter() - started
        doc = _manifest(cfg, model, data_facts, example, target_facts, records, staging, timings)
        if training:
            doc["training"] = training
        if opt_section:
            doc["optimize"] = opt_section
            doc["passed"] = doc["passed"] and opt_section["passed"]
        from deploykit.reporting import write_for_build  # report.json/.md/.html, added to the file table

        write_for_build(staging, doc)
        manifest_mod.write(staging, doc)
        if not doc["passed"]:
            lines = judge.failure_lines(doc["artifacts"])
            lines += [f"optimize: {f['message']}" for f in doc.get("optimize", {}).get("failures", [])]
            notes = [n for t in targets.values() for n in t.failure_notes(records)]
            raise BudgetError(
                f"{len(lines)} budget failure(s); output folder left unchanged:\n  " + "\n  ".join(lines + notes),
                manifest=doc, details={"failures": lines, "notes": notes},
            )
        folder.commit()
    rep.info(f"wrote {Path(cfg.out)} ({len(doc['artifacts'])} artifact(s), {timings['total_seconds']:.1f} s)")
    return doc


def _model_and_data(cfg: BuildConfig, source, rep: Reporter, work: Path):
    """(model, inputs by name, data facts, example facts or None, training metrics or None)."""
    from deploykit.intake import loader

    example = training = None
    if source is None:  # train first: the bundled example, or the user's fit-stage config
        model, inputs, training = _train(cfg, rep, work)
        origin = "training" if cfg.train_config else "example"
        facts = {"origin": origin, "path": cfg.train_config, "sha256": None, "warnings": []}
        if not cfg.train_config:
            example = {"name": "digits_cnn", "dataset": "sklearn.datasets.load_digits", "epochs": cfg.example_epochs,
                       "validation_accuracy": training["final_validation"].get("accuracy")}
    else:
        model = loader.load(source, cfg.allow_unsafe_deserialization)
        if not model.optimizable:
            rep.info(f"note: {loader.OPTIMIZE_NOTE}")
    if cfg.data:
        inputs = data_mod.load_npz(cfg.data, model.contract)
        facts = {"origin": "file", "path": str(cfg.data), "sha256": file_sha256(Path(cfg.data)), "warnings": []}
    elif source is not None:
        rep.warn(RANDOM_DATA_WARNING)
        inputs = data_mod.generate(model.contract, seed=cfg.seed)
        facts = {"origin": "generated", "path": None, "sha256": None, "warnings": [RANDOM_DATA_WARNING]}
    return model, inputs, facts, example, training


def _train(cfg: BuildConfig, rep: Reporter, work: Path):
    """Run the fit stage in this process; the trained model's validation rows are the parity data."""
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
    keras_model, metrics = train_model(tcfg, work / "run", rep)
    kept = work.parent / "training"  # the run's model and metrics ship with the build
    kept.mkdir()
    for name in ("model.keras", "metrics.json", "history.jsonl"):
        shutil.copy2(work / "run" / name, kept / name)
    model = loader._from_keras(source, keras_model, tf_keras_model=True, findings=[])
    inputs = validation_inputs(tcfg, keras_model, max(cfg.parity_samples, cfg.calibration_samples))
    keep = ("strategy", "replicas", "num_workers", "global_batch_size", "per_replica_batch_size", "shard_policy",
            "steps_per_epoch", "epochs", "epochs_completed", "history", "final_validation", "wall_time_s",
            "fit_time_s", "examples_per_sec", "config")
    return model, inputs, {k: metrics[k] for k in keep}


def _rows(arrays: dict) -> int:
    return len(next(iter(arrays.values())))


def _summary_line(r: ArtifactRecord) -> str:
    verdict = "PASS" if r.passed else "FAIL"
    speed = f", p50 {r.latency['p50_ms']:.3f} ms" if r.latency else ""
    return f"{verdict} {r.key}: {r.bytes:,} bytes{speed}"


def _manifest(cfg, model, data_facts, example, target_facts, records, staging: Path, timings) -> dict:
    from deploykit.intake.loader import OPTIMIZE_NOTE

    # sizes are relative to each target's float32 artifact, even one a hook rejected (--js-quantize auto)
    float_bytes = {r.target: r.bytes for r in records if r.variant == "float32"}
    artifacts = [r.to_manifest(staging, manifest_mod.artifact_digest(r.artifact.path)[0], float_bytes.get(r.target)).to_json()
                 for r in records if not r.rejected]
    source = {**model.source.to_json(), "optimizable": model.optimizable,
              "policy_findings_allowed": list(model.findings)}
    if not model.optimizable:
        source["note"] = OPTIMIZE_NOTE
    doc = {
        "schema_version": manifest_mod.SCHEMA_VERSION,
        "deploykit_version": __version__,
        "created_at": manifest_mod.now(),
        "passed": all(a["passed"] for a in artifacts),
        "source": source,
        "config": {"hash": cfg.config_hash(), "settings": cfg.to_json()},
        "environment": manifest_mod.environment(),
        "contract": model.contract.to_json(),
        "data": {
            **data_facts,
            "inputs": "validation/inputs.npz",
            "reference": "validation/reference.npz",
        },
        "targets": target_facts,
        "artifacts": artifacts,
        "files": manifest_mod.file_table(staging),
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    if example:
        doc["example"] = example
    return doc
