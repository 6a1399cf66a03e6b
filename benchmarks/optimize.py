"""What pruning, QAT and clustering buy, measured by deploykit's optimize stage.

For each model, one `deploykit.build` per technique (pruned 80%, QAT, clustered 16, combined =
pruned 80% + clustered 16 + QAT), each building float32 and int8 TFLite artifacts. Every build also
converts and times the unoptimized model (its manifest's `optimize` section), which gives the
baseline row. Prints one table per model and writes benchmarks/results/optimize.json.

    python benchmarks/optimize.py [--models example,mobilenetv2] [--iterations N] [--max-seconds S]

Models: the bundled digits CNN (digits validation split), and tf_keras MobileNetV2 (weights=None,
96x96x3, 10 classes) trained for a few epochs on a synthetic, learnable 10-class image task (a bright
square whose position and tint give the class, on noise); nothing is downloaded.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "optimize.json"
TECHNIQUES = {
    "pruned": {"prune": 0.8},
    "qat": {"qat": True},
    "clustered": {"cluster": 16},
    "combined": {"prune": 0.8, "cluster": 16, "qat": True},
}
MOBILENET_SHAPE, MOBILENET_ROWS = (96, 96, 3), 1500


def synthetic_images(rows: int = MOBILENET_ROWS, seed: int = 0):
    """A learnable 10-class task: class k puts a tinted 24x24 square at one of 10 positions."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, rows).astype(np.int32)
    x = rng.uniform(-0.5, 0.5, size=(rows, *MOBILENET_SHAPE)).astype(np.float32)
    for i, k in enumerate(y):
        r, c = divmod(int(k), 5)
        top, left = 12 + r * 40 + rng.integers(-4, 5), 2 + c * 18 + rng.integers(-2, 3)
        x[i, top:top + 24, left:left + 16, k % 3] += 0.9
    return np.clip(x, -1, 1), y


