"""Load figures and verdicts: concurrency levels a harness measured, summarized and judged once,
the same way for every target that reports them (today: serving, `targets/serving/load.py`).

A harness returns, per level, `api`, `batching`, `clients`, `requests`, `errors`, `wrong_outputs`,
`first_error`, `seconds` and the raw milliseconds of its OK answers (`timings_ms`). The manifest
keeps, per level, the counts and p50/p90/p99/max and throughput (OK answers per second of the
level's wall time), not the raw timings. A level fails the artifact when it has any error, and
when it breaks a load budget (`load_p50_ms`, `load_p99_ms`: ceilings that apply to every level).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from deploykit.validation.parity import LOAD_METRICS, Failure


def summarize(levels: Sequence[Mapping], plan: Mapping | None = None) -> dict:
    out = []
    for raw in levels:
        t = np.asarray(raw.get("timings_ms") or [], dtype=np.float64)
        p50, p90, p99 = (float(x) for x in np.percentile(t, [50, 90, 99])) if t.size else (None, None, None)
        wall = float(raw.get("seconds") or 0.0)
        out.append({
            "api": raw["api"], "batching": raw["batching"], "clients": int(raw["clients"]),
            "requests": int(raw["requests"]), "errors": int(raw["errors"]),
            "wrong_outputs": int(raw.get("wrong_outputs") or 0), "first_error": raw.get("first_error"),
            "seconds": round(wall, 3), "throughput_per_s": round(t.size / wall, 2) if wall > 0 else None,
            "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": float(t.max()) if t.size else None,
        })
    return {"plan": dict(plan or {}), "levels": out}


def name(level: Mapping) -> str:
    """How a failure names a level: `load rest, batching off, 16 clients`."""
    clients = level["clients"]
    return f"load {level['api']}, batching {level['batching']}, {clients} client{'s' if clients != 1 else ''}"


def failures(load: Mapping | None, budget: Mapping[str, float]) -> list[Failure]:
    """Every level with errors, then every level over a load budget, in the order measured."""
    if not load:
        return []
    found = []
    for level in load.get("levels", []):
        if level["errors"]:
            wrong = f", {level['wrong_outputs']} of them wrong outputs" if level.get("wrong_outputs") else ""
            found.append(Failure("load", f"{name(level)}: {level['errors']} of {level['requests']} requests failed{wrong} "
                                         f"(first: {level.get('first_error')})", metric="errors",
                                 value=float(level["errors"]), budget=0.0))
        elif not level["requests"] or level.get("p50_ms") is None:
            found.append(Failure("load", f"{name(level)}: no request was answered", metric="requests", value=0.0))
    for metric, limit in budget.items():
        if metric not in LOAD_METRICS:
            continue
        for level in load.get("levels", []):
            value = level.get(metric.removeprefix("load_"))
            if value is not None and value > limit:
                found.append(Failure("load", f"{name(level)}: {metric.removeprefix('load_')} = {value:.6g}, "
                                             f"budget {metric} <= {limit:g}", metric=metric, value=value, budget=limit))
    return found
