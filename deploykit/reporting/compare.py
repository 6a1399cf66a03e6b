"""Regressions of a build against a baseline build: size, latency, parity and agreement deltas,
judged against `Thresholds` (the `[regression]` table and the `report` flags)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from deploykit import settings as loader
from deploykit.errors import BadInputError
from deploykit.records import entries


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
    deltas, regressions = [], []
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
        for m in ("p50_ms", "p99_ms"):
            n, o = lat_new.get(m), lat_old.get(m)
            d[f"{m}_old"], d[f"{m}_new"], d[f"{m}_ratio"] = o, n, _ratio(n, o)
            if n is not None and o is not None and n - o > th.latency_noise_ms and n > o * th.latency_ratio:
                regressions.append(_reg(key, "latency", m, o, n,
                                        f"{m} {o:.4f} -> {n:.4f} ms ({n / o:.2f}x, limit {th.latency_ratio:.2f}x)"))
        d["parity"] = {}
        for out_name, metrics in a.parity.outputs.items():
            before = b.parity.outputs.get(out_name, {})
            d["parity"][out_name] = {m: {"old": before.get(m), "new": metrics.get(m)}
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
        if b.passed and not a.passed:
            regressions.append(_reg(key, "verdict", "passed", True, False, "passed before, fails now"))
        deltas.append(d)
    for key in old_by:
        if key not in new_keys:
            deltas.append({"target": key[0], "variant": key[1], "status": "removed"})
    return {"created_at": old["created_at"], "config_hash": old["config"]["hash"], "thresholds": asdict(th),
            "deltas": deltas, "regressions": regressions, "passed": not regressions}


def _ratio(new, old):
    return (new / old) if new is not None and old else None


def _reg(key, kind, metric, old, new, message, output=None) -> dict:
    r = {"target": key[0], "variant": key[1], "kind": kind, "metric": metric, "old": old, "new": new,
         "message": f"{key[0]}/{key[1]}: {message}"}
    if output is not None:
        r["output"] = output
    return r


# -- rendering ---------------------------------------------------------------------------------------