def train_mobilenet(path: Path, data: Path, epochs: int, rows: int = MOBILENET_ROWS) -> dict:
    from deploykit.tfenv import tf_keras

    keras = tf_keras()
    keras.utils.set_random_seed(0)
    x, y = synthetic_images(rows)
    np.savez(data, images=x, y=y)
    model = keras.applications.MobileNetV2(input_tensor=keras.Input(MOBILENET_SHAPE, name="images"),
                                           weights=None, classes=10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    cut = int(rows * 0.8)  # the optimize stage holds out the same last 20%
    started = time.perf_counter()
    model.fit(x[:cut], y[:cut], epochs=epochs, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(x[cut:], y[cut:], verbose=0)
    model.save(path)
    return {"epochs": epochs, "seconds": round(time.perf_counter() - started, 1), "validation_accuracy": float(accuracy)}


def build(model: str | None, data: str | None, optimize: dict, out: Path, args) -> dict:
    import deploykit
    from deploykit.errors import BudgetError
    from deploykit.progress import for_terminal

    started = time.perf_counter()
    try:
        doc = deploykit.build(model=model, data=data, quantize="float32,int8", out=str(out), reporter=for_terminal(quiet=True),
                              latency={"warmup": 20, "iterations": args.iterations, "max_seconds": args.max_seconds},
                              optimize={**optimize, "epochs": args.epochs} if args.epochs else optimize)
    except BudgetError as exc:  # e.g. the fake-quant float32 artifact of a QAT model: recorded, not hidden
        if exc.manifest is None:
            raise
        doc = exc.manifest
    return {"manifest": doc, "seconds": round(time.perf_counter() - started, 1)}


def rows_of(results: dict) -> list[dict]:
    rows = []
    first = next(iter(results.values()))["manifest"]["optimize"]
    base = {a["variant"]: a for a in first["artifacts"]}
    rows.append({"technique": "baseline", "metric": first["metric"]["before"],
                 "sparsity": None, "h5_bytes": first["keras_model"]["baseline"]["bytes"],
                 "h5_gzip": first["keras_model"]["baseline"]["gzip_bytes"],
                 **{f"{v}_{k}": base[v].get(f"baseline_{k}") for v in ("float32", "int8")
                    for k in ("bytes", "gzip_bytes", "p50_ms", "metric")}, "passed": True})
    for name, result in results.items():
        opt = result["manifest"]["optimize"]
        arts = {a["variant"]: a for a in opt["artifacts"]}
        rows.append({"technique": name, "metric": opt["metric"]["after"], "sparsity": opt["sparsity"]["overall"],
                     "h5_bytes": opt["keras_model"]["optimized"]["bytes"], "h5_gzip": opt["keras_model"]["optimized"]["gzip_bytes"],
                     **{f"{v}_{k}": arts[v].get(k) for v in ("float32", "int8") for k in ("bytes", "gzip_bytes", "p50_ms", "metric")},
                     "passed": result["manifest"]["passed"],
                     "failures": [f["message"] for a in result["manifest"]["artifacts"] for f in a["failures"]]
                     + [f["message"] for f in opt["failures"]]})
    return rows


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict]) -> str:
    bf = rows[0]["float32_gzip_bytes"]
    head = ["technique", "acc keras", "sparsity", "h5 gz", "f32 bytes", "f32 gz", "f32 gz x", "f32 acc", "f32 p50 ms",
            "int8 bytes", "int8 gz", "int8 gz x", "int8 acc", "int8 p50 ms", "build"]
    body = [[r["technique"], fmt(r["metric"], ".4f"), fmt(r["sparsity"], ".3f"), fmt(r["h5_gzip"], ","),
             fmt(r["float32_bytes"], ","), fmt(r["float32_gzip_bytes"], ","), fmt(bf / r["float32_gzip_bytes"], ".2f"),
             fmt(r["float32_metric"], ".4f"), fmt(r["float32_p50_ms"], ".3f"),
             fmt(r["int8_bytes"], ","), fmt(r["int8_gzip_bytes"], ","), fmt(bf / r["int8_gzip_bytes"], ".2f"),
             fmt(r["int8_metric"], ".4f"), fmt(r["int8_p50_ms"], ".3f"), "PASS" if r["passed"] else "FAIL"] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="example,mobilenetv2")
    p.add_argument("--techniques", default=",".join(TECHNIQUES))
    p.add_argument("--iterations", type=int, default=500)
    p.add_argument("--max-seconds", type=float, default=5.0)
    p.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs per technique (default: deploykit's)")
    p.add_argument("--mobilenet-epochs", type=int, default=4, help="initial training epochs of MobileNetV2")
    p.add_argument("--mobilenet-rows", type=int, default=MOBILENET_ROWS, help="synthetic labelled images")
    p.add_argument("--results", type=Path, default=RESULTS, help=f"JSON figures (default: {RESULTS.relative_to(ROOT)})")
    args = p.parse_args(argv)
    started = time.perf_counter()
    doc = {"created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "models": {}}
    with tempfile.TemporaryDirectory(prefix="deploykit-bench-opt-") as tmp:
        work = Path(tmp)
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            model = data = None
            note = "bundled digits CNN; metric: accuracy on the digits validation split (360 rows)"
            if name == "mobilenetv2":
                model, data = str(work / "mobilenetv2.keras"), str(work / "mobilenetv2.npz")
                trained = train_mobilenet(Path(model), Path(data), args.mobilenet_epochs, args.mobilenet_rows)
                note = (f"tf_keras MobileNetV2 weights=None 96x96x3, 10 classes, trained {trained['epochs']} epochs on "
                        f"{int(args.mobilenet_rows * 0.8)} synthetic images ({trained['seconds']} s, validation accuracy "
                        f"{trained['validation_accuracy']:.4f}); metric: accuracy on the last {args.mobilenet_rows // 5} rows")
            results = {}
            for technique in [t.strip() for t in args.techniques.split(",") if t.strip()]:
                print(f"[bench] {name}: {technique} ...", file=sys.stderr, flush=True)
                results[technique] = build(model, data, TECHNIQUES[technique], work / f"{name}-{technique}", args)
                print(f"[bench] {name}: so far\n{table(rows_of(results))}", file=sys.stderr, flush=True)
            rows = rows_of(results)
            print(f"\n== {name}: {note}")
            print(table(rows))
            for r in rows:
                for message in r.get("failures", []):
                    print(f"   ** {r['technique']}: {message}")
            doc["models"][name] = {"note": note, "rows": rows,
                                   "builds": {t: {"seconds": r["seconds"], "applied": r["manifest"]["optimize"]["applied"]}
                                              for t, r in results.items()}}
    doc["wall_seconds"] = round(time.perf_counter() - started, 1)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print("\ngz x = gzipped float32 baseline / gzipped artifact; acc = accuracy on held-out validation rows, run in "
          f"LiteRT for the TFLite columns; p50 = single-sample latency, 1 thread. wall {doc['wall_seconds']} s; "
          f"figures in {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
