"""TF.js bundles beside TFLite on the same machine: bundle size per variant relative to float32,
load time, and p50 per backend relative to the float32 TFLite p50.

For each model, one `deploykit.build` makes the TFLite float32 artifact and the four TF.js
variants (graph model) and checks their parity (TF.js: on every backend, judged on the worst).
The build runs with budgets that cannot fail, so a variant that breaks deploykit's default budget
(uint8 weights on MobileNetV2 do) is still written and timed; the table judges every variant
against the default budgets and lists each breach.
Then every artifact is timed in its own runtime with the same settings, one process per backend:
TFLite float32 in LiteRT, each TF.js variant on each backend (Node cpu, Node wasm, Chromium wasm,
optionally Chromium WebGL). Prints one table per model; writes benchmarks/results/js.json.

    python benchmarks/js.py [--models example,mobilenetv2] [--backends cpu,wasm,chromium-wasm]
                            [--iterations N] [--max-seconds S] [--warmup N]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # deploykit and benchmarks.models, whatever the working folder

JS_VARIANTS = ("float32", "float16", "uint16", "uint8")
BACKENDS = ("cpu", "wasm", "chromium-wasm", "chromium-webgl")
RESULTS = ROOT / "benchmarks" / "results" / "js.json"
NEVER_FAIL = {"max_abs_rel": 1e30, "cosine": -1.0, "top1_agreement": 0.0}  # verdicts: default_breaches()
MODELS = {
    "example": {"model": None, "rows": None,
                "note": "bundled digits CNN (trained at build time); data: the digits validation split"},
    "mobilenetv2": {"model": "benchmarks.models:mobilenetv2", "rows": 16,
                    "note": "tf_keras MobileNetV2, 224x224x3, weights=None (random, seeded, BatchNorm statistics "
                            "re-estimated, see benchmarks/models.py); data: 16 random images in [-1, 1] (the tfjs "
                            "cpu backend takes about a second per image). Size and latency stand; parity on random "
                            "weights and images does not predict accuracy."},
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="example,mobilenetv2", help="comma-separated: " + ", ".join(MODELS))
    p.add_argument("--backends", default="cpu,wasm,chromium-wasm", help="TF.js backends: " + ", ".join(BACKENDS))
    p.add_argument("--iterations", type=int, default=1000, help="timed invocations per artifact and backend (default 1000)")
    p.add_argument("--max-seconds", type=float, default=10.0, help="stop timing one artifact on one backend after this long")
    p.add_argument("--warmup", type=int, default=20, help="untimed invocations before timing (default 20)")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [m for m in args.models if m not in MODELS] + [b for b in args.backends if b not in BACKENDS]
    if unknown or not args.models or not args.backends:
        p.error(f"unknown or missing model/backend: {', '.join(unknown) or '(none given)'}")
    return args


def build(name: str, args, work: Path) -> tuple[dict, float]:
    """TFLite float32 and every TF.js variant, parity only (timing follows, artifact by artifact)."""
    import numpy as np

    import deploykit
    from deploykit.progress import for_terminal

    spec, data = MODELS[name], None
    if spec["rows"]:
        from benchmarks.models import mobilenetv2_data

        data = work / f"{name}-data.npz"
        np.savez(data, **mobilenetv2_data(spec["rows"]))
    started = time.perf_counter()
    manifest = deploykit.build(
        model=spec["model"], data=str(data) if data else None, targets=("tflite", "js"), quantize=("float32",),
        out=str(work / name), latency={"enabled": False}, reporter=for_terminal(),
        budgets={"tflite": {"float32": NEVER_FAIL}, "js": {v: NEVER_FAIL for v in JS_VARIANTS}},
        js={"quantize": JS_VARIANTS, "backends": tuple(b for b in args.backends if b != "chromium-webgl") or ("cpu",)},
    )
    return manifest, time.perf_counter() - started


def default_breaches(entry: dict) -> list[str]:
    """Which of deploykit's default parity budgets this artifact's (worst-backend) metrics break."""
    from deploykit.targets import target_class
    from deploykit.validation.parity import OUTPUT_METRICS  # metric -> True when the budget is a floor

    found = []
    for output, metrics in entry["parity"]["outputs"].items():
        for metric, limit in target_class(entry["target"]).default_budgets[entry["variant"]].items():
            value, floor = metrics.get(metric), OUTPUT_METRICS.get(metric)
            if value is not None and floor is not None and not (value >= limit if floor else value <= limit):
                found.append(f"output '{output}': {metric} = {value:.6g}, default budget {'>=' if floor else '<='} {limit:g}")
    return found


def time_artifacts(manifest: dict, out: Path, args, work: Path) -> list[dict]:
    """One row per (artifact, backend): latency summary in that runtime, alone in its process."""
    from deploykit.config import LatencySettings
    from deploykit.targets import Artifact, RunRequest, target_class
    from deploykit.validation import latency as latency_stats
    from deploykit.validation.judge import measure_latency

    settings = LatencySettings(warmup=args.warmup, iterations=args.iterations, max_seconds=args.max_seconds)
    inputs = out / manifest["data"]["inputs"]
    rows = []
    for entry in manifest["artifacts"]:
        target = target_class(entry["target"])()
        base = {"target": entry["target"], "variant": entry["variant"], "bytes": entry["bytes"],
                "size_ratio": entry["size_ratio_to_float32"], "breaches": default_breaches(entry),
                "max_abs_rel": max((m["max_abs_rel"] for m in entry["parity"]["outputs"].values()), default=None),
                "parity_runtime": entry["parity"]["runtime"]}
        if entry["target"] == "tflite":
            artifact = Artifact("tflite", entry["variant"], out / entry["path"], entry["details"])
            measured = measure_latency(target, artifact, inputs, settings, work)
            rows.append({**base, "backend": "litert", **_figures(measured.get("latency"), measured.get("error"))})
            continue
        for backend in args.backends:
            artifact = Artifact("js", entry["variant"], out / entry["path"], {**entry["details"], "backends": [backend]})
            result = target.run(RunRequest(artifact, inputs, work / "unused.npz", "latency", settings), work)
            if result.get("ok"):
                facts = result["backends"][backend]
                rows.append({**base, "backend": backend, **_figures(latency_stats.summarize(facts["timings_ms"], facts))})
            else:
                rows.append({**base, "backend": backend, **_figures(None, result.get("error"))})
    return rows


def _figures(lat: dict | None, error: str | None = None) -> dict:
    keys = ("p50_ms", "p90_ms", "p99_ms", "load_ms", "first_inference_ms", "iterations")
    return {**{k: (lat or {}).get(k) for k in keys}, "error": error}


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict]) -> str:
    tflite = next((r["p50_ms"] for r in rows if r["target"] == "tflite" and r["variant"] == "float32"), None)
    for r in rows:
        r["p50_vs_tflite_float32"] = r["p50_ms"] / tflite if r["p50_ms"] and tflite else None
    head = ["artifact", "backend", "bytes", "size x", "load ms", "first ms", "p50 ms", "p90 ms", "p50 x tflite",
            "n", "parity", "max_abs_rel"]
    body = [[f"{r['target']}/{r['variant']}", r["backend"], fmt(r["bytes"], ","), fmt(r["size_ratio"], ".3f"),
             fmt(r["load_ms"], ".1f"), fmt(r["first_inference_ms"], ".1f"), fmt(r["p50_ms"], ".3f"),
             fmt(r["p90_ms"], ".3f"), fmt(r["p50_vs_tflite_float32"], ".2f"), fmt(r["iterations"], "d"),
             "FAIL **" if r["breaches"] else "PASS", fmt(r["max_abs_rel"], ".2e")] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    doc = {"created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "backends": args.backends,
           "latency": {"warmup": args.warmup, "iterations": args.iterations, "max_seconds": args.max_seconds, "threads": 1},
           "load_average_at_start": os.getloadavg()[0], "models": {}}
    with tempfile.TemporaryDirectory(prefix="deploykit-bench-js-") as tmp:
        for name in args.models:
            manifest, seconds = build(name, args, Path(tmp))
            work = Path(tmp) / f"{name}-timing"
            work.mkdir()
            rows = time_artifacts(manifest, Path(tmp) / name, args, work)
            print(textwrap.fill(f"== {name}: {MODELS[name]['note']}", 110, initial_indent="\n", subsequent_indent="   "))
            print(f"   parity rows {manifest['data']['parity_rows']} (TF.js judged on its worst backend), "
                  f"build {seconds:.1f} s, 1 thread")
            print(table(rows))
            for r in rows:
                if r["error"]:
                    print(f"   ** {r['target']}/{r['variant']} on {r['backend']}: {r['error']}")
            for r in {(r["target"], r["variant"]): r for r in rows}.values():
                for breach in r["breaches"]:
                    print(f"   ** FAIL {r['target']}/{r['variant']} (default budget): {breach}")
            doc["models"][name] = {"note": MODELS[name]["note"], "build_seconds": round(seconds, 1),
                                   "parity_rows": manifest["data"]["parity_rows"],
                                   "js": manifest["targets"].get("js"), "rows": rows}
    doc["wall_seconds"] = round(time.perf_counter() - started, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nsize x: bundle bytes / float32 bundle bytes (per target); p50 x tflite: p50 / the TFLite float32 p50 "
          f"(single-sample calls, warm-up excluded); load ms: model load in that runtime; first ms: first inference;\n"
          f"parity: against deploykit's default budget for the variant (worst TF.js backend).\n"
          f"wall time {doc['wall_seconds']:.1f} s; load average at start {doc['load_average_at_start']:.2f} on "
          f"{os.cpu_count()} cores; wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    from deploykit.errors import DeployKitError

    try:
        sys.exit(main())
    except DeployKitError as exc:  # bad option or input: one line, deploykit's exit code
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
