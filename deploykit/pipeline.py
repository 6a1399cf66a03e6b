"""`build()`: model in, validated artifacts and a manifest out.

The data flows top to bottom: settings -> model -> data and reference outputs -> canonical
SavedModel -> each target's preflight -> conversions (side by side) -> validation in each runtime
-> manifest -> the staging folder renamed into place. One TensorFlow import, one model load.
"""
from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import __version__, data as data_mod, manifest as manifest_mod, parity, verify
from .config import BuildConfig, load_config_file, make_config
from .errors import BadInputError, BudgetError
from .output import OutputFolder
from .progress import Reporter, silent
from .sniff import file_sha256, sniff
from .targets import resolve, target_class

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


def plan_variants(cfg: BuildConfig, names: list[str]) -> dict[str, list[str]]:
    plan = {}
    for name in names:
        cls = target_class(name)
        plan[name] = [v for v in cls.variants if cfg.quantize is None or v in cfg.quantize]
    if cfg.quantize:
        known = {v for name in names for v in target_class(name).variants}
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


def run(cfg: BuildConfig, rep: Reporter) -> dict:
    started = time.perf_counter()
    names = resolve(cfg.targets)
    variants = plan_variants(cfg, names)
    targets = {n: target_class(n)() for n in names}
    for t in targets.values():
        t.check_runtime()
    source = sniff(cfg.model) if cfg.model else None  # bad paths fail before TensorFlow loads
    timings: dict[str, float] = {}

    with OutputFolder(cfg.out) as folder:
        staging, work = folder.staging, folder.staging / ".work"
        work.mkdir()
        # 1. model and data -------------------------------------------------------------------
        with rep.step("load model" if source else "train the bundled example (digits CNN)"):
            t0 = time.perf_counter()
            model, inputs, data_facts, example = _model_and_data(cfg, source, rep)
            timings["load_seconds"] = time.perf_counter() - t0
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
        data_mod.save_npz(inputs_npz, parity_in)
        data_mod.save_npz(reference_npz, reference)
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
            with ThreadPoolExecutor(max_workers=cfg.jobs) as pool:
                artifacts = list(pool.map(lambda j: targets[j[0]].convert(j[1], staging / j[0], calibration, cfg), jobs))
        timings["convert_seconds"] = time.perf_counter() - t0

        # 3. validation in each runtime ---------------------------------------------------------
        records = [
            {"target": targets[a.target], "artifact": a, "inputs": inputs_npz,
             "bytes": manifest_mod.artifact_digest(a.path)[1],
             "budget": verify.budget_for(type(targets[a.target]), a.variant, cfg.budgets)}
            for a in artifacts
        ]
        t0 = time.perf_counter()
        label = "parity" + (" and latency" if cfg.latency.enabled else "")
        with rep.step(f"validate {len(records)} artifact(s): {label}"):
            verify.judge(records, model.contract, reference, measure=cfg.latency.enabled,
                           settings=cfg.latency, work=work, jobs=cfg.jobs)
        timings["validate_seconds"] = time.perf_counter() - t0
        for r in records:
            rep.info(_summary_line(r))

        # 4. manifest and commit ------------------------------------------------------------------
        shutil.rmtree(work)
        timings["total_seconds"] = time.perf_counter() - started
        doc = _manifest(cfg, model, data_facts, example, target_facts, records, staging, timings)
        manifest_mod.write(staging, doc)
        if not doc["passed"]:
            lines = verify.failure_lines(doc["artifacts"])
            raise BudgetError(
                f"{len(lines)} budget failure(s); output folder left unchanged:\n  " + "\n  ".join(lines),
                manifest=doc, details={"failures": lines},
            )
        folder.commit()
    rep.info(f"wrote {Path(cfg.out)} ({len(records)} artifact(s), {timings['total_seconds']:.1f} s)")
    return doc


def _model_and_data(cfg: BuildConfig, source, rep: Reporter):
    """(model, inputs by name, data facts for the manifest, example facts or None)."""
    from . import example as example_mod
    from . import loader

    example = None
    if source is None:
        keras_model, inputs, _labels, accuracy = example_mod.train(cfg.example_epochs, cfg.seed)
        model = loader._from_keras(example_mod.SOURCE, keras_model, tf_keras_model=True, findings=[])
        facts = {"origin": "example", "path": None, "sha256": None, "warnings": []}
        example = {"name": "digits_cnn", "dataset": "sklearn.datasets.load_digits", "epochs": cfg.example_epochs,
                   "validation_accuracy": accuracy}
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
    return model, inputs, facts, example


def _rows(arrays: dict) -> int:
    return len(next(iter(arrays.values())))


def _summary_line(r: dict) -> str:
    a, lat = r["artifact"], r["latency"]
    verdict = "PASS" if r["passed"] else "FAIL"
    speed = f", p50 {lat['p50_ms']:.3f} ms" if lat else ""
    return f"{verdict} {a.target}/{a.variant}: {r['bytes']:,} bytes{speed}"


def _manifest(cfg, model, data_facts, example, target_facts, records, staging: Path, timings) -> dict:
    from .loader import OPTIMIZE_NOTE

    artifacts = []
    float_bytes = {r["artifact"].target: r["bytes"] for r in records if r["artifact"].variant == "float32"}
    for r in records:
        a = r["artifact"]
        base = float_bytes.get(a.target)
        artifacts.append({
            "target": a.target,
            "variant": a.variant,
            "path": a.path.relative_to(staging).as_posix(),
            "sha256": manifest_mod.artifact_digest(a.path)[0],
            "bytes": r["bytes"],
            "size_ratio_to_float32": (r["bytes"] / base) if base else None,
            "details": dict(a.details),
            "budget": r["budget"],
            "parity": r["parity"],
            "latency": r["latency"],
            "failures": r["failures"],
            "passed": r["passed"],
        })
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
