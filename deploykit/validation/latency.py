"""Time calls into a runtime, and turn the raw timings a harness reports into the latency figures
in the manifest.

Every harness (Python, Node, browser, HTTP client) returns raw per-call milliseconds; the
statistics are computed here once, the same way for every target. `timed_calls` is the one timing
loop of the Python harnesses (in process, over REST, and the LiteRT harness, which runs in its own
process and may import this module: it imports only numpy).
"""
from __future__ import annotations

import time
from typing import Callable, Mapping, Sequence

import numpy as np


def timed_calls(call: Callable[[int], object], warmup: int, iterations: int, max_seconds: float, *,
                warmup_seconds: float | None = None) -> tuple[list[float], float]:
    """(per-call milliseconds, first-call milliseconds) of `call(i)`, which runs the i-th call.

    The first call, `call(0)`, is timed on its own (the first inference: it pays for lazy
    initialisation). Then `call(i)` for i in range(warmup), untimed; with `warmup_seconds`, the
    warm-up also stops once that many seconds are spent. Then `call(i)` for i in range(iterations),
    each timed, stopping after the first call that ends more than `max_seconds` after the timed
    calls started.
    """
    clock = time.perf_counter
    t0 = clock()
    call(0)
    first_ms = (clock() - t0) * 1000
    warm_deadline = None if warmup_seconds is None else clock() + warmup_seconds
    for i in range(int(warmup)):
        call(i)
        if warm_deadline is not None and clock() > warm_deadline:
            break
    timings: list[float] = []
    deadline = clock() + max_seconds
    for i in range(int(iterations)):
        t0 = clock()
        call(i)
        t1 = clock()
        timings.append((t1 - t0) * 1000)
        if t1 > deadline:
            break
    return timings, first_ms


def summarize(timings_ms: Sequence[float], facts: Mapping) -> dict:
    """`facts` carries what the harness measured besides per-call timings (load time, memory...)."""
    t = np.asarray(timings_ms, dtype=np.float64)
    if t.size == 0:
        raise ValueError("no timings to summarize")
    total_s = float(t.sum()) / 1000.0
    p50, p90, p99 = np.percentile(t, [50, 90, 99])
    return {
        "iterations": int(t.size),
        "warmup": int(facts.get("warmup", 0)),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "max_ms": float(t.max()),
        "min_ms": float(t.min()),
        "throughput_per_s": float(t.size / total_s) if total_s > 0 else None,
        "load_ms": facts.get("load_ms"),
        "first_inference_ms": facts.get("first_inference_ms"),
        "peak_rss_mb": facts.get("peak_rss_mb"),
        "threads": facts.get("threads"),
        "process_threads": facts.get("process_threads"),
        "runtime": facts.get("runtime"),
        "runtime_version": facts.get("runtime_version"),
        "histogram": histogram(t),
    }


def histogram(t: np.ndarray, bins: int = 24) -> dict:
    """A compact distribution of per-call times for the report: log-spaced bins from min to max."""
    lo, hi = float(t.min()), float(t.max())
    if hi <= lo or lo <= 0:
        edges = np.array([lo, hi if hi > lo else lo + 1e-6])
    else:
        edges = np.geomspace(lo, hi, bins + 1)
    counts, edges = np.histogram(t, bins=edges)
    return {"edges_ms": [round(float(e), 6) for e in edges], "counts": [int(c) for c in counts]}
