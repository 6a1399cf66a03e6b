"""The latency stopping rule (deploykit/validation/latency.py) and its TF.js twin
(targets/js/sampling.mjs): intervals that cover, decisions that stop when the estimate is good
enough and not before, and the two implementations deciding alike on the same timings."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from deploykit.config import LatencySettings
from deploykit.targets import harness_path
from deploykit.validation import latency
from deploykit.validation.latency import CONVERGED, ITERATION_CAP, TIME_CAP, Sampling

RULE = Sampling(iterations=20000, max_seconds=5.0, min_iterations=100, p50_tolerance=0.02, p99_tolerance=0.10)


@pytest.mark.parametrize("n", [100, 400, 1000, 5000])
@pytest.mark.parametrize("q", [0.5, 0.99])
def test_quantile_interval_ranks_match_the_exact_binomial_interval(n, q):
    """The normal-approximation ranks are within one rank of scipy's exact (binomial) interval."""
    stats = pytest.importorskip("scipy.stats")
    ordered = np.arange(1.0, n + 1)  # value = rank
    ours = latency.quantile_interval(ordered, q)
    exact = stats.quantile_test(ordered, q=float(np.quantile(ordered, q)), p=q).confidence_interval(0.95)
    if ours is None:
        assert q == 0.99 and n < latency.P99_MIN_CALLS
        return
    assert abs(ours[0] - exact.low) <= 1 and abs(ours[1] - exact.high) <= 1, (ours, exact)


def test_intervals_cover_the_true_percentile_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    true_p50, true_p99 = np.exp(0.0), np.exp(0.3 * 2.3263478740408408)  # lognormal(0, 0.3)
    covered = {0.5: 0, 0.99: 0}
    trials = 400
    for _ in range(trials):
        ordered = np.sort(rng.lognormal(0.0, 0.3, 1000))
        for q, truth in ((0.5, true_p50), (0.99, true_p99)):
            lo, hi = latency.quantile_interval(ordered, q)
            covered[q] += lo <= truth <= hi
    for q, hits in covered.items():
        assert 0.91 <= hits / trials <= 0.99, (q, hits / trials)


def test_too_few_calls_give_no_p99_interval():
    assert latency.quantile_interval(np.ones(latency.P99_MIN_CALLS - 1), 0.99) is None
    assert latency.quantile_interval(np.ones(latency.P99_MIN_CALLS), 0.99) is not None
    summary = latency.summarize([1.0, 2.0, 3.0] * 20, {})
    assert summary["p99_ci_ms"] is None and summary["p50_ci_ms"] is not None and summary["ci_level"] == 0.95


def steady(n, spread=0.001, seed=0):
    return sorted(np.random.default_rng(seed).normal(1.0, spread, n).tolist())


def test_steady_timings_stop_at_the_floor_noisy_ones_go_on():
    assert RULE.verdict(steady(99), 0.1) is None  # below the floor
    assert RULE.verdict(steady(100), 0.1) is None  # p99 has no interval yet and can get one in time
    assert RULE.verdict(steady(400), 0.4) == CONVERGED
    noisy = sorted(np.random.default_rng(1).lognormal(0.0, 1.0, 400).tolist())
    assert RULE.verdict(noisy, 0.4) is None  # p50's interval is wider than +-2%
    assert RULE.verdict(noisy, 5.0) == TIME_CAP
    assert RULE.verdict(steady(20000), 1.0) == ITERATION_CAP


def test_a_slow_artifact_stops_on_p50_when_p99_is_out_of_reach():
    """200 calls in 3 s: 381 calls would not fit in the 5 s cap, so p50 alone decides."""
    assert RULE.verdict(steady(200), 3.0) == CONVERGED
    assert RULE.verdict(steady(200), 1.0) is None  # 381 calls fit in 1.9 s: wait for p99


def test_timed_calls_respect_the_caps_and_say_why_they_stopped():
    capped = Sampling(iterations=50, max_seconds=60, min_iterations=10, p50_tolerance=1e-9, p99_tolerance=1e-9)
    timings, first_ms, stopped = latency.timed_calls(lambda i: None, 3, capped)
    assert (len(timings), stopped) == (50, ITERATION_CAP) and first_ms >= 0
    import time

    timed = Sampling(iterations=10**9, max_seconds=0.2, min_iterations=10, p50_tolerance=1e-9, p99_tolerance=1e-9)
    t0 = time.perf_counter()
    timings, _, stopped = latency.timed_calls(lambda i: time.sleep(0.001), 0, timed)
    assert stopped == TIME_CAP and time.perf_counter() - t0 < 2 and 10 < len(timings) < 250


def test_settings_carry_the_rule_to_the_harnesses():
    lat = LatencySettings(max_seconds=2.0, p99_tolerance=0.2)
    assert Sampling.of(lat) == Sampling.of(lat.sampling()) == Sampling(20000, 2.0, 100, 0.02, 0.2)


CASES = [  # (sorted timings, elapsed seconds)
    (steady(99), 0.1), (steady(100), 0.1), (steady(400), 0.4), (steady(200), 3.0), (steady(200), 1.0),
    (sorted(np.random.default_rng(1).lognormal(0.0, 1.0, 400).tolist()), 0.4),
    (sorted(np.random.default_rng(2).lognormal(0.0, 0.05, 2000).tolist()), 2.0),
    (sorted(np.random.default_rng(3).lognormal(0.0, 0.2, 900).tolist()), 0.9), (steady(500), 6.0),
]


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is installed by scripts/setup-js.sh")
def test_the_js_twin_decides_like_the_python_rule():
    """sampling.mjs (TF.js harness, Node and browser) against latency.py on the same timings."""
    module = harness_path("js", "sampling.mjs").resolve().as_uri()
    script = f"""
import {{ verdict, sampling, quantileInterval, percentile, P99_MIN_CALLS }} from '{module}';
const cases = JSON.parse(process.argv[1]);
const rule = sampling({json.dumps(LatencySettings().sampling())});
console.log(JSON.stringify({{min: P99_MIN_CALLS, out: cases.map(([t, e]) => [verdict(rule, t, e),
  quantileInterval(t, 0.5), quantileInterval(t, 0.99), percentile(t, 0.5), percentile(t, 0.99)])}}));
"""
    proc = subprocess.run(["node", "--input-type=module", "-e", script, json.dumps(CASES)], capture_output=True,
                          text=True, timeout=60, check=True)
    got = json.loads(proc.stdout)
    rule = Sampling.of(LatencySettings())
    assert got["min"] == latency.P99_MIN_CALLS
    for (timings, elapsed), (decision, ci50, ci99, p50, p99) in zip(CASES, got["out"]):
        assert decision == rule.verdict(timings, elapsed), (len(timings), elapsed)
        for ours, theirs in ((latency.quantile_interval(timings, 0.5), ci50), (latency.quantile_interval(timings, 0.99), ci99)):
            assert (ours is None and theirs is None) or list(ours) == theirs
        assert p50 == pytest.approx(np.percentile(timings, 50)) and p99 == pytest.approx(np.percentile(timings, 99))
    assert {d for d, *_ in got["out"]} >= {None, CONVERGED, TIME_CAP}
