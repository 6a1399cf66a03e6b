"""The model-family matrix: family x target x variant, each built by the real CLI.

    .venv/bin/python benchmarks/families.py [--families NAME,...|light|all] [--quantize float32,...]

For each family in tests/families.py (the same models and data the tests build), one
`deploykit build` of every target that should build it, then each target allowed to refuse it (string
inputs: js, and tflite without Flex) on its own, shown as REFUSED with the preflight's reason, and
TFLite again with --allow-select-tf-ops. Latency
is measured (short runs: 20 calls after 3 warm-ups, at most 2 s per backend). Prints one row per
artifact: verdict (PASS, FAIL, REJECTED, REFUSED), bytes, p50 ms, and the worst parity margin:
the metric closest to its budget, as value / budget (below 1 passes for an upper bound, the
reverse for a lower bound). Writes benchmarks/results/families.json.

Serving builds FROM $DEPLOYKIT_SERVING_BASE_IMAGE, else the stand-in server (tests/serving_standin,
as the tests do: tensorflow/serving cannot be pulled here). `light` (default) is the set CI builds; `all` adds EfficientNetB0, ResNet50, DenseNet121 and the
other Keras flavour of each family.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TARGETS = ("tflite", "js", "serving")
LATENCY = ["--config"]  # filled in main(): a settings file with short latency runs


def worst_margin(artifact: dict) -> tuple[str, float] | None:
    """(metric, value/budget) of the metric closest to failing (upper bounds: value/budget; lower
    bounds, e.g. cosine: (1 - value) / (1 - budget))."""
    budget, worst = artifact.get("budget") or {}, None
    for out, metrics in (artifact.get("parity") or {}).get("outputs", {}).items():
        for metric, limit in budget.items():
            value = metrics.get(metric)
            if value is None or limit is None:
                continue
            lower = metric in ("cosine", "top1_agreement")
            margin = (1 - value) / max(1 - limit, 1e-12) if lower else value / max(limit, 1e-30)
            if worst is None or margin > worst[1]:
                worst = (f"{out}.{metric}", margin)
    return worst


def build(model: Path, data: Path, target: str, out: Path, extra: list[str]) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "deploykit", "build", "--model", str(model), "--data", str(data),
                           "--target", target, *QUANTIZE, "--json", "--quiet", "--out", str(out), *LATENCY, *extra],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=ROOT)
    seconds = time.perf_counter() - started
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        doc = {"error": {"message": (proc.stderr.strip().splitlines() or ["no output"])[-1], "exit_code": proc.returncode}}
    return {"exit": proc.returncode, "seconds": round(seconds, 1), "doc": doc}


def rows_of(family: str, target: str, result: dict, flag: str = "") -> list[dict]:
    """One row per artifact (and rejected variant) of a build of `target` (a comma list); a build
    that produced none (refused, or an error) is one row naming why."""
    doc = result["doc"]
    if "error" in doc:
        details = doc["error"].get("details") if isinstance(doc["error"].get("details"), dict) else {}
        kept = details.get("failed_build")  # a failed build's manifest is kept in OUT.failed
        if not kept:
            verdict = "REFUSED" if result["exit"] == 2 else f"ERROR {result['exit']}"
            return [{"family": family, "target": target + flag, "variant": "-", "verdict": verdict,
                     "reason": doc["error"]["message"][:160], "seconds": result["seconds"]}]
        doc = json.loads((Path(kept) / "manifest.json").read_text())
    rows = []
    for a in doc.get("artifacts", []):
        rows.append({"family": family, "target": a["target"] + flag, "variant": a["variant"],
                     "verdict": "PASS" if a["passed"] else "FAIL", "bytes": a.get("bytes"),
                     "p50_ms": (a.get("latency") or {}).get("p50_ms"), "margin": worst_margin(a),
                     "seconds": result["seconds"]})
    for r in doc.get("rejected", []):
        rows.append({"family": family, "target": r["target"] + flag, "variant": r["variant"], "verdict": "REJECTED",
                     "reason": "; ".join(f["message"] for f in r["failures"])[:160], "seconds": result["seconds"]})
    return rows


def family_rows(family, model: Path, data: Path, folder: Path) -> list[dict]:
    """The targets that should build it, in one build (per target if one of them refuses: to see
    which); then each target allowed to refuse it, alone; then TFLite with Flex if it refused."""
    built = [t for t in TARGETS if t not in family.refused]
    result = build(model, data, ",".join(built), folder / "out", [])
    if result["exit"] == 2:
        rows = [r for t in built for r in rows_of(family.name, t, build(model, data, t, folder / f"out-{t}", []))]
    else:
        rows = rows_of(family.name, ",".join(built), result)
    for r in rows:
        r["allowed"] = r["verdict"] != "REFUSED"  # refusing is allowed for string inputs only
    for t in family.refused:
        refused = rows_of(family.name, t, build(model, data, t, folder / f"out-{t}", []))
        rows += [{**r, "allowed": True} for r in refused]
        if t == "tflite" and refused and refused[0]["verdict"] == "REFUSED":
            rows += rows_of(family.name, t, build(model, data, t, folder / "out-flex", ["--allow-select-tf-ops"]),
                            " (flex)")
    return rows


def main() -> None:
    global QUANTIZE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default="light", help="light (the CI set), all, or a comma list of names")
    ap.add_argument("--quantize", default="float32", help="variants to build (default float32; 'default' = every variant)")
    args = ap.parse_args()
    QUANTIZE = [] if args.quantize == "default" else ["--quantize", args.quantize]
    from tests.families import FAMILIES

    if args.families == "all":
        chosen = FAMILIES
    elif args.families == "light":
        chosen = [f for f in FAMILIES if not f.heavy]
    else:
        names = args.families.split(",")
        chosen = [f for f in FAMILIES if f.name in names]
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    if not os.environ.get("DEPLOYKIT_SERVING_BASE_IMAGE"):  # tensorflow/serving cannot be pulled here
        from tests.serving_standin import ensure_image

        os.environ["DEPLOYKIT_SERVING_BASE_IMAGE"] = ensure_image()
        print("[families] serving: FROM the STAND-IN server (tests/serving_standin), not TF Serving; set "
              "DEPLOYKIT_SERVING_BASE_IMAGE to use another image", file=sys.stderr, flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="dk-families-") as tmp:
        work = Path(tmp)
        settings = work / "latency.toml"
        settings.write_text("[latency]\nwarmup = 3\niterations = 20\nmax_seconds = 2.0\n"
                            "[serving]\nload_levels = []  # the load stage is benchmarks/serving.py's\n")
        LATENCY[:] = ["--config", str(settings)]
        for family in chosen:
            folder = work / family.name
            folder.mkdir()
            model, data = family.build(folder)
            print(f"[families] {family.name}", file=sys.stderr, flush=True)
            rows += family_rows(family, model, data, folder)
    print(f"{'family':28} {'target':14} {'variant':8} {'verdict':8} {'bytes':>11} {'p50 ms':>8}  worst metric / budget")
    for r in rows:
        margin = f"{r['margin'][0]} {r['margin'][1]:.3g}" if r.get("margin") else r.get("reason", "")
        size = f"{r['bytes']:,}" if r.get("bytes") else "-"
        p50 = f"{r['p50_ms']:.3f}" if r.get("p50_ms") else "-"
        print(f"{r['family']:28} {r['target']:14} {r['variant']:8} {r['verdict']:8} {size:>11} {p50:>8}  {margin}")
    cells = {(r["family"], r["target"].split()[0]) for r in rows}
    bad = {(r["family"], r["target"].split()[0]) for r in rows if r["verdict"].startswith(("FAIL", "ERROR"))
           or (r["verdict"] == "REFUSED" and not r.get("allowed", True))}
    print(f"\n{len(cells - bad)} of {len(cells)} family x target cells validated, or refused in the preflight where "
          "allowed (string inputs on js, and on tflite without flex)")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "families.json").write_text(json.dumps({"rows": rows, "quantize": args.quantize}, indent=1) + "\n")


QUANTIZE: list[str] = []

if __name__ == "__main__":
    main()
