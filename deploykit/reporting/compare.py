"""Regressions of a build against a baseline build: size, latency, parity and agreement deltas,
judged against `Thresholds` (the `[regression]` table and the `report` flags).

Latency is judged with its noise: each build's p50 and p99 come with the 95% confidence interval
the build measured on its raw per-call times (`latency.p50_ci_ms`, `p99_ci_ms`: order statistics,
validation/latency.py); a manifest without one (older builds, too few calls for a p99 interval)
gets a bootstrap interval resampled from the per-call histogram it keeps (`latency.histogram`).
A change counts only when the intervals are apart. A change beyond the thresholds whose intervals overlap
is "inconclusive", which is reported but is not a regression (README: Reports).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from deploykit import settings as loader
from deploykit.errors import BadInputError
from deploykit.records import entries

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # fixed: the same two manifests always give the same intervals and verdict
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Thresholds:
    """When a change against the baseline counts as a regression."""

    size_increase: float = 0.05  # bytes may grow by 5%
    latency_ratio: float = 1.25  # p50 and p99 may be 1.25x the baseline's ...
    latency_noise_ms: float = 0.05  # ... and differences under this many ms are noise
    parity_ratio: float = 2.0  # max_abs_rel / rmse may double ...
    parity_noise: float = 1e-6  # ... and absolute changes under this are noise
    agreement_drop: float = 0.005  # cosine / top1_agreement may drop by this much

    @classmethod
    def from_sources(cls, config: str | None = None, **flags: Any) -> "Thresholds":
        """Defaults < `[regression]` table of a TOML file < flags (None = not given)."""
        values: dict[str, Any] = {}
        if config:
            table = loader.read_toml(config).get("regression", {})
            try:  # unknown keys and wrong types in the file, named with the file
                loader.from_table(cls, table, "regression")
            except BadInputError as exc:
                raise BadInputError(f"{config}: {exc.message}") from None
            values.update(table)
        values.update({k: v for k, v in flags.items() if v is not None})
        th = loader.from_table(cls, values, "regression")
        for f in fields(th):
            v = getattr(th, f.name)
            if not v >= 0 or v == float("inf"):  # NaN compares false
                raise BadInputError(f"regression.{f.name}: must be a non-negative number (got {v!r})")
        return th


_LOWER_IS_BETTER = ("max_abs_rel", "rmse")
_HIGHER_IS_BETTER = ("cosine", "top1_agreement")


def compare(new: dict, old: dict, th: Thresholds) -> dict:
    old_by = {(a.target, a.variant): a for a in entries(old)}
    new_keys = {(a.target, a.variant) for a in entries(new)}
    deltas, regressions, inconclusive = [], [], []
    for a in entries(new):
        key = (a.target, a.variant)
        b = old_by.get(key)
        if b is None:
            deltas.append({"target": key[0], "variant": key[1], "status": "new"})
            continue
        d = {"target": key[0], "variant": key[1], "status": "compared",
             "bytes_old": b.bytes, "bytes_new": a.bytes, "bytes_ratio": _ratio(a.bytes, b.bytes)}
        if d["bytes_ratio"] is not None and d["bytes_ratio"] > 1 + th.size_increase:
            regressions.append(_reg(key, "size", "bytes", b.bytes, a.bytes,
                                    f"size grew {d['bytes_ratio']:.3f}x (limit {1 + th.size_increase:.3f}x)"))
        lat_new, lat_old = a.latency or {}, b.latency or {}
        d["latency"] = {}
        for m, q in (("p50_ms", 0.50), ("p99_ms", 0.99)):
            n, o = lat_new.get(m), lat_old.get(m)
            d[f"{m}_old"], d[f"{m}_new"], d[f"{m}_ratio"] = o, n, _ratio(n, o)
            if n is None or o is None:
                continue
            judged = judge_latency(o, n, lat_old.get("histogram"), lat_new.get("histogram"), q, th,
                                   recorded=(lat_old.get(f"{m[:3]}_ci_ms"), lat_new.get(f"{m[:3]}_ci_ms")))
            d["latency"][m] = judged
            text = _latency_text(m, o, n, judged, th)
            if judged["state"] == "regression":
                regressions.append(_reg(key, "latency", m, o, n, text))
            elif judged["state"] == "inconclusive":
                inconclusive.append(_reg(key, "latency", m, o, n, text + ": the intervals overlap"))
        d["parity"] = {}
        for out_name, metrics in a.parity.outputs.items():
            before = b.parity.outputs.get(out_name, {})
            d["parity"][out_name] = {m: {"old": before.get(m), "new": metrics.get(m),
                                         "delta": _delta(metrics.get(m), before.get(m)), "regression": False}
                                     for m in (*_LOWER_IS_BETTER, *_HIGHER_IS_BETTER) if m in metrics}
            for m in _LOWER_IS_BETTER:
                n, o = metrics.get(m), before.get(m)
                if n is not None and o is not None and n - o > th.parity_noise and n > o * th.parity_ratio:
                    regressions.append(_reg(key, "parity", m, o, n, f"{out_name}: {m} {o:.3g} -> {n:.3g}"
                                            f" (limit {th.parity_ratio:g}x)", output=out_name))
            for m in _HIGHER_IS_BETTER:
                n, o = metrics.get(m), before.get(m)
                if n is not None and o is not None and o - n > th.agreement_drop:
                    regressions.append(_reg(key, "parity", m, o, n, f"{out_name}: {m} {o:.4f} -> {n:.4f}"
                                            f" (drop limit {th.agreement_drop:g})", output=out_name))
        for r in regressions:  # mark the parity figures that regressed, for the tables
            if r["kind"] == "parity" and (r["target"], r["variant"]) == key:
                d["parity"][r["output"]][r["metric"]]["regression"] = True
        if b.passed and not a.passed:
            regressions.append(_reg(key, "verdict", "passed", True, False, "passed before, fails now"))
        deltas.append(d)
    for key in old_by:
        if key not in new_keys:
            deltas.append({"target": key[0], "variant": key[1], "status": "removed"})
    return {"created_at": old["created_at"], "config_hash": old["config"]["hash"], "thresholds": asdict(th),
            "deltas": deltas, "regressions": regressions, "inconclusive": inconclusive, "passed": not regressions}


def judge_latency(old: float, new: float, hist_old: dict | None, hist_new: dict | None, q: float,
                  th: Thresholds, recorded: tuple = (None, None)) -> dict:
    """One latency percentile of one artifact, old against new: {state, ratio, ci_old, ci_new, method}.

    state is "unchanged" (within latency_ratio or latency_noise_ms), else "regression" (slower) or
    "improvement" (faster) when the two 95% intervals are apart, else "inconclusive". The intervals
    are the ones both builds `recorded` (method "recorded"), else bootstrapped from both histograms
    ("bootstrap"), else the values themselves ("point").
    """
    if all(recorded):
        ci_old, ci_new, method = list(recorded[0]), list(recorded[1]), "recorded"
    elif hist_old and hist_new:
        ci_old, ci_new = quantile_interval(hist_old, q, old), quantile_interval(hist_new, q, new)
        method = "bootstrap"
    else:
        ci_old, ci_new, method = [old, old], [new, new], "point"
    slower = new - old > th.latency_noise_ms and new > old * th.latency_ratio
    faster = old - new > th.latency_noise_ms and old > new * th.latency_ratio
    if slower:
        state = "regression" if ci_new[0] > ci_old[1] else "inconclusive"
    elif faster:
        state = "improvement" if ci_new[1] < ci_old[0] else "inconclusive"
    else:
        state = "unchanged"
    return {"state": state, "ratio": _ratio(new, old), "ci_old": ci_old, "ci_new": ci_new, "method": method}


def quantile_interval(hist: dict | None, q: float, point: float, resamples: int = BOOTSTRAP_RESAMPLES) -> list[float]:
    """A 95% bootstrap confidence interval, in ms, for the q-quantile of the per-call times that
    `hist` ({edges_ms, counts}) bins: resample as many calls as were timed from the binned
    distribution (multinomial counts per bin), locate the quantile's bin in each resample, and take
    the bins holding the 2.5th and 97.5th percentiles of those. The interval spans whole bins (the
    histogram cannot place a time more finely than its bin) and always holds `point`, the
    percentile measured on the raw times."""
    import numpy as np

    if not hist or not hist.get("counts"):
        return [point, point]
    edges = np.asarray(hist["edges_ms"], dtype=np.float64)
    counts = np.asarray(hist["counts"], dtype=np.int64)
    n = int(counts.sum())
    if n == 0 or len(edges) != len(counts) + 1:
        return [point, point]
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    samples = rng.multinomial(n, counts / n, size=resamples)
    cumulative = np.cumsum(samples, axis=1)
    rank = max(q * n, 1e-9)  # the quantile is the first call whose cumulative count reaches q * n
    bins = np.minimum((cumulative < rank).sum(axis=1), len(counts) - 1)
    tail = (1 - CONFIDENCE) / 2
    lo_bin, hi_bin = (int(b) for b in np.quantile(bins, [tail, 1 - tail], method="inverted_cdf"))
    return [float(min(edges[lo_bin], point)), float(max(edges[hi_bin + 1], point))]


def _latency_text(m: str, o: float, n: float, judged: dict, th: Thresholds) -> str:
    ratio = f"{n / o:.2f}x, limit {th.latency_ratio:.2f}x" if o else "baseline 0"
    if judged["method"] == "point":
        return f"{m} {o:.4f} -> {n:.4f} ms ({ratio}; no histogram: the recorded values compared)"
    lo_o, hi_o = judged["ci_old"]
    lo_n, hi_n = judged["ci_new"]
    return f"{m} {o:.4f} -> {n:.4f} ms ({ratio}; 95% intervals [{lo_o:.4g}, {hi_o:.4g}] -> [{lo_n:.4g}, {hi_n:.4g}] ms)"


def _delta(new, old):
    return (new - old) if new is not None and old is not None else None


def _ratio(new, old):
    return (new / old) if new is not None and old else None


def _reg(key, kind, metric, old, new, message, output=None) -> dict:
    r = {"target": key[0], "variant": key[1], "kind": kind, "metric": metric, "old": old, "new": new,
         "message": f"{key[0]}/{key[1]}: {message}"}
    if output is not None:
        r["output"] = output
    return r


# -- rendering ---------------------------------------------------------------------------------------
