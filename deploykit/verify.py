"""Run artifacts in their own runtimes and judge them: parity, latency, size, against budgets.

Used by `build` (right after conversion) and by `deploykit validate OUT` (later, e.g. in another CI
job, with no model and no TensorFlow: the reference outputs are stored in the build).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from . import latency as latency_stats
from . import parity
from .config import LatencySettings
from .contract import IOContract
from .runner import map_jobs
from .targets import Artifact, RunRequest, Target


def budget_for(target: type[Target], variant: str, overrides: Mapping) -> dict[str, float]:
    merged = dict(target.default_budgets.get(variant, {}))
    merged.update(overrides.get(target.name, {}).get(variant, {}))
    return merged


def check_parity(
    target: Target, artifact: Artifact, contract: IOContract, reference: Mapping[str, np.ndarray],
    inputs: Path, budget: Mapping[str, float], work: Path,
) -> dict:
    outputs_path = work / f"{artifact.target}-{artifact.variant}.outputs.npz"
    request = RunRequest(artifact, inputs, outputs_path, "parity", LatencySettings())
    result = target.run(request, work)
    record = {
        "samples": len(next(iter(reference.values()))),
        "runtime": result.get("runtime"),
        "runtime_version": result.get("runtime_version"),
        "outputs": {},
    }
    if not result.get("ok"):
        failure = parity.Failure("runtime", result.get("error", "runtime failed"))
        return {**record, "passed": False, "failures": [failure.to_json()]}
    with np.load(outputs_path, allow_pickle=False) as npz:
        candidate = {k: npz[k] for k in npz.files}
    metrics, failures = parity.compare(contract, reference, candidate, budget)
    return {**record, "outputs": metrics, "passed": not failures, "failures": [f.to_json() for f in failures]}


def measure_latency(target: Target, artifact: Artifact, inputs: Path, settings: LatencySettings, work: Path) -> dict:
    """Returns {"latency": summary} or {"error": message}."""
    request = RunRequest(artifact, inputs, work / "unused.npz", "latency", settings)
    result = target.run(request, work)
    if not result.get("ok"):
        return {"error": result.get("error", "runtime failed")}
    return {"latency": latency_stats.summarize(result["timings_ms"], result)}


def judge(
    records: list[dict], contract: IOContract, reference: Mapping[str, np.ndarray], *,
    measure: bool, settings: LatencySettings, work: Path, jobs: int = 2,
) -> None:
    """Fill "parity", "latency", "failures" and "passed" into each record, in place.

    A record holds "target" (instance), "artifact", "inputs" (.npz path), "budget" and "bytes".
    Parity runs side by side; latency runs one artifact at a time so measurements do not compete
    for cores. Latency is measured for every artifact the runtime could run, passed or not.
    """
    def one(record: dict) -> dict:
        return check_parity(record["target"], record["artifact"], contract, reference, record["inputs"], record["budget"], work)

    for record, result in zip(records, map_jobs(one, records, jobs)):
        record["parity"] = result
    for record in records:
        record["latency"] = None
        failures = list(record["parity"].pop("failures"))
        ran = not any(f["kind"] == "runtime" for f in failures)
        if measure and ran:  # timed even when parity failed: "faster but unfaithful" is worth knowing
            measured = measure_latency(record["target"], record["artifact"], record["inputs"], settings, work)
            if "error" in measured:
                failures.append(parity.Failure("runtime", measured["error"]).to_json())
            else:
                record["latency"] = measured["latency"]
        lat = record["latency"] or {}
        facts = {"bytes": record["bytes"], **{k: lat.get(k) for k in ("p50_ms", "p90_ms", "p99_ms", "load_ms")}}
        failures += [f.to_json() for f in parity.check_artifact_budgets(facts, record["budget"])]
        record["failures"] = failures
        record["passed"] = not failures


def failure_lines(artifacts: list[dict]) -> list[str]:
    lines = []
    for a in artifacts:
        for f in a["failures"]:
            lines.append(f"{a['target']}/{a['variant']}: {f['message']}")
    return lines


def revalidate(out: str | Path, *, latency: bool = False, settings: LatencySettings | None = None, jobs: int = 2) -> dict:
    """Re-run validation of an existing build: checksums first, then every artifact in its runtime
    against the reference outputs stored in the build. Needs no model and no TensorFlow."""
    import tempfile

    from . import manifest as manifest_mod
    from .errors import BadInputError, BudgetError, SecurityError
    from .targets import target_class

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
    with np.load(root / doc["data"]["reference"], allow_pickle=False) as npz:
        reference = {k: npz[k] for k in npz.files}
    targets: dict[str, Target] = {}
    records = []
    for entry in doc["artifacts"]:
        cls = target_class(entry["target"])
        target = targets.setdefault(entry["target"], cls())
        target.check_runtime()
        artifact = Artifact(entry["target"], entry["variant"], root / entry["path"], entry["details"])
        records.append({"target": target, "artifact": artifact, "inputs": root / doc["data"]["inputs"],
                        "budget": entry["budget"], "bytes": entry["bytes"]})
    with tempfile.TemporaryDirectory(prefix="deploykit-validate-") as work:
        judge(records, contract, reference, measure=latency, settings=settings or LatencySettings(),
              work=Path(work), jobs=jobs)
    report = {
        "out": str(root),
        "passed": all(r["passed"] for r in records),
        "artifacts": [
            {"target": r["artifact"].target, "variant": r["artifact"].variant, "passed": r["passed"],
             "parity": r["parity"], "latency": r["latency"], "failures": r["failures"]}
            for r in records
        ],
    }
    if not report["passed"]:
        lines = failure_lines(report["artifacts"])
        raise BudgetError(f"{len(lines)} budget failure(s):\n  " + "\n  ".join(lines), manifest=report,
                          details={"failures": lines})
    return report
