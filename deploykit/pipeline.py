"""`run()`: model in, validated artifacts and a manifest out (`deploykit.build` and the CLI call it).

The data flows top to bottom: settings -> the model vetted by the policy (in this process, no
TensorFlow) -> the intake worker (load or train, optimize, data, reference outputs, canonical
SavedModel, every target's preflight) -> one convert worker per artifact, side by side -> validation
in each runtime -> manifest -> the staging folder renamed into place.

This process holds the output folder and its lock and never imports TensorFlow: the model is only
ever loaded and run in worker processes (`deploykit.worker`, jobs in `deploykit.modelwork`),
sandboxed with bubblewrap (`deploykit.sandbox`) unless the model is trusted. A worker that crashes,
hangs or runs out of memory while converting fails that artifact (exit 3 at the end), not the build.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

from deploykit import manifest as manifest_mod
from deploykit import sandbox, worker
from deploykit.arrays import read_npz, save_npz
from deploykit.config import BuildConfig
from deploykit.contract import IOContract
from deploykit.errors import BadInputError, BudgetError, DeployKitError
from deploykit.intake import policy
from deploykit.intake import run as runs
from deploykit.intake.sniff import sniff
from deploykit.output import OutputFolder
from deploykit.progress import Reporter
from deploykit.records import ArtifactRecord, Parity
from deploykit.runner import map_jobs
from deploykit.targets import Artifact, Target, resolve, target_class
from deploykit.validation import judge, parity
from deploykit.version import __version__

CALIBRATED = frozenset({"int8", "int16x8"})  # variants calibrated on the data (--data or generated)
RANDOM_PARITY_WARNING = ("no --data given: parity inputs are generated from the model signature (random values); "
                         "pass representative --data")


def plan_variants(cfg: BuildConfig, targets: Mapping[str, Target], rep: Reporter | None = None) -> dict[str, list[str]]:
    """Which variants each target converts. One rule for `--quantize`: each target builds the asked
    variants it has (a note names the ones it lacks); a target that has none of them, or a variant
    no target has, is an error. Unknown budget names fail too."""
    plan = {name: t.plan_variants(cfg.quantize) for name, t in targets.items()}
    if cfg.quantize:
        known = {v for t in targets.values() for v in t.variants}
        unknown = [v for v in cfg.quantize if v not in known]
        if unknown:
            raise BadInputError(f"--quantize: unknown variant(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        for name, t in targets.items():
            lacking = [v for v in cfg.quantize if v not in t.variants]
            if not plan[name]:
                raise BadInputError(f"--quantize {','.join(cfg.quantize)}: {name} has none of these variants "
                                    f"(its variants: {', '.join(t.variants)})")
            if lacking and rep is not None:
                rep.info(f"note: {name} has no {', '.join(lacking)} variant; it builds {', '.join(plan[name])}")
    for target, variants in cfg.budgets.items():
        cls = target_class(target)
        for variant, metrics in variants.items():
            if variant not in cls.variants:
                raise BadInputError(f"budgets.{target}.{variant}: unknown variant (known: {', '.join(cls.variants)})")
            parity.check_budget_names(metrics, f"budgets.{target}.{variant}")
    return plan


def sandboxing(cfg: BuildConfig, source) -> bool:
    """Whether model work runs sandboxed. A model file from elsewhere: always, unless
    `--trust-model`; where the sandbox cannot start it is refused (exit 4). A module:function
    builder and a training config are the user's own code (they may read the user's files): never.
    The bundled example: when the sandbox is available."""
    if source is not None and source.kind == "callable" or cfg.train_config or cfg.trust_model:
        return False
    if source is None:
        return sandbox.unavailable_reason() is None
    sandbox.require(source.location)
    return True


@dataclass
class Converter:
    """Runs convert workers for one preflight (`prepared`: the intake's or a `prepare` job's answer)."""

    cfg: BuildConfig
    prepared: dict
    model_file: str | None
    calibration: Path
    sandboxed: bool
    reads: list
    intake_dir: Path | None = None  # the intake worker's folder: where it wrote `converted` variants

    def convert(self, name: str, variant: str, dest_root: Path, work: Path) -> Artifact | str:
        """The artifact, moved to `dest_root/name/...`; or why its conversion failed (a string).
        A variant the intake worker already wrote out (`converted`) is only moved."""
        target = self.prepared["targets"][name]
        done = target.get("converted", {}).get(variant)
        if done is not None and self.intake_dir is not None:
            out = (self.intake_dir / "converted" / f"{name}-{variant}").resolve()
            artifact = self._move(name, variant, out, done, dest_root, "intake")
            checked = done.get("checked") or {}  # what it already ran (its files stay in its folder until the end)
            outputs = {b: worker.inside(self.intake_dir, p) for b, p in (checked.get("outputs") or {}).items()}
            return replace(artifact, checked={"outputs": outputs, "latency": checked.get("latency")}) if checked else artifact
        scratch = work / f"convert-{name}-{variant}"
        request = {"work": str(scratch), "target": name, "variant": variant, "plan": target["plan"],
                   "prepared": target["prepared"], "saved_model": self.prepared["saved_model"],
                   "model_file": self.model_file, "calibration": str(self.calibration)}
        try:
            answer = worker.call("convert", request, scratch=scratch, sandboxed=self.sandboxed, reads=self.reads,
                                 config=self.cfg, targets=[name], label="the converter")
        except BadInputError:  # a refusal (unsupported ops, bad settings): the build's error
            raise
        except DeployKitError as exc:  # crashed, hung, out of memory, or a converter bug
            return f"conversion failed: {exc.message}"
        return self._move(name, variant, (scratch / "out").resolve(), answer, dest_root, "own")

    @staticmethod
    def _move(name: str, variant: str, out: Path, answer: dict, dest_root: Path, where: str) -> Artifact:
        """Move a worker's answer (a path inside its folder `out`, no links) into the staging area;
        `where`: which worker converted it, recorded as `details.converted_in`."""
        produced = worker.inside(out, answer["path"])
        _refuse_links(produced)
        final = dest_root / name / produced.relative_to(out)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(produced, final)
        return Artifact(name, variant, final, {**(answer.get("details") or {}), "converted_in": f"{where} worker"})


class Runtimes:
    """Conversion and runtime calls with the build's targets, for the optimize stage: it asks the
    pipeline for its unoptimized baseline artifacts and their outputs instead of reaching into the
    targets and validation itself."""

    def __init__(self, cfg: BuildConfig, targets: Mapping[str, Target], converter: Converter, work: Path) -> None:
        self.cfg, self.targets, self.converter, self.work = cfg, targets, converter, work
        self._baseline: dict[Path, Target] = {}  # baseline artifact path -> the target that converted it

    def convert_like(self, model_file: str, records: list[ArtifactRecord]) -> dict[str, ArtifactRecord]:
        """Convert the model in `model_file` with the same targets and variants as `records`."""
        root = self.work / "baseline"
        names = sorted({r.target for r in records})
        c = self.converter
        prepared = worker.call("prepare", {"work": str(root / "prepare"), "model_file": model_file, "targets": names,
                                           "calibration": str(c.calibration)},
                               scratch=root / "prepare", sandboxed=c.sandboxed, reads=c.reads, config=self.cfg, targets=names,
                               label="optimize baseline: preflight")
        baseline = Converter(self.cfg, prepared["preflight"], model_file, c.calibration, c.sandboxed,
                             [*c.reads, root / "prepare"])
        built = {}
        for r in records:
            artifact = baseline.convert(r.target, r.variant, root, root)
            if isinstance(artifact, Artifact):
                artifact = self.targets[r.target].after_convert(artifact)
                self._baseline[artifact.path] = self.targets[r.target]
                built[r.key] = ArtifactRecord(artifact, records[0].inputs, {}, 0)
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


def run(cfg: BuildConfig, rep: Reporter, *, named: Mapping[str, str] | None = None) -> dict:
    """Build, validate and write artifacts; return the manifest. Raises a DeployKitError on failure
    (BudgetError carries the manifest of the failed build in `.manifest`).

    `named`: settings ("model", "data") that the Python API received as objects and saved to
    temporary files (deploykit.api); the manifest names them by these labels, not by those paths."""
    started = time.perf_counter()
    names = resolve(cfg.targets)
    targets = {n: target_class(n)(cfg.settings_for(n)) for n in names}
    variants = plan_variants(cfg, targets, rep)
    for t in targets.values():
        t.check_runtime(cfg)
    if cfg.model and cfg.train_config:
        raise BadInputError("--model and --train-config: give one (--train-config trains the model to build)")
    cfg = _absolute_paths(cfg)  # workers run elsewhere (a sandbox's scratch folder): relative paths would miss
    # `--model RUN` (a `deploykit train` run folder): its model, and its validation split as the data
    run_folder = None if "model" in (named or {}) else runs.resolve(cfg.model, cfg.data)
    if run_folder is not None:
        cfg = replace(cfg, model=str(run_folder.model), data=str(run_folder.data) if run_folder.data else cfg.data)
        rep.info(run_folder.describe())
        if run_folder.warning:
            rep.warn(run_folder.warning)
    source = sniff(cfg.model) if cfg.model else None  # bad paths fail before any worker starts
    findings = policy.vet(source, cfg.allow_unsafe_deserialization) if source else []  # the first wall
    sandboxed = sandboxing(cfg, source)  # the second
    for t in targets.values():
        t.sandboxed = sandboxed
    timings: dict[str, float] = {}

    with OutputFolder(cfg.out) as folder:
        staging, work = folder.staging, folder.staging / ".work"
        work.mkdir()
        # 1. the intake worker: model, data, reference outputs, canonical SavedModel, preflights -------
        intake_dir = work / "intake"
        reads = [p for p in (cfg.model if source and source.kind != "callable" else None, cfg.data) if p]
        label = "load model" if source else f"train {cfg.train_config}" if cfg.train_config else "train the bundled example (digits CNN)"
        with rep.step(f"{label}" + (" (sandboxed)" if sandboxed else "") + f": reference outputs, preflight {', '.join(names)}"):
            t0 = time.perf_counter()
            facts = _intake(cfg, source, variants, intake_dir, sandboxed, reads)
            timings["intake_seconds"] = time.perf_counter() - t0
        for warning in facts["data"]["warnings"]:  # all of them stay in the manifest (data.warnings)
            rep.warn(_console_warning(warning, variants))
        if cfg.optimize.requested and facts["source"]["optimizable"] is False and source is not None:
            rep.info(f"note: {facts['source']['note']}")
        contract = IOContract.from_json(facts["contract"])
        (staging / "validation").mkdir()
        inputs_npz, reference_npz = staging / "validation" / "inputs.npz", staging / "validation" / "reference.npz"
        save_npz(inputs_npz, read_npz(intake_dir / "inputs.npz", "the intake worker's inputs"))  # re-read safely
        reference = read_npz(intake_dir / "reference.npz", "the intake worker's reference outputs")
        save_npz(reference_npz, reference)
        if (intake_dir / "training").is_dir():  # the run's model and metrics ship with the build
            _refuse_links(intake_dir / "training")
            os.rename(intake_dir / "training", staging / "training")
        target_facts = {n: facts["preflight"]["targets"][n]["facts"] for n in names}
        for n in names:  # what a preflight changed that the user should know, e.g. shapes it fixed
            for note in target_facts[n].get("notes", []):
                rep.info(f"note: {n}: {note}")

        # 2. conversion: one worker per artifact, side by side, each followed by its target's host-side
        #    step (the serving image build) in the same slot --------------------------------------
        converter = Converter(cfg, facts["preflight"], facts.get("model_file"), intake_dir / "calibration.npz",
                              sandboxed, [*reads, intake_dir], intake_dir)
        jobs = [(name, v) for name in names for v in variants[name]]

        def convert(job):
            artifact = converter.convert(job[0], job[1], staging, work)
            return targets[job[0]].after_convert(artifact) if isinstance(artifact, Artifact) else artifact

        t0 = time.perf_counter()
        with rep.step(f"convert {len(jobs)} artifact(s)"):
            converted = map_jobs(convert, jobs, cfg.jobs)
        artifacts = [a for a in converted if isinstance(a, Artifact)]
        timings["convert_seconds"] = time.perf_counter() - t0

        # 3. validation in each runtime ---------------------------------------------------------
        records = [ArtifactRecord(a, inputs_npz, _budget(cfg, targets[a.target], a.variant, facts["data"]),
                                  manifest_mod.artifact_digest(a.path)[1]) for a in artifacts]
        t0, validation_timings = time.perf_counter(), {}
        label = "parity" + (" and latency" if cfg.latency.enabled else "")
        with rep.step(f"validate {len(records)} artifact(s): {label}"):
            judge.judge(records, targets, contract, reference, measure=cfg.latency.enabled,
                        settings=cfg.latency, work=work, jobs=cfg.jobs, rep=rep, timings=validation_timings)
        timings["validate_seconds"] = time.perf_counter() - t0
        for (name, variant), a in zip(jobs, converted):  # failed conversions: records without an artifact
            if not isinstance(a, Artifact):
                rep.warn(f"{name}/{variant}: {a}")
                records.append(_failed_record(name, variant, a, staging, targets, cfg))
        for r in records:  # with the default variants, only float32 is required (README: Parity and budgets)
            if not r.passed and not required(cfg, targets[r.target], r.variant):
                r.rejected = "missed its budget; not required (ask for it with --quantize to make it required)"
        for r in records:
            rep.info(_summary_line(r))
            if r.rejected:
                rep.warn(f"{r.key}: rejected, kept out of the output: " + "; ".join(f["message"] for f in r.failures))
        for name, t in targets.items():  # e.g. js auto-selection, serving --push
            extra = t.after_validation([r for r in records if r.artifact.path is not None], rep)
            if extra:
                target_facts[name].update(extra)
        for r in records:
            if r.rejected and r.artifact.path is not None:  # kept out of the output; the manifest says why
                shutil.rmtree(r.artifact.path) if r.artifact.path.is_dir() else r.artifact.path.unlink()
        kept = [r for r in records if not r.rejected]
        # what the optimization bought, against the unoptimized artifacts (deploykit/optimize)
        opt_section = None
        if "optimize" in facts:
            opt_section = _optimized(cfg, facts, contract, intake_dir).report(
                [r for r in kept if r.artifact.path is not None], Runtimes(cfg, targets, converter, work), cfg, rep)

        # 4. manifest and commit ------------------------------------------------------------------
        shutil.rmtree(work)
        timings["total_seconds"] = time.perf_counter() - started
        for step, seconds in facts.get("timings", {}).items():  # each step of the intake worker, in order
            timings[f"intake.{step}"] = seconds
        timings.update(validation_timings)  # each artifact's parity and latency run (and per backend)
        doc = _manifest(cfg, facts, findings, target_facts, records, staging, timings, sandboxed, named or {},
                        run_folder)
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
            kept_at = folder.keep_failed()  # artifacts, manifest and report, to look at or upload
            where = (f"the failed build is in {kept_at}" if kept_at else
                     f"the failed build was not kept ({folder.failed} exists and is not a failed deploykit build)")
            raise BudgetError(
                f"{len(lines)} budget failure(s); output folder left unchanged; {where}:\n  " + "\n  ".join(lines + notes),
                manifest=doc, details={"failures": lines, "notes": notes, "failed_build": str(kept_at) if kept_at else None},
            )
        for t in targets.values():  # e.g. serving --model-base-path: the new version joins the user's repository
            t.before_commit([r for r in records if r.artifact.path is not None], rep)
        folder.commit()
    rep.info(f"wrote {Path(cfg.out)} ({len(doc['artifacts'])} artifact(s), {timings['total_seconds']:.1f} s)")
    return doc


def _absolute_paths(cfg: BuildConfig) -> BuildConfig:
    """The model, data and training-config paths made absolute (a module:function spec stays)."""
    absolute = {key: os.path.abspath(value) for key in ("model", "data", "train_config")
                if (value := getattr(cfg, key)) and os.path.exists(value)}
    return replace(cfg, **absolute) if absolute else cfg


def _budget(cfg: BuildConfig, target: Target, variant: str, data_facts: dict) -> dict[str, float]:
    """The defaults, the user's budgets over them, then max_abs_rel raised to the model's own float32
    noise floor where that is higher (validation/noise.py); what was raised is recorded."""
    from deploykit.validation import noise

    budget = judge.budget_for(type(target), variant, cfg.budgets)
    floor_facts = data_facts.get("noise_floor") or {}
    floor = max(floor_facts.get("outputs", {}).values(), default=None)
    raised = noise.raised_budgets(budget, floor, cfg.budgets.get(target.name, {}).get(variant, {}))
    if raised != budget:
        floor_facts.setdefault("raised", {})[f"{target.name}/{variant}"] = {
            "max_abs_rel": {"default": budget["max_abs_rel"], "budget": raised["max_abs_rel"]}}
    return raised


def required(cfg: BuildConfig, target: Target, variant: str) -> bool:
    """Variants the user asked for (`--quantize`, or a target's own list such as `--js-quantize`)
    must pass; with the defaults only float32 must, and a quantized variant that misses its budget
    is rejected instead of failing the build."""
    if variant == "float32" or cfg.quantize is not None:
        return True
    return target.asked_variants() is not None


def _intake(cfg: BuildConfig, source, variants: dict[str, list[str]], scratch: Path, sandboxed: bool,
            reads: list) -> dict:
    names = list(variants)
    request = {"work": str(scratch), "model": cfg.model, "targets": names, "variants": variants}
    try:
        return worker.call("intake", request, scratch=scratch, sandboxed=sandboxed, reads=reads, config=cfg, targets=names,
                           label="load model")
    except worker.WorkerFailed as exc:  # the model's own code or a TensorFlow crash while loading it
        where = source.location if source else (cfg.train_config or "the bundled example")
        raise BadInputError(f"{where}: the model worker failed: {exc.message}") from None


def _optimized(cfg: BuildConfig, facts: dict, contract: IOContract, intake_dir: Path):
    """The optimize stage's answer, rebuilt in this process from what the intake worker wrote."""
    from types import SimpleNamespace

    from deploykit.optimize import Optimized
    from deploykit.optimize.finetune import Labelled

    opt = facts["optimize"]
    x_valid = read_npz(intake_dir / "optimize-valid-inputs.npz", "validation rows")
    y_valid = read_npz(intake_dir / "optimize-valid-labels.npz", "validation labels")["y"]
    data = Labelled({}, y_valid[:0], x_valid, y_valid, "intake", opt["kind"])
    return Optimized(original=opt["baseline_file"], model=SimpleNamespace(contract=contract), data=data,
                     settings=cfg.optimize, facts=opt["facts"])


def _refuse_links(path: Path) -> None:
    """A worker's output holds no symbolic links (one could point at a file of the user's)."""
    for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
        if p.is_symlink():
            raise worker.WorkerFailed(f"a worker's output holds a symbolic link: {p.name}")


def _failed_record(name, variant, reason, staging, targets, cfg) -> ArtifactRecord:
    record = ArtifactRecord(Artifact(name, variant, None, {"error": reason}), staging / "validation" / "inputs.npz",
                            judge.budget_for(type(targets[name]), variant, cfg.budgets), 0)
    record.parity = Parity(0, None, None)
    record.failures = [parity.Failure("conversion", reason).to_json()]
    return record


def _console_warning(warning: str, variants: Mapping[str, list[str]]) -> str:
    """The random-data warning without its calibration advice when no calibrated variant is built."""
    from deploykit.modelwork import RANDOM_DATA_WARNING

    if warning == RANDOM_DATA_WARNING and not CALIBRATED.intersection(v for vs in variants.values() for v in vs):
        return RANDOM_PARITY_WARNING
    return warning


def _summary_line(r: ArtifactRecord) -> str:
    verdict = "PASS" if r.passed else "REJECTED" if r.rejected else "FAIL"
    speed = f", p50 {r.latency['p50_ms']:.3f} ms" if r.latency else ""
    return f"{verdict} {r.key}: {r.bytes:,} bytes{speed}"


def _manifest(cfg, facts, findings, target_facts, records, staging: Path, timings, sandboxed: bool,
              named: Mapping[str, str], run: runs.Run | None = None) -> dict:
    # sizes are relative to each target's float32 artifact, even one a hook rejected (--js-quantize auto)
    float_bytes = {r.target: r.bytes for r in records if r.variant == "float32"}
    artifacts = []
    for r in records:
        if r.rejected:
            continue
        digest = manifest_mod.artifact_digest(r.artifact.path)[0] if r.artifact.path is not None else None
        artifacts.append(r.to_manifest(staging, digest, float_bytes.get(r.target)).to_json())
    source = {**facts["source"], "policy_findings_allowed": list(findings)}
    data_facts, example = facts["data"], facts.get("example")
    if "model" in named:  # an in-memory model, saved to a temporary file for the build
        source.update(kind="in_memory", location=named["model"])
    if "data" in named:
        data_facts = {**data_facts, "origin": "in_memory", "path": named["data"]}
    if run is not None and run.data is not None:  # the rows are the run's validation split
        data_facts = {**data_facts, "origin": "training"}
    if run is not None and run.warning:
        data_facts = {**data_facts, "warnings": [run.warning, *data_facts.get("warnings", [])]}
    recorded = replace(cfg, **named)  # settings as given: a temporary path would change the hash every build
    rejected = [{"target": r.target, "variant": r.variant, "reason": r.rejected, "failures": r.failures}
                for r in records if r.rejected]
    doc = {
        "schema_version": manifest_mod.SCHEMA_VERSION,
        "deploykit_version": __version__,
        "created_at": manifest_mod.now(),
        "passed": all(a["passed"] for a in artifacts),
        "source": source,
        "config": {"hash": recorded.config_hash(), "settings": recorded.to_json()},
        "environment": manifest_mod.environment(),
        "contract": facts["contract"],
        "isolation": {"workers": "process per job", "sandbox": "bubblewrap" if sandboxed else None,
                      "trusted_model": not sandboxed},
        "data": {
            **data_facts,
            "inputs": "validation/inputs.npz",
            "reference": "validation/reference.npz",
        },
        "targets": target_facts,
        "artifacts": artifacts,
        "rejected": rejected,
        "files": manifest_mod.file_table(staging),
        "timings": {k: round(v, 3) for k, v in timings.items()},
        # the intake worker's peak resident memory (MB) when each of its steps ended
        "memory": {f"intake.{step}": mb for step, mb in facts.get("memory", {}).items()},
    }
    if example:
        doc["example"] = example
    if run is not None:  # built from a `deploykit train` run folder: the run's facts
        doc["training"] = run.record
    elif facts.get("training"):
        doc["training"] = facts["training"]
    return doc
