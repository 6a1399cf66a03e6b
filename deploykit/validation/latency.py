"""Time calls into a runtime, and turn the raw timings a harness reports into the latency figures
in the manifest.

Every harness (Python, Node, browser, HTTP client) returns raw per-call milliseconds; the
statistics are computed here once, the same way for every target. `timed_calls` is the one timing
loop of the Python harnesses (in process, over REST, and the LiteRT harness, which runs in its own
process and may import this module: it imports only numpy); targets/js/sampling.mjs is its twin
for the TF.js harness (Node and the browser), with the same stopping rule (tests/test_latency.py
holds the two to the same decisions).

Sampling stops when the estimate is good enough (`Sampling.verdict`), not after a fixed count:
the 95% confidence interval of p50 must be within +-p50_tolerance of it and that of p99 within
+-p99_tolerance, after at least `min_iterations` calls; `iterations` and `max_seconds` cap it. The
intervals are distribution-free (order statistics: the ranks n*q -+ 1.96*sqrt(n*q*(1-q)), the normal
approximation of the binomial), so they need no assumption about the shape of the timings. When
p99 cannot get an interval within the time cap (fewer than `P99_MIN_CALLS` calls fit), sampling
stops once p50 has converged and p99 is reported without one.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

Z95 = 1.959963984540054  # two-sided 95%
CONVERGED, TIME_CAP, ITERATION_CAP = "converged", "time cap", "iteration cap"


def quantile_interval(ordered: Sequence[float], q: float, z: float = Z95) -> tuple[float, float] | None:
    """The distribution-free confidence interval of the q-quantile of sorted samples, or None when
    there are too few samples for it (the ranks fall outside 1..n)."""
    n = len(ordered)
    half = z * math.sqrt(n * q * (1 - q))
    lo, hi = math.floor(n * q - half), math.ceil(n * q + half)  # 1-based ranks
    if lo < 1 or hi > n:
        return None
    return float(ordered[lo - 1]), float(ordered[hi - 1])


def _min_calls(q: float, z: float = Z95) -> int:
    """The fewest samples for which `quantile_interval(., q)` exists."""
    n = 1
    while quantile_interval(range(n), q, z) is None:
        n += 1
    return n


P99_MIN_CALLS = _min_calls(0.99)  # 381


@dataclass(frozen=True)
class Sampling:
    """When to stop timing: the caps, the floor and the tolerances (defaults: config.LatencySettings)."""

    iterations: int  # cap: timed calls
    max_seconds: float  # cap: seconds of timed calls
    min_iterations: int  # floor
    p50_tolerance: float  # stop when p50's 95% interval is within +-p50_tolerance of p50 ...
    p99_tolerance: float  # ... and p99's within +-p99_tolerance of p99

    @classmethod
    def of(cls, settings) -> "Sampling":
        """From a LatencySettings or a harness request (a dict with the same keys)."""
        get = settings.__getitem__ if isinstance(settings, Mapping) else lambda k: getattr(settings, k)
        return cls(int(get("iterations")), float(get("max_seconds")), int(get("min_iterations")),
                   float(get("p50_tolerance")), float(get("p99_tolerance")))

    def verdict(self, ordered: Sequence[float], elapsed_s: float) -> str | None:
        """Why to stop after these (sorted) timings, `elapsed_s` seconds into the timed calls; None: go on."""
        n = len(ordered)
        if n >= self.iterations:
            return ITERATION_CAP
        if elapsed_s >= self.max_seconds:
            return TIME_CAP
        if n < self.min_iterations:
            return None
        if not _within(ordered, 0.5, self.p50_tolerance):
            return None
        if _within(ordered, 0.99, self.p99_tolerance):
            return CONVERGED
        # p99 can get no interval before the time cap: p50 is what this artifact's timings can tell
        reachable = n >= P99_MIN_CALLS or elapsed_s / n * P99_MIN_CALLS < self.max_seconds
        return None if reachable else CONVERGED


def _within(ordered: Sequence[float], q: float, tolerance: float) -> bool:
    ci = quantile_interval(ordered, q)
    if ci is None:
        return False
    estimate = float(np.percentile(ordered, q * 100))
    return ci[1] - ci[0] <= 2 * tolerance * estimate


def next_check(n: int) -> int:
    """After how many timed calls the stopping rule is consulted next (every ~10%: sorting stays cheap)."""
    return max(n + 10, math.ceil(n * 1.1))


def timed_calls(call: Callable[[int], object], warmup: int, sampling: Sampling, *,
                warmup_seconds: float | None = None) -> tuple[list[float], float, str]:
    """(per-call milliseconds, first-call milliseconds, why sampling stopped) of `call(i)`, which
    runs the i-th call.

    The first call, `call(0)`, is timed on its own (the first inference: it pays for lazy
    initialisation). Then `call(i)` for i in range(warmup), untimed; with `warmup_seconds`, the
    warm-up also stops once that many seconds are spent. Then timed calls until `sampling` says
    stop (checked outside the timed region).
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
    started, check, i = clock(), 1, 0
    while True:
        t0 = clock()
        call(i)
        t1 = clock()
        timings.append((t1 - t0) * 1000)
        i += 1
        # the caps every call, the intervals every ~10% more calls
        if i >= sampling.iterations or t1 - started >= sampling.max_seconds or i >= check:
            stopped = sampling.verdict(sorted(timings), t1 - started)
            if stopped:
                return timings, first_ms, stopped
            check = next_check(i)


def intervals(timings_ms: Sequence[float]) -> dict:
    """p50's and p99's 95% intervals (ms), None where there are too few calls for one."""
    ordered = sorted(timings_ms)
    ci = {q: quantile_interval(ordered, q) for q in (0.5, 0.99)}
    return {"p50_ci_ms": list(ci[0.5]) if ci[0.5] else None, "p99_ci_ms": list(ci[0.99]) if ci[0.99] else None,
            "ci_level": 0.95}


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
        **intervals(t),
        "stopped": facts.get("stopped"),  # converged, time cap or iteration cap (Sampling.verdict)
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
