"""Run artifacts in their own runtimes and judge them: parity, latency, size, against budgets.

Used by `build` (right after conversion) and by `deploykit validate OUT` (later, e.g. in another CI
job, with no model and no TensorFlow: the reference outputs are stored in the build).

Every backend a runtime ran (js: cpu, wasm, chromium; serving: in process and over REST) goes
through the same comparison; the record keeps each backend's metrics, `parity.outputs` the worst
value of each metric over the backends, and the artifact passes only when every backend passed.
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Mapping

import numpy as np

from deploykit.config import LatencySettings
from deploykit.contract import IOContract
from deploykit.progress import Reporter, Tasks, silent
from deploykit.records import ArtifactRecord, BackendParity, Parity, entries
from deploykit.runner import map_jobs
from deploykit.targets import RunRequest, Target
from deploykit.validation import latency as latency_stats
from deploykit.validation import load as load_stats
from deploykit.validation import parity


def budget_for(target: type[Target], variant: str, overrides: Mapping) -> dict[str, float]:
    merged = dict(target.default_budgets.get(variant, {}))
    merged.update(overrides.get(target.name, {}).get(variant, {}))
    return merged


def run_outputs(target: Target, artifact, inputs: Path, work: Path, tag: str = "parity") -> tuple[dict, dict]:
    """Run `artifact` on `inputs` in parity mode: (the harness's result, backend -> outputs)."""
    prefix = work / f"{artifact.target}-{artifact.variant}-{tag}"
    request = RunRequest(artifact, inputs, prefix, "parity", LatencySettings())
    result = target.run(request, work)
    outputs: dict[str, dict[str, np.ndarray]] = {}
    if result.get("ok"):
        for backend in result.get("backends") or []:
            with np.load(request.outputs_for(backend), allow_pickle=False) as npz:
                outputs[backend] = {k: npz[k] for k in npz.files}
    return result, outputs


def check_parity(target: Target, record: ArtifactRecord, contract: IOContract, reference: Mapping[str, np.ndarray],
                 work: Path, timings: dict | None = None) -> tuple[Parity, list[dict]]:
    result, outputs = run_outputs(target, record.artifact, record.inputs, work)
    per_backend = result.get("seconds") or {}
    if timings is not None and len(per_backend) > 1:  # a runtime that ran several backends: each one's time
        timings.update({f"validate.parity.{record.key}[{b}]": seconds for b, seconds in per_backend.items()})
    samples = len(next(iter(reference.values())))
    judged = Parity(samples, result.get("runtime"), result.get("runtime_version"))
    if not result.get("ok") or not outputs:
        failure = parity.Failure("runtime", result.get("error", "the runtime reported no outputs"))
        return judged, [failure.to_json()]
    failures: list[dict] = []
    for backend, candidate in outputs.items():
        metrics, found = parity.compare(contract, reference, candidate, record.budget)
        if len(outputs) > 1:  # name the backend when there is more than one
            found = [replace(f, message=f"[{backend}] {f.message}") for f in found]
        docs = [f.to_json() for f in found]
        failures += docs
        judged.backends[backend] = BackendParity(metrics, docs, not found)
    judged.outputs = parity.worst_metrics([b.outputs for b in judged.backends.values()])
    judged.passed = not failures
    if len(outputs) == 1:  # one backend: its figures are the record's, nothing to add
        judged.backends = {}
    return judged, failures


def measure_latency(target: Target, artifact, inputs: Path, settings: LatencySettings, work: Path,
                    timings: dict | None = None) -> dict:
    """Returns {"latency": summary} (and "measured_in" when the target measured it in an earlier step)
    or {"error": message}. A runtime that timed several backends
    (js: wasm and the browser) reports the slowest; each one's figures go under `backends`."""
    request = RunRequest(artifact, inputs, work / f"{artifact.target}-{artifact.variant}-latency", "latency", settings)
    result = target.run(request, work)
    if not result.get("ok"):
        return {"error": result.get("error", "runtime failed")}
    summary = latency_stats.summarize(result["timings_ms"], result)
    per_backend = result.get("backends") if isinstance(result.get("backends"), dict) else {}
    if per_backend:  # js: one harness run per timed backend
        summary["backends"] = {}
        for name, facts in per_backend.items():
            figures = latency_stats.summarize(facts["timings_ms"], facts)
            summary["backends"][name] = {k: figures[k] for k in BACKEND_FIGURES}
            if timings is not None and facts.get("seconds") is not None:
                timings[f"validate.latency.{artifact.target}/{artifact.variant}[{name}]"] = facts["seconds"]
    if result.get("load"):  # concurrency levels (the serving container check's load stage)
        summary["load"] = load_stats.summarize(result["load"]["levels"], result["load"].get("plan"))
    if result.get("measured_in"):  # measured earlier (serving without a container: in the intake worker)
        return {"latency": summary, "measured_in": result["measured_in"]}
    return {"latency": summary}


BACKEND_FIGURES = ("iterations", "p50_ms", "p99_ms", "p50_ci_ms", "p99_ci_ms", "stopped", "load_ms")


def judge(records: list[ArtifactRecord], targets: Mapping[str, Target], contract: IOContract,
          reference: Mapping[str, np.ndarray], *, measure: bool, settings: LatencySettings, work: Path,
          jobs: int = 2, rep: Reporter | None = None, timings: dict | None = None) -> None:
    """Fill `parity`, `latency`, `failures` and `passed` into each record, in place.

    Parity runs side by side; latency runs one artifact at a time so measurements do not compete
    for cores. Latency is measured for every artifact the runtime could run, passed or not.
    `rep` hears of each artifact as it starts and finishes, per phase (parity, latency), with
    its time and verdict, and of each backend's verdict when the runtime ran several.
    `timings` (the manifest's) gets `validate.parity.KEY` and `validate.latency.KEY` in seconds, and
    `...KEY[backend]` where a runtime ran several backends.
    """
    rep = rep or silent()
    timings = {} if timings is None else timings

    def one(record: ArtifactRecord, log: Tasks):
        log.started(record.key)
        t0 = time.perf_counter()
        try:
            judged, failures = check_parity(targets[record.target], record, contract, reference, work, timings)
        except BaseException as exc:
            log.finished(record.key, False, f"error: {type(exc).__name__}", time.perf_counter() - t0)
            raise
        timings[f"validate.parity.{record.key}"] = time.perf_counter() - t0
        ok, verdict = _parity_verdict(judged, failures)
        backends = {name: _parity_verdict(b, b.failures, f"[{name}] ") for name, b in judged.backends.items()}
        log.finished(record.key, ok, verdict, time.perf_counter() - t0, backends)
        return judged, failures

    with rep.tasks("parity", len(records)) as log:
        judged = map_jobs(lambda r: one(r, log), records, jobs)
    for record, (result, failures) in zip(records, judged):
        record.parity = result
        record.latency = None
        record.failures = failures
    # timed even when parity failed ("faster but unfaithful" is worth knowing), not when it could not run
    timed = [r for r in records if not any(f["kind"] == "runtime" for f in r.failures)] if measure else []
    with rep.tasks("latency", len(timed)) if timed else nullcontext() as log:
        for record in timed:
            log.started(record.key)
            t0 = time.perf_counter()
            measured = measure_latency(targets[record.target], record.artifact, record.inputs, settings, work, timings)
            timings[f"validate.latency.{record.key}"] = time.perf_counter() - t0
            if "error" in measured:
                record.failures.append(parity.Failure("runtime", measured["error"]).to_json())
                log.finished(record.key, False, f"fail: {_clip(measured['error'])}", time.perf_counter() - t0)
            else:
                record.latency = lat = measured["latency"]
                earlier = f" (measured in {measured['measured_in']})" if measured.get("measured_in") else ""
                log.finished(record.key, True, f"p50 {lat['p50_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms"
                             + _load_verdict(lat.get("load")) + earlier, None if earlier else time.perf_counter() - t0)
    for record in records:
        lat = record.latency or {}
        facts = {"bytes": record.bytes, **{k: lat.get(k) for k in ("p50_ms", "p90_ms", "p99_ms", "load_ms")}}
        record.failures += [f.to_json() for f in parity.check_artifact_budgets(facts, record.budget)]
        record.failures += [f.to_json() for f in load_stats.failures(lat.get("load"), record.budget)]
        record.passed = not record.failures


def _load_verdict(load: dict | None) -> str:
    """"; load 16 levels, 0 errors, best 1234 req/s" for a progress line ("" without a load stage)."""
    if not load or not load.get("levels"):
        return ""
    levels = load["levels"]
    best = max((lv["throughput_per_s"] or 0 for lv in levels), default=0)
    return f"; load {len(levels)} levels, {sum(lv['errors'] for lv in levels)} errors, best {best:.0f} req/s"


def _parity_verdict(judged, failures: list[dict], prefix: str = "") -> tuple[bool, str]:
    """(passed, "pass, max_abs_rel 1.2e-06" or "fail: the first failure (+N more)") for a progress line."""
    if failures:
        more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
        return False, f"fail: {_clip(failures[0]['message'].removeprefix(prefix))}{more}"
    worst = [m["max_abs_rel"] for m in (judged.outputs or {}).values() if m.get("max_abs_rel") is not None]
    return True, "pass" + (f", max_abs_rel {max(worst):.2g}" if worst else "")


def _clip(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def failure_lines(artifacts: list[dict]) -> list[str]:
    lines = []
    for a in artifacts:
        for f in a["failures"]:
            lines.append(f"{a['target']}/{a['variant']}: {f['message']}")
    return lines


def _stored(path: Path, tensors, what: str) -> dict[str, np.ndarray]:
    """A build's stored validation arrays, read safely and matched against the manifest's contract."""
    from deploykit.arrays import read_npz
    from deploykit.errors import BadInputError

    arrays = read_npz(path, what)
    names = [t.name for t in tensors]
    if sorted(arrays) != sorted(names):
        raise BadInputError(f"{path}: holds {', '.join(sorted(arrays)) or 'nothing'}, the manifest's contract names "
                            f"{', '.join(names)} ({what})")
    rows = {len(a) if a.ndim else -1 for a in arrays.values()}
    if len(rows) != 1 or -1 in rows or 0 in rows:
        raise BadInputError(f"{path}: {what} must have the same number of rows (>= 1) in every array")
    for t in tensors:
        a = arrays[t.name]
        if a.ndim != len(t.shape) or any(d is not None and d != g for d, g in zip(t.shape[1:], a.shape[1:])):
            raise BadInputError(f"{path}[{t.name}]: shape {a.shape} does not match the contract {list(t.shape)}")
    return arrays


def revalidate(out: str | Path, *, latency: bool = False, settings: LatencySettings | None = None, jobs: int = 2) -> dict:
    """Re-run validation of an existing build: checksums first, then every artifact in its runtime
    against the reference outputs stored in the build. Needs no model and no TensorFlow."""
    import tempfile

    from deploykit import manifest as manifest_mod
    from deploykit.errors import BadInputError, BudgetError, SecurityError
    from deploykit.targets import Artifact, target_class

    root = Path(out)
    doc = manifest_mod.read(root)
    escapes = manifest_mod.escaping_paths(root, doc)
    if escapes:
        raise SecurityError(escapes[0] + (f" (+{len(escapes) - 1} more)" if len(escapes) > 1 else ""),
                            details={"problems": escapes})
    problems = manifest_mod.verify_files(root, doc)
    if problems:
        raise BadInputError(problems[0] + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""),
                            details={"problems": problems})
    contract = IOContract.from_json(doc["contract"])
    reference = _stored(root / doc["data"]["reference"], contract.outputs, "reference outputs")
    _stored(root / doc["data"]["inputs"], contract.inputs, "parity inputs")
    targets: dict[str, Target] = {}
    records = []
    for entry in entries(doc):
        if entry.target not in targets:
            targets[entry.target] = target_class(entry.target)()
            targets[entry.target].check_runtime()
        artifact = Artifact(entry.target, entry.variant, root / entry.path, entry.details)
        records.append(ArtifactRecord(artifact, root / doc["data"]["inputs"], entry.budget, entry.bytes))
    with tempfile.TemporaryDirectory(prefix="deploykit-validate-") as work:
        judge(records, targets, contract, reference, measure=latency, settings=settings or LatencySettings(),
              work=Path(work), jobs=jobs)
    report = {
        "out": str(root),
        "passed": all(r.passed for r in records),
        "artifacts": [
            {"target": r.target, "variant": r.variant, "passed": r.passed,
             "parity": r.parity.to_json(), "latency": r.latency, "failures": r.failures}
            for r in records
        ],
    }
    if not report["passed"]:
        lines = failure_lines(report["artifacts"])
        raise BudgetError(f"{len(lines)} budget failure(s):\n  " + "\n  ".join(lines), manifest=report,
                          details={"failures": lines})
    return report
