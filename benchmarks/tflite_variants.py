"""Size, latency and parity of the five TFLite variants, measured in the LiteRT runtime.

For each model, one `deploykit.build` produces float32, float16, dynamic, int8 and int16x8
artifacts, checks their parity against the Keras model and times single-sample invocations.
Prints one table per model and writes the figures to benchmarks/results/tflite_variants.json.

    python benchmarks/tflite_variants.py [--models example,mobilenetv2] [--iterations N] [--max-seconds S]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # deploykit and benchmarks.models, whatever the working folder

VARIANTS = ("float32", "float16", "dynamic", "int8", "int16x8")
RESULTS = ROOT / "benchmarks" / "results" / "tflite_variants.json"
RANDOM_NOTE = ("calibration and parity data are random images (uniform in [-1, 1]) and the weights are "
               "random: a known weakness. int8/int16x8 scales are fitted to noise, and a near-uniform "
               "softmax makes top-1 agreement noisy. Figures for size and latency stand; parity does not "
               "predict accuracy on real images.")
MODELS = {
    "example": {"model": None, "rows": None,
                "note": "bundled digits CNN (trained at build time); data: the digits validation split"},
    "mobilenetv2": {"model": "benchmarks.models:mobilenetv2", "rows": 64,
                    "note": "tf_keras MobileNetV2, 224x224x3, weights=None (random, seeded), BatchNorm statistics "
                            "re-estimated on other random images (see benchmarks/models.py). " + RANDOM_NOTE},
    "mobilenetv2-raw": {"model": "benchmarks.models:mobilenetv2_raw", "rows": 64,  # not run by default
                        "note": "MobileNetV2 exactly as built with weights=None: its softmax is 1/1000 for every "
                                "input, so parity here is vacuous. " + RANDOM_NOTE},
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="example,mobilenetv2", help="comma-separated: " + ", ".join(MODELS))
    p.add_argument("--iterations", type=int, default=1000, help="timed invocations per variant (default 1000)")
    p.add_argument("--max-seconds", type=float, default=10.0, help="stop timing a variant after this long (default 10)")
    p.add_argument("--warmup", type=int, default=50, help="untimed invocations before timing (default 50)")
    p.add_argument("--budget-override", action="append", default=[], metavar="VARIANT.METRIC=VALUE",
                   help="relax a budget for every model, e.g. int8.cosine=0.9 or '*.top1_agreement=0' (printed as RELAXED)")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown or not args.models:
        p.error(f"--models: unknown {', '.join(unknown) or '(none given)'} (known: {', '.join(MODELS)})")
    args.overrides = {}
    for item in args.budget_override:
        try:
            key, value = item.split("=")
            variant, metric = key.split(".")
            for v in VARIANTS if variant == "*" else [variant]:
                args.overrides.setdefault(v, {})[metric] = float(value)
        except ValueError:
            p.error(f"--budget-override {item!r}: expected VARIANT.METRIC=VALUE, e.g. int8.cosine=0.9")
    return args


def build_model(name: str, args, work: Path) -> dict:
    """One deploykit build of all five variants; the manifest even when a budget fails."""
    import numpy as np

    import deploykit
    from deploykit.errors import BudgetError
    from deploykit.progress import for_terminal

    spec, data = MODELS[name], None
    if spec["rows"]:
        from benchmarks.models import mobilenetv2_data

        data = work / f"{name}-data.npz"
        np.savez(data, **mobilenetv2_data(spec["rows"]))
    started = time.perf_counter()
    try:
        manifest = deploykit.build(
            model=spec["model"], data=str(data) if data else None, quantize=VARIANTS, out=str(work / name),
            latency={"warmup": args.warmup, "iterations": args.iterations, "max_seconds": args.max_seconds},
            budgets={"tflite": args.overrides} if args.overrides else None, reporter=for_terminal(),
        )
    except BudgetError as exc:
        if exc.manifest is None:
            raise
        manifest = exc.manifest
    return {"manifest": manifest, "wall_seconds": time.perf_counter() - started}


def worst(outputs: dict) -> dict:
    """Parity metrics over all outputs, keeping the worst value of each."""
    merged: dict = {}
    for metrics in outputs.values():
        for k, v in metrics.items():
            better_high = k in ("cosine", "top1_agreement")
            merged[k] = v if k not in merged else (min if better_high else max)(merged[k], v)
    return merged


def rows_of(manifest: dict) -> list[dict]:
    arts = manifest["artifacts"]
    base = next((a["latency"] or {} for a in arts if a["variant"] == "float32"), {})
    rows = []
    for a in arts:
        lat, metrics = a["latency"] or {}, worst(a["parity"]["outputs"])
        p50 = lat.get("p50_ms")
        rows.append({
            "variant": a["variant"], "bytes": a["bytes"], "size_ratio": a["size_ratio_to_float32"],
            "p50_ms": p50, "p90_ms": lat.get("p90_ms"), "p99_ms": lat.get("p99_ms"),
            "p50_ratio": p50 / base["p50_ms"] if p50 and base.get("p50_ms") else None,
            "load_ms": lat.get("load_ms"), "iterations": lat.get("iterations"),
            "passed": a["passed"], "budget": a["budget"], "failures": [f["message"] for f in a["failures"]],
            "default_budget_breaches": default_breaches(a["variant"], metrics),
            **{k: metrics.get(k) for k in ("max_abs_rel", "top1_agreement", "cosine")},
        })
    return rows


def default_breaches(variant: str, metrics: dict) -> list[str]:
    """Which of deploykit's default parity budgets these metrics break (matters under overrides)."""
    from deploykit.targets import target_class
    from deploykit.validation.parity import OUTPUT_METRICS  # metric -> True when the budget is a floor

    found = []
    for metric, limit in target_class("tflite").default_budgets.get(variant, {}).items():
        value, floor = metrics.get(metric), OUTPUT_METRICS.get(metric)
        if value is None or floor is None:
            continue
        if not math.isfinite(value) or (value < limit if floor else value > limit):
            found.append(f"{metric} = {value:.6g}, default budget {'>=' if floor else '<='} {limit:g}")
    return found


