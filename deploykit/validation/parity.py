"""Compare an artifact's outputs with the reference model's, and judge them against budgets.

Checks run in the order names -> shapes -> values, and every failure is collected before the
verdict, so one run tells the user everything that is wrong.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from deploykit.contract import IOContract
from deploykit.errors import BadInputError

# metric -> True when a larger value is better (the budget is a floor), False for a ceiling.
OUTPUT_METRICS = {
    "max_abs": False,
    "max_abs_rel": False,  # max abs error divided by the reference output's max |value|
    "mean_abs": False,
    "rmse": False,
    "cosine": True,
    "top1_agreement": True,  # only for classification-shaped outputs: (batch, classes)
}
ARTIFACT_METRICS = {"bytes": False, "p50_ms": False, "p90_ms": False, "p99_ms": False, "load_ms": False}
# ceilings on every concurrency level of a load stage (validation/load.py; the serving container check)
LOAD_METRICS = {"load_p50_ms": False, "load_p99_ms": False}
BUDGET_METRICS = {**OUTPUT_METRICS, **ARTIFACT_METRICS, **LOAD_METRICS}


@dataclass(frozen=True)
class Failure:
    kind: str  # "name", "shape", "value", "runtime", "latency", "size", "load", "conversion" (the worker failed)
    message: str
    output: str | None = None
    metric: str | None = None
    value: float | None = None
    budget: float | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def check_budget_names(budget: Mapping[str, float], where: str) -> None:
    unknown = set(budget) - set(BUDGET_METRICS)
    if unknown:
        raise BadInputError(
            f"{where}: unknown budget metric(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(BUDGET_METRICS)})"
        )


def check_reference(reference: Mapping[str, np.ndarray], location: str) -> list[str]:
    """Refuse a reference with NaN/Inf (exit 2); warn about outputs that never vary, since
    matching a constant proves nothing about an artifact."""
    warnings = []
    for name, values in reference.items():
        values = np.asarray(values)
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        if bad:
            raise BadInputError(f"{location}: the model's output '{name}' holds {bad} NaN or Inf value(s) on the parity data")
        if len(values) > 1 and np.all(values == values[:1]):
            warnings.append(f"output '{name}' is identical for every parity row: parity against it proves little "
                            "(untrained weights, or data the model ignores?)")
    return warnings


def output_metrics(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    ref = reference.astype(np.float64)
    got = candidate.astype(np.float64)
    diff = np.abs(got - ref)
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    max_abs = float(np.max(diff)) if diff.size else 0.0
    metrics = {
        "max_abs": max_abs,
        "max_abs_rel": max_abs / scale if scale > 0 else max_abs,
        "mean_abs": float(np.mean(diff)) if diff.size else 0.0,
        "rmse": float(np.sqrt(np.mean(diff**2))) if diff.size else 0.0,
        "cosine": _cosine(ref.ravel(), got.ravel()),
    }
    if ref.ndim == 2 and ref.shape[1] >= 2:
        metrics["top1_agreement"] = float(np.mean(np.argmax(ref, 1) == np.argmax(got, 1)))
    if not np.all(np.isfinite(got)):
        metrics = {k: float("nan") for k in metrics}
    return metrics


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def _breach(metric: str, value: float, limit: float) -> bool:
    if value is None or not np.isfinite(value):
        return True
    return value < limit if BUDGET_METRICS[metric] else value > limit


def compare(
    contract: IOContract,
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    budget: Mapping[str, float],
) -> tuple[dict[str, dict[str, float]], list[Failure]]:
    """Return (metrics per output, failures) for one artifact's outputs."""
    failures: list[Failure] = []
    expected = contract.output_names
    for name in expected:
        if name not in candidate:
            failures.append(Failure("name", f"output '{name}' is missing", output=name))
    for name in candidate:
        if name not in expected:
            failures.append(Failure("name", f"unexpected output '{name}'", output=name))
    present = [n for n in expected if n in candidate]
    for name in present:
        ref_shape, got_shape = np.shape(reference[name]), np.shape(candidate[name])
        if ref_shape != got_shape:
            failures.append(
                Failure("shape", f"output '{name}' has shape {got_shape}, expected {ref_shape}", output=name)
            )
    metrics: dict[str, dict[str, float]] = {}
    for name in present:
        if np.shape(reference[name]) != np.shape(candidate[name]):
            continue
        metrics[name] = output_metrics(np.asarray(reference[name]), np.asarray(candidate[name]))
        for metric, limit in budget.items():
            if metric not in OUTPUT_METRICS or metric not in metrics[name]:
                continue  # e.g. top1_agreement on a regression output
            value = metrics[name][metric]
            if _breach(metric, value, limit):
                op = ">=" if OUTPUT_METRICS[metric] else "<="
                failures.append(
                    Failure(
                        "value",
                        f"output '{name}': {metric} = {value:.6g}, budget {op} {limit:g}",
                        output=name,
                        metric=metric,
                        value=value,
                        budget=limit,
                    )
                )
    return metrics, failures


def check_artifact_budgets(facts: Mapping[str, float | None], budget: Mapping[str, float]) -> list[Failure]:
    """Size and latency budgets: `facts` holds bytes, p50_ms, ... for one artifact."""
    failures = []
    for metric, limit in budget.items():
        if metric not in ARTIFACT_METRICS:
            continue
        value = facts.get(metric)
        if value is None:
            continue  # latency not measured in this run
        if _breach(metric, value, limit):
            kind = "size" if metric == "bytes" else "latency"
            failures.append(
                Failure(kind, f"{metric} = {value:.6g}, budget <= {limit:g}", metric=metric, value=value, budget=limit)
            )
    return failures


def worst_metrics(per_backend: list[Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, float]]:
    """Output -> metric -> the worst value over the backends (lowest for floors, highest for ceilings)."""
    worst: dict[str, dict[str, float]] = {}
    for outputs in per_backend:
        for name, metrics in outputs.items():
            into = worst.setdefault(name, {})
            for metric, value in metrics.items():
                if metric not in into or not np.isfinite(value):
                    into[metric] = value
                elif np.isfinite(into[metric]):
                    into[metric] = min(into[metric], value) if OUTPUT_METRICS.get(metric) else max(into[metric], value)
    return worst