def verdict(r: dict) -> str:
    if not r["passed"]:
        return "FAIL **"
    return "PASS *" if r["default_budget_breaches"] else "PASS"


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict]) -> str:
    head = ["variant", "bytes", "size x", "p50 ms", "p90 ms", "p99 ms", "p50 x", "load ms", "n",
            "parity", "max_abs_rel", "top1", "cosine"]
    body = [[r["variant"], fmt(r["bytes"], ","), fmt(r["size_ratio"], ".3f"), fmt(r["p50_ms"], ".3f"),
             fmt(r["p90_ms"], ".3f"), fmt(r["p99_ms"], ".3f"), fmt(r["p50_ratio"], ".2f"), fmt(r["load_ms"], ".1f"),
             fmt(r["iterations"], "d"), verdict(r), fmt(r["max_abs_rel"], ".2e"),
             fmt(r["top1_agreement"], ".3f"), fmt(r["cosine"], ".6f")] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


def report(name: str, result: dict, args) -> list[dict]:
    m, rows = result["manifest"], rows_of(result["manifest"])
    data, parity = m["data"], m["artifacts"][0]["parity"]
    print(textwrap.fill(f"== {name}: {MODELS[name]['note']}", 110, initial_indent="\n", subsequent_indent="   "))
    print(f"   parity rows {data['parity_rows']}, calibration rows {data['calibration_rows']}, runtime "
          f"{parity.get('runtime')} {parity.get('runtime_version')}, 1 thread, build {result['wall_seconds']:.1f} s")
    if args.overrides:
        print(f"   !! RELAXED BUDGETS, not deploykit's defaults: --budget-override {', '.join(args.budget_override)}")
        print("   !! PASS * = passes only the relaxed budget; it FAILS deploykit's default budget")
    print(table(rows))
    for r in rows:
        for message in r["failures"]:
            print(f"   ** FAIL {r['variant']}: {message}")
        if not r["passed"] and r["p50_ms"] is None:
            print(f"   ** {r['variant']}: no latency (the runtime could not run it)")
        if r["passed"] and r["default_budget_breaches"]:
            print(f"   *  {r['variant']} fails the default budget: {'; '.join(r['default_budget_breaches'])}")
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    doc = {"created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "latency": {"warmup": args.warmup, "iterations": args.iterations, "max_seconds": args.max_seconds, "threads": 1},
           "budget_overrides": args.overrides or None, "load_average_at_start": os.getloadavg()[0], "models": {}}
    with tempfile.TemporaryDirectory(prefix="deploykit-bench-") as tmp:
        for name in args.models:
            result = build_model(name, args, Path(tmp))
            m = result["manifest"]
            doc["models"][name] = {
                "note": MODELS[name]["note"], "passed": m["passed"], "build_seconds": round(result["wall_seconds"], 1),
                "data": {k: m["data"].get(k) for k in ("origin", "rows", "parity_rows", "calibration_rows")},
                "conversion": m["targets"].get("tflite"), "variants": report(name, result, args),
            }
    doc["wall_seconds"] = round(time.perf_counter() - started, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nsize x and p50 x are ratios to float32; n = timed invocations; wall time {doc['wall_seconds']:.1f} s; "
          f"load average at start {doc['load_average_at_start']:.2f} on {os.cpu_count()} cores")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    from deploykit.errors import DeployKitError

    try:
        sys.exit(main())
    except DeployKitError as exc:  # bad option or input: one line, deploykit's exit code
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
